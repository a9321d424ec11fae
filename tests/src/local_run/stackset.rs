//! The StackSets' member stacks, rendered from their own template in every target account and
//! region.

use super::*;
use crate::deploy::{Complete, Failure};
use crate::template::{substitute, Rendering};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What a member stack made, for its rollback and its StackSet's Delete.
#[derive(Debug, Clone)]
pub(super) enum Made {
    Role { account: String, name: String },
    Rule { arn: String },
}

/// Where a member stack is created: its account (IAM there) and region.
pub(super) struct MemberStack<'a> {
    pub(super) iam: &'a aws_sdk_iam::Client,
    pub(super) events: &'a EventBridge,
    pub(super) account: &'a str,
    pub(super) region: &'a str,
    /// The stack's name, which CloudFormation's generated resource names start with.
    pub(super) stack_name: String,
}

/// One member stack: its roles (with their inline policies), policy resources and EventBridge
/// rules, each created once every resource it refers to is (CloudFormation's order: a role
/// whose policy names another role's `Arn` comes after it), in moto (IAM) and the EventBridge
/// model of that account and region. Each thing made is recorded in `made`.
pub(super) async fn deploy_member_stack(
    at: &MemberStack<'_>,
    template: &Value,
    r: &mut Rendering,
    made: &mut Vec<Made>,
) -> Result<(), String> {
    let (iam, account) = (at.iam, at.account);
    let graph = crate::cfn::Graph::new(template, r);
    let mut done: std::collections::BTreeSet<String> = Default::default();
    while done.len() < graph.deps.len() {
        let ready: Vec<String> = graph
            .deps
            .iter()
            .filter(|(name, deps)| !done.contains(*name) && deps.is_subset(&done))
            .map(|(name, _)| name.clone())
            .collect();
        assert!(
            !ready.is_empty(),
            "the member template has a dependency cycle"
        );
        for logical_id in ready {
            let resource = &template["Resources"][&logical_id];
            let props = substitute(&resource["Properties"], r).unwrap_or(Value::Null);
            match resource["Type"].as_str() {
                Some("AWS::IAM::Role") => {
                    let name = props["RoleName"]
                        .as_str()
                        .unwrap_or(logical_id.as_str())
                        .to_string();
                    put_role(iam, &name, &props, true)
                        .await
                        .map_err(|e| format!("{e} in {account}"))?;
                    made.push(Made::Role {
                        account: account.to_string(),
                        name: name.clone(),
                    });
                    r.attributes
                        .insert((logical_id.clone(), "Ref".into()), name.clone());
                    r.attributes.insert(
                        (logical_id.clone(), "Arn".into()),
                        r.partition().arn(&format!("iam::{account}:role/{name}")),
                    );
                }
                Some("AWS::IAM::Policy") => {
                    let policy = props["PolicyName"].as_str().unwrap_or_default();
                    for role in LocalCloud::policy_roles(&props) {
                        put_role_policy(iam, &role, policy, &props["PolicyDocument"].to_string())
                            .await
                            .map_err(|e| format!("{e} in {account}"))?;
                    }
                }
                Some("AWS::Events::Rule") => {
                    let name = format!("{}-{logical_id}", at.stack_name);
                    let arn = format!("arn:aws:events:{}:{account}:rule/{name}", at.region);
                    let rule = Rule {
                        bus_arn: default_bus(account, at.region),
                        // As the template has it: JSON booleans stay booleans.
                        pattern: resource["Properties"]["EventPattern"].clone(),
                        targets: props["Targets"].as_array().cloned().unwrap_or_default(),
                    };
                    at.events
                        .put_rule(&arn, rule)
                        .map_err(|e| format!("{e} in {account} {}", at.region))?;
                    made.push(Made::Rule { arn: arn.clone() });
                    r.attributes
                        .insert((logical_id.clone(), "Ref".into()), name);
                    r.attributes.insert((logical_id.clone(), "Arn".into()), arn);
                }
                other => return Err(format!("{logical_id}: type {other:?} is not modelled")),
            }
            done.insert(logical_id);
        }
    }
    Ok(())
}

/// A file holding `text`, removed when dropped.
pub(super) struct TempFile(PathBuf);

impl TempFile {
    pub(super) fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub(super) fn tempfile_with(text: &str) -> Result<TempFile, String> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "local-deploy-{}-{}.yaml",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(TempFile(path))
}

/// The StackSet resource: its member stacks in the target accounts, paced as CloudFormation
/// paces an operation ([`run_operation`]).
impl LocalCloud<'_> {
    /// The StackSet, as CloudFormation runs it: its template body, rendered with its
    /// parameters in each account of the target OUs (never the management account, where
    /// service-managed StackSets do not deploy) and each of its regions, what the template
    /// makes created there. An account's instances deploy region after region; one that fails
    /// fails the account (the operation model counts accounts).
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
        self.check_call_as(props["CallAs"].as_str().unwrap_or("SELF"))
            .await
            .map_err(fail)?;
        let targets = &props["StackInstancesGroup"][0]["DeploymentTargets"];
        let accounts = self.target_accounts(targets).await.map_err(fail)?;
        let body =
            tempfile_with(props["TemplateBody"].as_str().unwrap_or_default()).map_err(fail)?;
        let template = crate::template::template_json_at(body.path());
        let prefs = OperationPreferences::from_props(&props["OperationPreferences"]);
        let regions: Vec<String> = props["StackInstancesGroup"][0]["Regions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect();
        if regions.is_empty()
            || regions
                .iter()
                .any(|r| custom_resource::ids::region(r).is_err())
        {
            return Err(fail(format!(
                "StackInstancesGroup Regions {regions:?} are not regions"
            )));
        }
        let made = RefCell::new(Vec::new());
        let report = run_operation(&accounts, &prefs, |account| {
            let (template, parameters, made, regions) = (&template, &parameters, &made, &regions);
            async move {
                let iam = self.member_iam(&account).await;
                let mut mine = Vec::new();
                let mut result = Ok(());
                for (n, region) in regions.iter().enumerate() {
                    let at = MemberStack {
                        iam: &iam,
                        events: &self.events,
                        account: &account,
                        region,
                        stack_name: format!("StackSet-{name}-{n}"),
                    };
                    let mut r =
                        Rendering::in_account(template, parameters, &account).in_region(region);
                    result = deploy_member_stack(&at, template, &mut r, &mut mine).await;
                    if result.is_err() {
                        break;
                    }
                }
                if result.is_err() {
                    // A stack instance whose Create fails rolls its stack back.
                    let _ = self.undo(std::mem::take(&mut mine)).await;
                }
                made.borrow_mut().extend(mine);
                result
            }
        })
        .await;
        println!("         StackSet {name}: {}", report.summary());
        // Whatever was made is the StackSet's, for its Delete (and a failed Create's rollback).
        self.stack_set_made
            .borrow_mut()
            .insert(physical_id.clone(), made.into_inner());
        let succeeded = report.succeeded();
        let summary = report.summary();
        self.stack_set_reports
            .borrow_mut()
            .push((name.to_string(), report));
        if !succeeded {
            return Err(Failure {
                physical_id: Some(physical_id.clone()),
                reason: format!("StackSet operation failed: {summary}"),
            });
        }
        Ok(Complete {
            physical_id: physical_id.clone(),
            attributes: BTreeMap::from([("StackSetId".to_string(), physical_id)]),
        })
    }

    /// CloudFormation takes a service-managed StackSet as SELF only from the management
    /// account, as DELEGATED_ADMIN only from an account registered as the StackSets delegated
    /// administrator (AWS Organizations' record, read as the management account).
    async fn check_call_as(&self, call_as: &str) -> Result<(), String> {
        let account = self.account();
        let management = account == self.world.org.management_account_id;
        let delegated = || async {
            aws_sdk_organizations::Client::new(&self.world.moto.sdk_config())
                .list_delegated_administrators()
                .service_principal(org_info::api::STACKSETS_SERVICE_PRINCIPAL)
                .send()
                .await
                .map(|out| {
                    out.delegated_administrators()
                        .iter()
                        .any(|d| d.id() == Some(account))
                })
                .unwrap_or(false)
        };
        match call_as {
            "SELF" if management => Ok(()),
            "DELEGATED_ADMIN" if !management && delegated().await => Ok(()),
            other => Err(format!(
                "CallAs {other} is refused from account {account} (the management account is {})",
                self.world.org.management_account_id
            )),
        }
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

    /// Deletes what the StackSet made in every member account and region, as CloudFormation
    /// does when the resource is deleted.
    pub(super) async fn delete_stack_set(&self, physical_id: &str) -> Result<(), String> {
        let made = self
            .stack_set_made
            .borrow_mut()
            .remove(physical_id)
            .unwrap_or_default();
        self.undo(made).await
    }

    /// Removes what member stacks made: rules first, then roles.
    async fn undo(&self, made: Vec<Made>) -> Result<(), String> {
        let (rules, roles): (Vec<Made>, Vec<Made>) = made
            .into_iter()
            .partition(|m| matches!(m, Made::Rule { .. }));
        for made in rules.into_iter().chain(roles) {
            match made {
                Made::Rule { arn } => self.events.delete_rule(&arn),
                Made::Role { account, name } => {
                    delete_role(&self.member_iam(&account).await, &name)
                        .await
                        .map_err(|e| format!("{e} in {account}"))?
                }
            }
        }
        Ok(())
    }
}
