//! The CloudFormation model's provider: every resource type's create, update and delete.

use super::*;
use crate::deploy::{Complete, Failure, Provider};
use crate::events::Event;
use futures::future::LocalBoxFuture;
use serde_json::Value;
use std::collections::BTreeMap;
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
            let simple = |physical_id: String, attributes: &[(&str, String)]| {
                Ok(Complete {
                    physical_id,
                    attributes: attributes
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.clone()))
                        .collect(),
                })
            };
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
                    let binary = self.template["Resources"][logical_id]["Metadata"]
                        ["BuildProperties"]["Binary"]
                        .as_str()
                        .unwrap_or_default();
                    self.start_function(&arn, &name, binary, &props)
                        .await
                        .map_err(|reason| Failure {
                            physical_id: None,
                            reason,
                        })?;
                    simple(name, &[("Arn", arn)])
                }
                "AWS::IAM::Role" => {
                    self.pause(60).await;
                    let name = self.name(logical_id, &props["RoleName"]);
                    put_role(&self.iam(), &name, &props, true)
                        .await
                        .map_err(|reason| Failure {
                            physical_id: None,
                            reason,
                        })?;
                    let arn = role(&account, &name);
                    simple(name, &[("Arn", arn)])
                }
                "AWS::IAM::Policy" => {
                    // Granted only now that the resource completes.
                    self.pause(60).await;
                    let name = props["PolicyName"]
                        .as_str()
                        .unwrap_or(logical_id)
                        .to_string();
                    for role in Self::policy_roles(&props) {
                        let document = props["PolicyDocument"].to_string();
                        put_role_policy(&self.iam(), &role, &name, &document)
                            .await
                            .map_err(|reason| Failure {
                                physical_id: None,
                                reason,
                            })?;
                    }
                    simple(name, &[])
                }
                "AWS::CloudFormation::StackSet" => {
                    self.pause(100).await;
                    self.stack_set(&props).await
                }
                "AWS::ECS::Service" => {
                    // Stabilising takes a while; the container connects to Apono later still.
                    self.pause(700).await;
                    let apono = self.world.apono.clone();
                    let connector = props_connector(self.template);
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(1500)).await;
                        apono.add_connector(&connector, "CONNECTED");
                    });
                    let name = self.name(logical_id, &Value::Null);
                    let arn = format!("arn:aws:ecs:{region}:{account}:service/{name}");
                    simple(arn, &[("Name", name)])
                }
                "AWS::SNS::Topic" => {
                    // Ref of a topic is its ARN.
                    self.pause(40).await;
                    let name = self.name(logical_id, &props["TopicName"]);
                    let arn = format!("arn:aws:sns:{region}:{account}:{name}");
                    simple(arn.clone(), &[("TopicArn", arn), ("TopicName", name)])
                }
                "AWS::EC2::SecurityGroup" => {
                    self.pause(40).await;
                    let id = format!("sg-{:017x}", self.counter.fetch_add(1, Ordering::SeqCst));
                    simple(id.clone(), &[("GroupId", id)])
                }
                "AWS::ECS::TaskDefinition" => {
                    // Ref of a task definition is its ARN.
                    self.pause(40).await;
                    let name = self.name(logical_id, &props["Family"]);
                    let arn = format!("arn:aws:ecs:{region}:{account}:task-definition/{name}:1");
                    simple(arn.clone(), &[("TaskDefinitionArn", arn)])
                }
                "AWS::Events::Rule" => {
                    self.pause(40).await;
                    let name = self.name(logical_id, &Value::Null);
                    self.start_schedule(&name, &props);
                    let arn = format!("arn:aws:events:{region}:{account}:rule/{name}");
                    simple(name, &[("Arn", arn)])
                }
                _ => {
                    self.pause(40).await;
                    let name = self.name(logical_id, &Value::Null);
                    simple(name.clone(), &[("Arn", format!("arn:local:{name}"))])
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
                        let binary = self.template["Resources"][logical_id]["Metadata"]
                            ["BuildProperties"]["Binary"]
                            .as_str()
                            .unwrap_or_default();
                        self.functions.borrow_mut().remove(&arn);
                        self.start_function(&arn, physical_id, binary, &props)
                            .await
                            .map_err(|reason| Failure {
                                physical_id: Some(physical_id.to_string()),
                                reason,
                            })?;
                    }
                    Ok(Complete {
                        physical_id: physical_id.to_string(),
                        attributes: BTreeMap::from([("Arn".to_string(), arn)]),
                    })
                }
                "AWS::CloudFormation::StackSet" => {
                    // moto's UpdateStackSet does not redeploy its instances: the member stacks
                    // are deployed anew with the new parameters, as CloudFormation's update
                    // of every instance would leave them.
                    self.pause(100).await;
                    if props != old {
                        let failed = |reason| Failure {
                            physical_id: Some(physical_id.to_string()),
                            reason,
                        };
                        self.delete_stack_set(physical_id).await.map_err(failed)?;
                        self.stack_set(&props).await?;
                    }
                    Ok(Complete {
                        physical_id: physical_id.to_string(),
                        attributes: BTreeMap::from([(
                            "StackSetId".to_string(),
                            physical_id.to_string(),
                        )]),
                    })
                }
                "AWS::IAM::Role" => {
                    self.pause(40).await;
                    put_role(&self.iam(), physical_id, &props, false)
                        .await
                        .map_err(|reason| Failure {
                            physical_id: Some(physical_id.to_string()),
                            reason,
                        })?;
                    Ok(Complete {
                        physical_id: physical_id.to_string(),
                        attributes: BTreeMap::from([(
                            "Arn".to_string(),
                            role(self.account(), physical_id),
                        )]),
                    })
                }
                "AWS::IAM::Policy" => {
                    self.pause(40).await;
                    for role in Self::policy_roles(&old) {
                        // Detached from a role no longer listed; rewritten on the others.
                        let _ = delete_role_policy(&self.iam(), &role, physical_id).await;
                    }
                    for role in Self::policy_roles(&props) {
                        let document = props["PolicyDocument"].to_string();
                        put_role_policy(&self.iam(), &role, physical_id, &document)
                            .await
                            .map_err(|reason| Failure {
                                physical_id: Some(physical_id.to_string()),
                                reason,
                            })?;
                    }
                    Ok(Complete {
                        physical_id: physical_id.to_string(),
                        attributes: BTreeMap::new(),
                    })
                }
                "AWS::Events::Rule" => {
                    // EventBridge fires the new input from now on.
                    if let Some(task) = self.schedules.borrow_mut().remove(physical_id) {
                        task.abort();
                    }
                    self.start_schedule(physical_id, &props);
                    let arn = format!(
                        "arn:aws:events:us-east-1:{}:rule/{physical_id}",
                        self.account()
                    );
                    Ok(Complete {
                        physical_id: physical_id.to_string(),
                        attributes: BTreeMap::from([("Arn".to_string(), arn)]),
                    })
                }
                _ => {
                    // Non-custom resources keep their physical ID in the changes this run makes.
                    self.pause(40).await;
                    Ok(Complete {
                        physical_id: physical_id.to_string(),
                        attributes: BTreeMap::new(),
                    })
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
                    if let Some(task) = self.schedules.borrow_mut().remove(physical_id) {
                        task.abort();
                    }
                    Ok(())
                }
                "AWS::Lambda::Function" => {
                    self.pause(30).await;
                    let arn = format!(
                        "arn:aws:lambda:us-east-1:{}:function:{physical_id}",
                        self.account()
                    );
                    // Dropping the last handle stops the process.
                    self.functions.borrow_mut().remove(&arn);
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
                "AWS::ECS::Service" => {
                    self.pause(300).await;
                    self.world
                        .apono
                        .add_connector(&props_connector(self.template), "DISCONNECTED");
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
