//! One scenario's lifecycle and the checks made at each step.

use super::failing::{enrolled_by_the_schedule, failing_stacks};
use super::*;
use crate::deploy::{Stack, StackStatus};
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// One scope x connector mode, as a user would deploy it.
pub(super) struct Scenario {
    pub(super) scope: &'static str,
    pub(super) mode: &'static str,
}

impl Scenario {
    pub(super) fn parameters(
        &self,
        connector_role: &str,
        integration_name: &str,
    ) -> Vec<(String, String)> {
        let mut p: Vec<(String, String)> = [
            ("Scope", self.scope),
            ("ConnectorMode", self.mode),
            ("AponoConnectorId", CONNECTOR_ID),
            ("AponoApiTokenParameterName", TOKEN_PARAMETER),
            ("AponoIntegrationName", integration_name),
            ("ConnectorWaitSeconds", "30"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        match self.mode {
            "Deploy" => p.extend(
                [
                    ("VpcId", "vpc-0abc12345"),
                    ("SubnetIds", "subnet-0abc12345,subnet-0def67890"),
                    (
                        "ConnectorTokenSecretArn",
                        "arn:aws:secretsmanager:us-east-1:123456789012:secret:apono-connector-AbCdEf",
                    ),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
            ),
            _ => p.push(("ConnectorRoleArn".into(), connector_role.into())),
        }
        p
    }
}

/// Removes the policy statement `sid` from every role of `template`; true if one was there.
pub(super) fn remove_statement(template: &mut Value, sid: &str) -> bool {
    let mut removed = false;
    for (_, resource) in template["Resources"].as_object_mut().into_iter().flatten() {
        let policies = resource
            .get_mut("Properties")
            .and_then(|p| p.get_mut("Policies"))
            .and_then(Value::as_array_mut);
        for policy in policies.into_iter().flatten() {
            if let Some(statements) = policy["PolicyDocument"]["Statement"].as_array_mut() {
                let before = statements.len();
                statements.retain(|s| s["Sid"] != sid);
                removed |= statements.len() < before;
            }
        }
    }
    removed
}

pub(super) fn borrowed(p: &[(String, String)]) -> Vec<(&str, &str)> {
    p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

pub(super) fn status_line(status: &StackStatus) -> String {
    custom_resource::response::truncate_utf8(&format!("{status:?}"), 300).to_string()
}

/// Prints the operations since `since`, in start order.
pub(super) fn show_timeline(stack: &Stack, since: usize) {
    for line in stack.timeline(since) {
        println!("         {line}");
    }
}

/// One scenario's lifecycle: create, a real update, a no-op update, delete (the schedule
/// firing throughout); in the first scenario also a refused create and a rolled-back one.
pub(super) async fn lifecycle(
    report: &mut Report,
    options: &Options,
    bin: &std::path::Path,
    template: &Value,
    scenario: &Scenario,
    seed: u64,
    failures_too: bool,
) -> Vec<FunctionLog> {
    let w = World::new(options, bin).await;
    let cloud = LocalCloud::new(&w, template, seed);
    let tag = format!("{}/{} seed {seed}", scenario.scope, scenario.mode);
    println!(
        "\n== {tag}: organization {} ({} members in {} OUs), EKS in {} regions",
        w.org.organization_id,
        w.org.member_account_ids.len(),
        w.org.ou_ids.len(),
        w.regions.len()
    );
    if scenario.mode == "Existing" {
        w.apono.add_connector(CONNECTOR_ID, "CONNECTED");
    }
    let mgmt = w.org.management_account_id.clone();
    let v1 = role(&mgmt, "apono-connector-v1");
    if failures_too {
        failing_stacks(report, &w, &cloud, template, scenario, &tag, &v1, seed).await;
    }
    let mut stack = Stack::new(template.clone());
    stack.set_account(&mgmt);
    let mut steps = Steps {
        report,
        w: &w,
        cloud: &cloud,
        stack,
        scenario,
        seed,
        reached: match scenario.scope {
            "Organization" => w.accounts.len(),
            _ => 1,
        },
        tag,
    };
    let principal = steps.create(&v1).await;
    let v2 = role(&mgmt, "apono-connector-v2");
    let new_principal = steps.update(&principal, &v1, &v2).await;
    steps.no_op_update(&v2).await;
    steps.delete(&[new_principal, v1]).await;
    // What each function process wrote, and the secret key it held, for the log scan.
    w.started
        .take()
        .into_iter()
        .map(|started| FunctionLog {
            name: started.name,
            text: started.output.lock().unwrap().join("\n"),
            secret: started.secret,
        })
        .collect()
}

/// One scenario's stack and what its steps check against.
struct Steps<'a> {
    report: &'a mut Report,
    w: &'a World,
    cloud: &'a LocalCloud<'a>,
    stack: Stack,
    scenario: &'a Scenario,
    seed: u64,
    /// Accounts the stack reaches: every account, or its own.
    reached: usize,
    tag: String,
}

impl Steps<'_> {
    /// Create with connector role `v1`; the principal its entries name.
    async fn create(&mut self, v1: &str) -> String {
        let (w, tag) = (self.w, self.tag.clone());
        let since = self.stack.operations.len();
        let params = self.scenario.parameters(v1, "");
        let status = self
            .stack
            .create(self.cloud, &borrowed(&params), self.seed)
            .await;
        show_timeline(&self.stack, since);
        self.report.check(
            &format!("{tag}: Create"),
            status == StackStatus::CreateComplete,
            status_line(&status),
        );
        let principal = match self.scenario.mode {
            "Deploy" => self
                .stack
                .attribute("ConnectorTaskRole", "Arn")
                .unwrap_or_default(),
            _ => v1.to_string(),
        };
        let created = w.ours(&principal);
        let eligible = w.eligible_clusters(self.reached);
        self.report.check(
            &format!("{tag}: an entry on every eligible cluster it reaches"),
            created == eligible,
            format!("{created} of {eligible} (CONFIG_MAP and CREATING clusters skipped)"),
        );
        let ours = w.apono.integrations().len() - 1;
        self.report.check(
            &format!("{tag}: one integration registered"),
            ours == 1,
            format!("{ours} of ours"),
        );
        enrolled_by_the_schedule(self.report, w, &tag, &principal, self.reached).await;
        principal
    }

    /// An Update that renames the integration and (Existing mode) moves to role `v2`; the
    /// principal the entries now name.
    async fn update(&mut self, principal: &str, v1: &str, v2: &str) -> String {
        let (w, tag) = (self.w, self.tag.clone());
        let since = self.stack.operations.len();
        let new_principal = match self.scenario.mode {
            "Deploy" => principal.to_string(),
            _ => v2.to_string(),
        };
        let params = self.scenario.parameters(v2, "renamed-by-update");
        let status = self
            .stack
            .update(self.cloud, &borrowed(&params), self.seed)
            .await;
        show_timeline(&self.stack, since);
        let renamed = w
            .apono
            .integrations()
            .iter()
            .any(|i| i["name"] == "renamed-by-update");
        self.report.check(
            &format!("{tag}: Update (integration renamed, connector role changed)"),
            status == StackStatus::UpdateComplete && renamed,
            status_line(&status),
        );
        let (now, before) = (w.ours(&new_principal), w.ours(v1));
        let eligible = w.eligible_clusters(self.reached);
        let moved = match self.scenario.mode {
            "Deploy" => now == eligible,
            _ => now == eligible && before == 0,
        };
        self.report.check(
            &format!("{tag}: entries follow the connector role"),
            moved && w.someone_elses_entry_kept(),
            format!("{now} for the current role, {before} of ours left for the old one"),
        );
        new_principal
    }

    /// The same parameters again: no operation, no write anywhere.
    async fn no_op_update(&mut self, v2: &str) {
        let w = self.w;
        let since = self.stack.operations.len();
        let params = self.scenario.parameters(v2, "renamed-by-update");
        let writes_before = w.eks.mutations() + w.apono.writes();
        let status = self
            .stack
            .update(self.cloud, &borrowed(&params), self.seed)
            .await;
        let writes = w.eks.mutations() + w.apono.writes() - writes_before;
        let operations = self.stack.operations.len() - since;
        self.report.check(
            &format!("{}: no-op Update sends nothing, writes nothing", self.tag),
            status == StackStatus::UpdateComplete && operations == 0 && writes == 0,
            format!("{operations} operations, {writes} writes (scheduled runs included)"),
        );
    }

    /// Delete, with the schedule firing until its rule is gone: nothing of ours may be left
    /// (no entry for any of `principals`), everything else must be.
    async fn delete(&mut self, principals: &[String]) {
        let (w, tag) = (self.w, self.tag.clone());
        let since = self.stack.operations.len();
        let status = self.stack.delete(self.cloud, self.seed).await;
        show_timeline(&self.stack, since);
        // Let anything still queued in the function (a last scheduled run) finish first.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let left: usize = principals.iter().map(|p| w.ours(p)).sum();
        let integrations: Vec<String> = w
            .apono
            .integrations()
            .iter()
            .map(|i| i["name"].as_str().unwrap_or("").to_string())
            .collect();
        self.report.check(
            &format!("{tag}: Delete"),
            status == StackStatus::DeleteComplete,
            status_line(&status),
        );
        let member_roles = self.cloud.member_roles().await;
        self.report.check(
            &format!("{tag}: Delete left nothing of ours, everything else"),
            left == 0
                && integrations == ["team-x-aws"]
                && w.someone_elses_entry_kept()
                && member_roles.is_empty(),
            format!(
                "{left} tagged entries, {} member roles, Apono {integrations:?}, {} scheduled runs fired",
                member_roles.len(),
                self.cloud.fired.load(Ordering::SeqCst)
            ),
        );
        let accepted = w.rx.accepted();
        let largest = accepted.iter().map(|r| r.body.len()).max().unwrap_or(0);
        self.report.check(
            &format!("{tag}: every response within 4096 bytes"),
            largest <= 4096,
            format!("{} responses, largest {largest} bytes", accepted.len()),
        );
    }
}
