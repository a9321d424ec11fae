//! What the emulated cloud holds while the CloudFormation model deploys: [`LocalCloud`].

use super::*;
use crate::deploy::{Complete, Failure};
use crate::events::Event;
use crate::lambda::Function;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A scheduled run handed to a function: its invocation's ID, and the function.
pub(super) type Fired = (String, Arc<Function>);

/// Execution environments per function: Lambda runs a function's concurrent invocations (a
/// scheduled run, two cluster events, CloudFormation's event) side by side, each in a process
/// of its own.
const LAMBDA_ENVIRONMENTS: usize = 3;

/// Every resource type of the template, emulated: custom resources run the real function
/// binaries; the StackSet deploys the member template in moto; the ECS service stabilises after
/// a while and its connector becomes known to Apono a while after that; the schedule fires at
/// random moments for as long as the rule exists; rules with an event pattern, event buses and
/// their policies, and Lambda permissions live in the [`EventBridge`] model, which delivers the
/// fake EKS's CloudTrail events through them; the rest complete after a short delay with the
/// attributes CloudFormation would give them.
pub(super) struct LocalCloud<'w> {
    pub(super) world: &'w World,
    /// The account the stack is deployed in (the management account, or a delegated
    /// administrator), and the kit's administrator acting there.
    stack_account: String,
    stack_config: aws_config::SdkConfig,
    pub(super) template: &'w Value,
    pub(super) rng: RefCell<fastrand::Rng>,
    pub(super) schedules: RefCell<BTreeMap<String, tokio::task::JoinHandle<()>>>,
    /// Scheduled runs handed to a function: the invocation's ID and the function.
    pub(super) fired: Arc<std::sync::Mutex<Vec<Fired>>>,
    /// While set, schedules do not fire (an hour is long: a check of the event path holds
    /// them off).
    pub(super) schedules_held: Arc<std::sync::atomic::AtomicBool>,
    pub(super) events: EventBridge,
    pub(super) counter: AtomicUsize,
    /// The functions that exist now, by ARN (EventBridge's delivery tasks find them here).
    pub(super) functions: Arc<std::sync::Mutex<BTreeMap<String, Arc<Function>>>>,
    /// Their configurations as Lambda reports them, by ARN.
    pub(super) configurations: crate::lambda::Configurations,
    /// The connector ID the task definition gives the container (`APONO_CONNECTOR_ID`).
    pub(super) task_connector_id: RefCell<String>,
    /// What each StackSet made in the member accounts.
    pub(super) stack_set_made: RefCell<BTreeMap<String, Vec<Made>>>,
    /// Every StackSet operation's outcome, in order.
    pub(super) stack_set_reports: RefCell<Vec<(String, OperationReport)>>,
}

impl<'w> LocalCloud<'w> {
    /// The cloud a stack is deployed into from `stack_account`.
    pub(super) async fn new(
        world: &'w World,
        template: &'w Value,
        seed: u64,
        stack_account: &str,
    ) -> LocalCloud<'w> {
        let admin = world.moto.sdk_config();
        let stack_config = match stack_account == world.org.management_account_id {
            true => admin,
            false => crate::org::assume_member(&world.moto, &admin, stack_account).await,
        };
        let functions = Arc::default();
        let organization_of = world
            .accounts
            .iter()
            .map(|a| (a.clone(), world.org.organization_id.clone()))
            .collect();
        let events = EventBridge::new(
            &world.moto.endpoint,
            Arc::clone(&functions),
            organization_of,
            scaled(CLOUDTRAIL_DELAY),
        );
        let (trail, recorded) = tokio::sync::mpsc::unbounded_channel();
        world.eks.on_cloudtrail(trail);
        events.listen(recorded);
        LocalCloud {
            world,
            stack_account: stack_account.to_string(),
            stack_config,
            template,
            rng: RefCell::new(fastrand::Rng::with_seed(seed)),
            schedules: RefCell::new(BTreeMap::new()),
            fired: Arc::default(),
            schedules_held: Arc::default(),
            events,
            counter: AtomicUsize::new(0),
            functions,
            configurations: Arc::default(),
            task_connector_id: RefCell::default(),
            stack_set_made: RefCell::new(BTreeMap::new()),
            stack_set_reports: RefCell::new(Vec::new()),
        }
    }

    /// The stack's account (`AWS::AccountId`).
    pub(super) fn account(&self) -> &str {
        &self.stack_account
    }

    /// The kit's administrator in the stack's account (what CloudFormation acts as there).
    pub(super) fn stack_config(&self) -> &aws_config::SdkConfig {
        &self.stack_config
    }

    /// A short, seeded pause: resources of one wave finish in varying order.
    pub(super) async fn pause(&self, base_ms: u64) {
        let jitter = self.rng.borrow_mut().u64(0..=base_ms);
        tokio::time::sleep(Duration::from_millis(base_ms + jitter)).await;
    }

    pub(super) fn name(&self, logical_id: &str, given: &Value) -> String {
        match given.as_str() {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => format!(
                "apono-onboarding-{logical_id}-{:04}",
                self.counter.fetch_add(1, Ordering::SeqCst)
            ),
        }
    }

    /// The live function behind an ARN (a custom resource's ServiceToken, a rule's target).
    pub(super) fn function(&self, arn: &str) -> Option<Arc<Function>> {
        self.functions.lock().unwrap().get(arn).cloned()
    }

    /// The custom resource's event, answered by the real function.
    pub(super) async fn custom(&self, logical_id: &str, event: Event) -> Value {
        let token = event.get()["ResourceProperties"]["ServiceToken"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        // From the stack in its own account, as the template's `AWS::StackId` names it.
        let stack_id =
            crate::events::STACK_ID.replace(":123456789012:", &format!(":{}:", self.account()));
        self.world
            .send(self.function(&token), logical_id, event.stack_id(&stack_id))
            .await
    }

    /// IAM in the stack's account, as the kit's administrator.
    pub(super) fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.stack_config)
    }

    /// IAM in a member account, through its OrganizationAccountAccessRole (how CloudFormation's
    /// StackSets execution role acts there).
    pub(super) async fn member_iam(&self, account: &str) -> aws_sdk_iam::Client {
        let admin = self.world.moto.sdk_config();
        aws_sdk_iam::Client::new(
            &crate::org::assume_member(&self.world.moto, &admin, account).await,
        )
    }

    /// The roles an `AWS::IAM::Policy` is attached to (their names: `Ref` of a role).
    pub(super) fn policy_roles(props: &Value) -> Vec<String> {
        props["Roles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect()
    }

    /// Starts the function's process with its role's credentials, as Lambda does: Lambda
    /// assumes the execution role, so a role that cannot be assumed fails the function.
    pub(super) async fn start_function(
        &self,
        arn: &str,
        name: &str,
        binary: &str,
        props: &Value,
    ) -> Result<(), String> {
        let role_arn = props["Role"].as_str().unwrap_or_default();
        let sts = aws_sdk_sts::Client::new(&self.world.moto.sdk_config());
        let credentials = sts
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(name)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "Lambda cannot assume {role_arn}: {:?}",
                    e.into_service_error()
                )
            })?
            .credentials
            .ok_or("AssumeRole returned no credentials")?;
        let mut env = self.world.env.clone();
        // The template's own settings for the function.
        env.extend(
            props["Environment"]["Variables"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())),
        );
        env.extend([
            ("AWS_ACCESS_KEY_ID".to_string(), credentials.access_key_id),
            (
                "AWS_SECRET_ACCESS_KEY".to_string(),
                credentials.secret_access_key.clone(),
            ),
            ("AWS_SESSION_TOKEN".to_string(), credentials.session_token),
        ]);
        // Lambda's default timeout is 3 s; the rendered template carries numbers as strings.
        let timeout = props["Timeout"]
            .as_u64()
            .or_else(|| props["Timeout"].as_str()?.parse().ok())
            .unwrap_or(3);
        let timeout = Duration::from_secs(timeout);
        // What GetFunctionConfiguration reports from now on.
        let configuration = json!({
            "FunctionName": name,
            "FunctionArn": arn,
            "Environment": {"Variables": props["Environment"]["Variables"]},
        });
        self.configurations
            .lock()
            .unwrap()
            .insert(arn.to_string(), configuration);
        let function = Arc::new(
            Function::start_deployed(
                name,
                arn,
                &self.world.bin.join(binary),
                &env,
                timeout,
                Some(self.world.authorizer.clone()),
                crate::lambda::Deployment {
                    environments: LAMBDA_ENVIRONMENTS,
                    configurations: Some(self.configurations.clone()),
                },
            )
            .await,
        );
        self.world.started.borrow_mut().push(StartedFunction {
            name: name.to_string(),
            output: function.output.clone(),
            secret: credentials.secret_access_key,
        });
        self.functions
            .lock()
            .unwrap()
            .insert(arn.to_string(), function);
        Ok(())
    }

    pub(super) fn custom_properties(&self, resource_type: &str, mut props: Value) -> Value {
        if resource_type == "Custom::AponoIntegration" {
            // The one deviation from the template: Apono is the local fake.
            props["ApiUrl"] = json!(self.world.apono.url());
        }
        props
    }

    pub(super) fn answer(body: Value) -> Result<Complete, Failure> {
        let physical_id = body["PhysicalResourceId"].as_str().map(str::to_string);
        if body["Status"] != "SUCCESS" {
            return Err(Failure {
                physical_id,
                reason: format!(
                    "{} {}",
                    body["Status"].as_str().unwrap_or("?"),
                    body["Reason"].as_str().unwrap_or("")
                ),
            });
        }
        let attributes = body["Data"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        Ok(Complete {
            physical_id: physical_id.unwrap_or_default(),
            attributes,
        })
    }

    /// The schedule fires at seeded random moments for as long as the rule exists (its task
    /// is aborted when the rule is deleted), once the Lambda permission naming the rule exists,
    /// into the function as it is at that moment.
    /// As EventBridge starts one invocation per firing and Lambda runs them side by side, a
    /// firing while the last one still waits in this one process's queue is not queued again:
    /// scheduled runs never pile up in front of CloudFormation's events.
    pub(super) fn start_schedule(&self, rule_arn: &str, props: &Value) {
        let input = props["Targets"][0]["Input"].as_str().unwrap_or("{}");
        let event: Value = serde_json::from_str(input).unwrap_or(Value::Null);
        let function_arn = props["Targets"][0]["Arn"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let (fired, held, events, functions) = (
            self.fired.clone(),
            self.schedules_held.clone(),
            self.events.clone(),
            self.functions.clone(),
        );
        let (rule_arn, task_rule) = (rule_arn.to_string(), rule_arn.to_string());
        let delays: Vec<u64> = (0..4)
            .map(|_| self.rng.borrow_mut().u64(200..1500))
            .collect();
        let task = tokio::spawn(async move {
            for delay in delays.iter().cycle() {
                tokio::time::sleep(Duration::from_millis(*delay)).await;
                let waiting = fired
                    .lock()
                    .unwrap()
                    .last()
                    .is_some_and(|(id, f): &Fired| f.is_queued(id));
                // The function as it is now (an Update of it starts new processes).
                let function = functions.lock().unwrap().get(&function_arn).cloned();
                let Some(function) = function else { continue };
                if held.load(Ordering::SeqCst)
                    || waiting
                    || !events.may_invoke(&function_arn, &task_rule)
                {
                    continue;
                }
                let id = function.enqueue(event.clone());
                fired.lock().unwrap().push((id, function.clone()));
            }
        });
        self.schedules.borrow_mut().insert(rule_arn, task);
    }

    /// Scheduled runs handed to the function so far.
    pub(super) fn fired(&self) -> usize {
        self.fired.lock().unwrap().len()
    }
}
