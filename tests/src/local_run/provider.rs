//! The CloudFormation model's provider: every resource type's create, update and delete.

use super::*;
use crate::deploy::{Complete, Failure, Provider};
use crate::events::Event;
use futures::future::LocalBoxFuture;
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::time::Duration;

impl Provider for LocalCloud<'_> {
    fn create<'a>(
        &'a self,
        logical_id: &'a str,
        resource_type: &'a str,
        props: Value,
    ) -> LocalBoxFuture<'a, Result<Complete, Failure>> {
        Box::pin(async move {
            let region = "us-east-1";
            let account = self.account().to_string();
            match resource_type {
                t if t.starts_with("Custom::") => {
                    let props = self.custom_properties(t, props);
                    let body = self
                        .custom(logical_id, Event::create(t, "").properties(props))
                        .await;
                    Self::answer(body)
                }
                "AWS::Lambda::Function" => {
                    self.pause(40).await;
                    let name = self.name(logical_id, &props["FunctionName"]);
                    let arn = format!("arn:aws:lambda:{region}:{account}:function:{name}");
                    self.start_function(&arn, &name, self.binary(logical_id), &props)
                        .await
                        .map_err(failed(None))?;
                    complete(name, &[("Arn", arn)])
                }
                "AWS::IAM::Role" => {
                    self.pause(60).await;
                    let name = self.name(logical_id, &props["RoleName"]);
                    put_role(&self.iam(), &name, &props, true)
                        .await
                        .map_err(failed(None))?;
                    let arn = role(&account, &name);
                    complete(name, &[("Arn", arn)])
                }
                "AWS::IAM::Policy" => {
                    // Granted only now that the resource completes.
                    self.pause(60).await;
                    let name = props["PolicyName"]
                        .as_str()
                        .unwrap_or(logical_id)
                        .to_string();
                    self.put_policy(&name, &props).await.map_err(failed(None))?;
                    complete(name, &[])
                }
                "AWS::CloudFormation::StackSet" => {
                    self.pause(100).await;
                    self.stack_set(&props).await
                }
                "AWS::ECS::Service" => {
                    let name = self.name(logical_id, &Value::Null);
                    self.start_connector_service(&name).await
                }
                "AWS::SecretsManager::Secret" => {
                    // Ref of a secret is its ARN.
                    self.pause(40).await;
                    let name = self.name(logical_id, &props["Name"]);
                    let arn = self.put_secret(&name, &props).await.map_err(failed(None))?;
                    complete(arn, &[("Id", name)])
                }
                "AWS::SNS::Topic" => {
                    // Ref of a topic is its ARN.
                    self.pause(40).await;
                    let name = self.name(logical_id, &props["TopicName"]);
                    let arn = format!("arn:aws:sns:{region}:{account}:{name}");
                    complete(arn.clone(), &[("TopicArn", arn), ("TopicName", name)])
                }
                "AWS::EC2::SecurityGroup" => {
                    self.pause(40).await;
                    let id = format!("sg-{:017x}", self.counter.fetch_add(1, Ordering::SeqCst));
                    complete(id.clone(), &[("GroupId", id)])
                }
                "AWS::ECS::TaskDefinition" => {
                    // Ref of a task definition is its ARN.
                    self.pause(40).await;
                    let name = self.name(logical_id, &props["Family"]);
                    let arn = format!("arn:aws:ecs:{region}:{account}:task-definition/{name}:1");
                    // The ID the container connects to Apono with.
                    let connector = props["ContainerDefinitions"][0]["Environment"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|e| e["Name"] == "APONO_CONNECTOR_ID")
                        .and_then(|e| e["Value"].as_str())
                        .unwrap_or_default()
                        .to_string();
                    *self.task_connector_id.borrow_mut() = connector;
                    complete(arn.clone(), &[("TaskDefinitionArn", arn)])
                }
                "AWS::Events::Rule" => {
                    self.pause(40).await;
                    let name = self.name(logical_id, &props["Name"]);
                    // Ref of a rule is its name, on a custom bus "bus|name".
                    let physical_id = match bus_name(&props) {
                        "default" => name,
                        bus => format!("{bus}|{name}"),
                    };
                    let arn = self
                        .put_rule(logical_id, &physical_id, &props)
                        .map_err(failed(None))?;
                    complete(physical_id, &[("Arn", arn)])
                }
                "AWS::Events::EventBus" => {
                    self.pause(40).await;
                    let name = self.name(logical_id, &props["Name"]);
                    let arn = format!("arn:aws:events:{region}:{account}:event-bus/{name}");
                    self.events.put_bus(&arn);
                    complete(name.clone(), &[("Arn", arn), ("Name", name)])
                }
                "AWS::Events::EventBusPolicy" => {
                    self.pause(40).await;
                    let id = props["StatementId"]
                        .as_str()
                        .unwrap_or(logical_id)
                        .to_string();
                    self.events
                        .put_bus_statement(&self.bus_arn(&props), &id, props["Statement"].clone())
                        .map_err(failed(None))?;
                    complete(id, &[])
                }
                "AWS::Lambda::Permission" => {
                    self.pause(40).await;
                    let id = self.name(logical_id, &Value::Null);
                    self.put_permission(&id, &props);
                    complete(id, &[])
                }
                _ => {
                    self.pause(40).await;
                    let name = self.name(logical_id, &Value::Null);
                    complete(name.clone(), &[("Arn", format!("arn:local:{name}"))])
                }
            }
        })
    }

    fn update<'a>(
        &'a self,
        logical_id: &'a str,
        resource_type: &'a str,
        physical_id: &'a str,
        props: Value,
        old: Value,
    ) -> LocalBoxFuture<'a, Result<Complete, Failure>> {
        Box::pin(async move {
            match resource_type {
                t if t.starts_with("Custom::") => {
                    let event = Event::update(t, "", physical_id)
                        .properties(self.custom_properties(t, props))
                        .old_properties(self.custom_properties(t, old));
                    Self::answer(self.custom(logical_id, event).await)
                }
                "AWS::Lambda::Function" => {
                    // New code or configuration: Lambda's next invocation runs in a new
                    // execution environment.
                    self.pause(40).await;
                    let arn = format!(
                        "arn:aws:lambda:us-east-1:{}:function:{physical_id}",
                        self.account()
                    );
                    if props != old {
                        self.functions.lock().unwrap().remove(&arn);
                        self.start_function(&arn, physical_id, self.binary(logical_id), &props)
                            .await
                            .map_err(failed(Some(physical_id)))?;
                    }
                    complete(physical_id.to_string(), &[("Arn", arn)])
                }
                "AWS::CloudFormation::StackSet" => {
                    // moto's UpdateStackSet does not redeploy its instances: the member stacks
                    // are deployed anew with the new parameters, as CloudFormation's update
                    // of every instance would leave them.
                    self.pause(100).await;
                    if props != old {
                        self.delete_stack_set(physical_id)
                            .await
                            .map_err(failed(Some(physical_id)))?;
                        self.stack_set(&props).await?;
                    }
                    complete(
                        physical_id.to_string(),
                        &[("StackSetId", physical_id.to_string())],
                    )
                }
                "AWS::IAM::Role" => {
                    self.pause(40).await;
                    put_role(&self.iam(), physical_id, &props, false)
                        .await
                        .map_err(failed(Some(physical_id)))?;
                    complete(
                        physical_id.to_string(),
                        &[("Arn", role(self.account(), physical_id))],
                    )
                }
                "AWS::IAM::Policy" => {
                    self.pause(40).await;
                    for role in Self::policy_roles(&old) {
                        // Detached from a role no longer listed; rewritten on the others.
                        let _ = delete_role_policy(&self.iam(), &role, physical_id).await;
                    }
                    self.put_policy(physical_id, &props)
                        .await
                        .map_err(failed(Some(physical_id)))?;
                    complete(physical_id.to_string(), &[])
                }
                "AWS::Events::Rule" => {
                    // EventBridge sends the new input (and matches the new pattern) from now on.
                    self.delete_rule(physical_id);
                    let arn = self
                        .put_rule(logical_id, physical_id, &props)
                        .map_err(failed(Some(physical_id)))?;
                    complete(physical_id.to_string(), &[("Arn", arn)])
                }
                "AWS::Events::EventBusPolicy" => {
                    self.events
                        .delete_bus_statement(&self.bus_arn(&old), physical_id);
                    self.events
                        .put_bus_statement(
                            &self.bus_arn(&props),
                            physical_id,
                            props["Statement"].clone(),
                        )
                        .map_err(failed(Some(physical_id)))?;
                    complete(physical_id.to_string(), &[])
                }
                "AWS::Lambda::Permission" => {
                    self.events.delete_permission(physical_id);
                    self.put_permission(physical_id, &props);
                    complete(physical_id.to_string(), &[])
                }
                _ => {
                    // Non-custom resources keep their physical ID in the changes this run makes.
                    self.pause(40).await;
                    complete(physical_id.to_string(), &[])
                }
            }
        })
    }

    fn delete<'a>(
        &'a self,
        logical_id: &'a str,
        resource_type: &'a str,
        physical_id: &'a str,
        props: Value,
    ) -> LocalBoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            match resource_type {
                t if t.starts_with("Custom::") => {
                    let event = Event::delete(t, "", physical_id)
                        .properties(self.custom_properties(t, props));
                    let body = self.custom(logical_id, event).await;
                    match body["Status"] == "SUCCESS" {
                        true => Ok(()),
                        false => Err(format!("{body}")),
                    }
                }
                "AWS::Events::Rule" => {
                    self.delete_rule(physical_id);
                    Ok(())
                }
                "AWS::Events::EventBus" => {
                    self.pause(30).await;
                    let arn = format!(
                        "arn:aws:events:us-east-1:{}:event-bus/{physical_id}",
                        self.account()
                    );
                    self.events.delete_bus(&arn);
                    Ok(())
                }
                "AWS::Events::EventBusPolicy" => {
                    self.pause(30).await;
                    self.events
                        .delete_bus_statement(&self.bus_arn(&props), physical_id);
                    Ok(())
                }
                "AWS::Lambda::Permission" => {
                    self.pause(30).await;
                    self.events.delete_permission(physical_id);
                    Ok(())
                }
                "AWS::Lambda::Function" => {
                    self.pause(30).await;
                    let arn = format!(
                        "arn:aws:lambda:us-east-1:{}:function:{physical_id}",
                        self.account()
                    );
                    // Dropping the last handle stops the process.
                    self.functions.lock().unwrap().remove(&arn);
                    self.configurations.lock().unwrap().remove(&arn);
                    Ok(())
                }
                "AWS::IAM::Role" => {
                    self.pause(30).await;
                    delete_role(&self.iam(), physical_id).await
                }
                "AWS::CloudFormation::StackSet" => {
                    self.pause(100).await;
                    self.delete_stack_set(physical_id).await
                }
                "AWS::IAM::Policy" => {
                    self.pause(30).await;
                    for role in Self::policy_roles(&props) {
                        delete_role_policy(&self.iam(), &role, physical_id).await?;
                    }
                    Ok(())
                }
                "AWS::SecretsManager::Secret" => {
                    self.pause(30).await;
                    self.delete_secret(physical_id).await
                }
                "AWS::ECS::Service" => {
                    self.pause(300).await;
                    self.world
                        .apono
                        .add_connector(&self.task_connector_id.borrow(), "DISCONNECTED");
                    Ok(())
                }
                _ => {
                    self.pause(30).await;
                    Ok(())
                }
            }
        })
    }

    fn stack_status(&self, status: &str) {
        self.world.platform.set_stack_status(status);
    }
}

/// A resource complete with these attributes.
fn complete(physical_id: String, attributes: &[(&str, String)]) -> Result<Complete, Failure> {
    Ok(Complete {
        physical_id,
        attributes: attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    })
}

/// Turns a reason into the failure of a resource (`None`: one never created).
fn failed(physical_id: Option<&str>) -> impl FnOnce(String) -> Failure + '_ {
    move |reason| Failure {
        physical_id: physical_id.map(str::to_string),
        reason,
    }
}

/// The bus a rule or bus policy is on, by name (`Ref` of a bus); `default` when none is named.
fn bus_name(props: &Value) -> &str {
    props["EventBusName"]
        .as_str()
        .filter(|b| !b.is_empty())
        .unwrap_or("default")
}

impl LocalCloud<'_> {
    /// The ARN of the bus a resource names, in the stack's account and region.
    fn bus_arn(&self, props: &Value) -> String {
        format!(
            "arn:aws:events:us-east-1:{}:event-bus/{}",
            self.account(),
            bus_name(props)
        )
    }

    /// A rule of the stack (physical ID `name` or `bus|name`): a schedule fires, an event
    /// pattern goes to the EventBridge model. Its ARN.
    fn put_rule(
        &self,
        logical_id: &str,
        physical_id: &str,
        props: &Value,
    ) -> Result<String, String> {
        let arn = format!(
            "arn:aws:events:us-east-1:{}:rule/{}",
            self.account(),
            physical_id.replace('|', "/")
        );
        if props.get("ScheduleExpression").is_some() {
            self.start_schedule(&arn, props);
        }
        if props.get("EventPattern").is_some() {
            // As the template has it: a pattern's JSON booleans (`exists: false`) stay booleans.
            let pattern = &self.template["Resources"][logical_id]["Properties"]["EventPattern"];
            let rule = Rule {
                bus_arn: self.bus_arn(props),
                pattern: pattern.clone(),
                targets: props["Targets"].as_array().cloned().unwrap_or_default(),
            };
            self.events.put_rule(&arn, rule)?;
        }
        Ok(arn)
    }

    fn delete_rule(&self, physical_id: &str) {
        let arn = format!(
            "arn:aws:events:us-east-1:{}:rule/{}",
            self.account(),
            physical_id.replace('|', "/")
        );
        if let Some(task) = self.schedules.borrow_mut().remove(&arn) {
            task.abort();
        }
        self.events.delete_rule(&arn);
    }

    /// A Lambda permission: `FunctionName` is the function's name (its `Ref`) or ARN.
    fn put_permission(&self, id: &str, props: &Value) {
        let function = props["FunctionName"].as_str().unwrap_or_default();
        let function = match function.starts_with("arn:") {
            true => function.to_string(),
            false => format!(
                "arn:aws:lambda:us-east-1:{}:function:{function}",
                self.account()
            ),
        };
        self.events.put_permission(
            id,
            &function,
            props["Principal"].as_str().unwrap_or_default(),
            props["SourceArn"].as_str().unwrap_or_default(),
        );
    }

    /// The function binary a template resource is built from.
    fn binary(&self, logical_id: &str) -> &str {
        self.template["Resources"][logical_id]["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_default()
    }

    /// An inline policy written to every role it names: granted only now, as the resource
    /// completes.
    async fn put_policy(&self, name: &str, props: &Value) -> Result<(), String> {
        let document = props["PolicyDocument"].to_string();
        for role in Self::policy_roles(props) {
            put_role_policy(&self.iam(), &role, name, &document).await?;
        }
        Ok(())
    }

    /// A secret in moto's Secrets Manager, as the kit's administrator; its ARN.
    async fn put_secret(&self, name: &str, props: &Value) -> Result<String, String> {
        aws_sdk_secretsmanager::Client::new(self.stack_config())
            .create_secret()
            .name(name)
            .secret_string(props["SecretString"].as_str().unwrap_or_default())
            .send()
            .await
            .map_err(|e| format!("CreateSecret {name}: {:?}", e.into_service_error()))?
            .arn
            .ok_or_else(|| format!("CreateSecret {name}: no ARN"))
    }

    async fn delete_secret(&self, arn: &str) -> Result<(), String> {
        aws_sdk_secretsmanager::Client::new(self.stack_config())
            .delete_secret()
            .secret_id(arn)
            .force_delete_without_recovery(true)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("DeleteSecret {arn}: {:?}", e.into_service_error()))
    }

    /// The connector's service: stabilising takes a while; the container connects to Apono
    /// later still.
    async fn start_connector_service(&self, name: &str) -> Result<Complete, Failure> {
        self.pause(700).await;
        let apono = self.world.apono.clone();
        let connector = self.task_connector_id.borrow().clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            apono.add_connector(&connector, "CONNECTED");
        });
        let arn = format!("arn:aws:ecs:us-east-1:{}:service/{name}", self.account());
        complete(arn, &[("Name", name.to_string())])
    }
}
