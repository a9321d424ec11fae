//! What the emulated cloud holds while the CloudFormation model deploys: [`LocalCloud`].

use super::*;
use crate::deploy::{Complete, Failure};
use crate::events::Event;
use crate::lambda::Function;
use crate::template::Rendering;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Every resource type of the template, emulated: custom resources run the real function
/// binaries; the StackSet deploys the member template in moto; the ECS service stabilises after
/// a while and its connector becomes known to Apono a while after that; the schedule fires at
/// random moments for as long as the rule exists; the rest complete after a short delay with
/// the attributes CloudFormation would give them.
pub(super) struct LocalCloud<'w> {
    pub(super) world: &'w World,
    pub(super) template: &'w Value,
    pub(super) rng: RefCell<fastrand::Rng>,
    pub(super) schedules: RefCell<BTreeMap<String, tokio::task::JoinHandle<()>>>,
    pub(super) fired: Arc<AtomicUsize>,
    pub(super) counter: AtomicUsize,
    /// The functions that exist now, by ARN.
    pub(super) functions: RefCell<BTreeMap<String, Arc<Function>>>,
    /// The roles each StackSet made in the member accounts: (account, role name).
    pub(super) stack_set_roles: RefCell<BTreeMap<String, Vec<(String, String)>>>,
    /// Every StackSet operation's outcome, in order.
    pub(super) stack_set_reports: RefCell<Vec<OperationReport>>,
}

impl<'w> LocalCloud<'w> {
    pub(super) fn new(world: &'w World, template: &'w Value, seed: u64) -> Self {
        LocalCloud {
            world,
            template,
            rng: RefCell::new(fastrand::Rng::with_seed(seed)),
            schedules: RefCell::new(BTreeMap::new()),
            fired: Arc::new(AtomicUsize::new(0)),
            counter: AtomicUsize::new(0),
            functions: RefCell::new(BTreeMap::new()),
            stack_set_roles: RefCell::new(BTreeMap::new()),
            stack_set_reports: RefCell::new(Vec::new()),
        }
    }

    pub(super) fn account(&self) -> &str {
        &self.world.org.management_account_id
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
        self.functions.borrow().get(arn).cloned()
    }

    /// The custom resource's event, answered by the real function.
    pub(super) async fn custom(&self, logical_id: &str, event: Event) -> Value {
        let token = event.get()["ResourceProperties"]["ServiceToken"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.world
            .send(self.function(&token), logical_id, event)
            .await
    }

    /// IAM in the management account, as the kit's administrator.
    pub(super) fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.world.moto.sdk_config())
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
        let function = Arc::new(
            Function::start_as(
                name,
                arn,
                &self.world.bin.join(binary),
                &env,
                timeout,
                Some(self.world.authorizer.clone()),
            )
            .await,
        );
        self.world.started.borrow_mut().push(StartedFunction {
            name: name.to_string(),
            output: function.output.clone(),
            secret: credentials.secret_access_key,
        });
        self.functions
            .borrow_mut()
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

    /// The StackSet, as CloudFormation runs it: its template body, rendered with its
    /// parameters in each account of the target OUs (never the management account, where
    /// service-managed StackSets do not deploy), the roles and policies created there.
    pub(super) async fn stack_set(&self, props: &Value) -> Result<Complete, Failure> {
        let fail = |reason: String| Failure {
            physical_id: None,
            reason,
        };
        let name = props["StackSetName"]
            .as_str()
            .unwrap_or("apono-member-roles");
        let physical_id = format!("{name}:local");
        let parameters: Vec<(String, String)> = props["Parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["ParameterKey"].as_str().unwrap_or_default().to_string(),
                    p["ParameterValue"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let parameters: Vec<(&str, &str)> = parameters
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // CloudFormation takes a service-managed StackSet as SELF only from the management
        // account (where the local deploy runs), as DELEGATED_ADMIN only from a registered
        // delegated administrator.
        if let Some(call_as) = props["CallAs"].as_str().filter(|c| *c != "SELF") {
            return Err(fail(format!(
                "CallAs {call_as} is refused from the management account {}",
                self.account()
            )));
        }
        let targets = &props["StackInstancesGroup"][0]["DeploymentTargets"];
        let accounts = self.target_accounts(targets).await.map_err(fail)?;
        let body =
            tempfile_with(props["TemplateBody"].as_str().unwrap_or_default()).map_err(fail)?;
        let template = crate::template::template_json_at(body.path());
        let prefs = OperationPreferences::from_props(&props["OperationPreferences"]);
        let made = RefCell::new(Vec::new());
        let report = run_operation(&accounts, &prefs, |account| {
            let (template, parameters, made) = (&template, &parameters, &made);
            async move {
                let iam = self.member_iam(&account).await;
                let mut r = Rendering::in_account(template, parameters, &account);
                let mut mine = Vec::new();
                let result = deploy_member_stack(&iam, template, &mut r, &account, &mut mine).await;
                if result.is_err() {
                    // A stack instance whose Create fails rolls its stack back.
                    for (_, role) in mine.drain(..) {
                        let _ = delete_role(&iam, &role).await;
                    }
                }
                made.borrow_mut().extend(mine);
                result
            }
        })
        .await;
        println!("         StackSet {name}: {}", report.summary());
        // Whatever was made is the StackSet's, for its Delete (and a failed Create's rollback).
        self.stack_set_roles
            .borrow_mut()
            .insert(physical_id.clone(), made.into_inner());
        let succeeded = report.succeeded();
        self.stack_set_reports.borrow_mut().push(report);
        if !succeeded {
            let report = self.stack_set_reports.borrow();
            return Err(Failure {
                physical_id: Some(physical_id.clone()),
                reason: format!(
                    "StackSet operation failed: {}",
                    report
                        .last()
                        .map(OperationReport::summary)
                        .unwrap_or_default()
                ),
            });
        }
        Ok(Complete {
            physical_id: physical_id.clone(),
            attributes: BTreeMap::from([("StackSetId".to_string(), physical_id)]),
        })
    }

    /// The accounts a StackSet's `DeploymentTargets` name: those in its OUs (and every OU
    /// below them), with `AccountFilterType` DIFFERENCE less its `Accounts`; the management
    /// account never.
    pub(super) async fn target_accounts(&self, targets: &Value) -> Result<Vec<String>, String> {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        let mut accounts = self
            .accounts_under(&strings(&targets["OrganizationalUnitIds"]))
            .await?;
        let listed = strings(&targets["Accounts"]);
        match targets["AccountFilterType"].as_str().unwrap_or("NONE") {
            "NONE" => {}
            "DIFFERENCE" => accounts.retain(|a| !listed.contains(a)),
            "INTERSECTION" => accounts.retain(|a| listed.contains(a)),
            other => return Err(format!("AccountFilterType {other} is not modelled here")),
        }
        Ok(accounts)
    }

    /// The accounts in the target OUs and every OU below them, the management account left out.
    pub(super) async fn accounts_under(&self, targets: &[String]) -> Result<Vec<String>, String> {
        let orgs = aws_sdk_organizations::Client::new(&self.world.moto.sdk_config());
        let mut accounts = Vec::new();
        let mut parents: Vec<String> = targets.to_vec();
        while let Some(parent) = parents.pop() {
            let listed = orgs
                .list_accounts_for_parent()
                .parent_id(&parent)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "ListAccountsForParent {parent}: {:?}",
                        e.into_service_error()
                    )
                })?;
            accounts.extend(listed.accounts().iter().filter_map(|a| a.id.clone()));
            let children = orgs
                .list_organizational_units_for_parent()
                .parent_id(&parent)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "ListOrganizationalUnitsForParent {parent}: {:?}",
                        e.into_service_error()
                    )
                })?;
            parents.extend(
                children
                    .organizational_units()
                    .iter()
                    .filter_map(|ou| ou.id.clone()),
            );
        }
        accounts.retain(|a| *a != self.world.org.management_account_id);
        accounts.sort();
        accounts.dedup();
        Ok(accounts)
    }

    /// Roles in the member accounts other than the one AWS Organizations made.
    pub(super) async fn member_roles(&self) -> Vec<String> {
        let mut roles = Vec::new();
        for account in &self.world.org.member_account_ids {
            let listed = self
                .member_iam(account)
                .await
                .list_roles()
                .send()
                .await
                .map(|r| r.roles)
                .unwrap_or_default();
            roles.extend(
                listed
                    .into_iter()
                    .map(|r| r.role_name)
                    .filter(|name| name != "OrganizationAccountAccessRole")
                    .map(|name| format!("{account}/{name}")),
            );
        }
        roles
    }

    /// Deletes what the StackSet made in every member account, as CloudFormation does when
    /// the resource is deleted.
    pub(super) async fn delete_stack_set(&self, physical_id: &str) -> Result<(), String> {
        let made = self
            .stack_set_roles
            .borrow_mut()
            .remove(physical_id)
            .unwrap_or_default();
        for (account, role) in made {
            delete_role(&self.member_iam(&account).await, &role)
                .await
                .map_err(|e| format!("{e} in {account}"))?;
        }
        Ok(())
    }

    pub(super) fn start_schedule(&self, rule: &str, props: &Value) {
        let input = props["Targets"][0]["Input"].as_str().unwrap_or("{}");
        let event: Value = serde_json::from_str(input).unwrap_or(Value::Null);
        let Some(function) = self.function(props["Targets"][0]["Arn"].as_str().unwrap_or(""))
        else {
            return;
        };
        let fired = self.fired.clone();
        let delays: Vec<u64> = (0..4)
            .map(|_| self.rng.borrow_mut().u64(200..1500))
            .collect();
        // For as long as the rule exists (its task is aborted when the rule is deleted).
        let task = tokio::spawn(async move {
            for delay in delays.iter().cycle() {
                tokio::time::sleep(Duration::from_millis(*delay)).await;
                function.enqueue(event.clone());
                fired.fetch_add(1, Ordering::SeqCst);
            }
        });
        self.schedules.borrow_mut().insert(rule.to_string(), task);
    }
}
