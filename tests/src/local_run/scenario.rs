//! One scenario's lifecycle and the checks made at each step.

use super::failing::{enrolled_by_the_schedule, failing_stacks};
use super::*;
use crate::deploy::{Stack, StackStatus};
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// One scope x connector mode, as a user would deploy it.
#[derive(Default)]
pub(super) struct Scenario {
    pub(super) scope: &'static str,
    pub(super) mode: &'static str,
    pub(super) targeting: Targeting,
    /// `EksAccessPrincipal` AccountRole: each account's Apono role gets the entries there.
    pub(super) account_roles: bool,
    /// Apono's managed connector: its role lives in Apono's account, outside the organization,
    /// and the Apono roles trust it only with an external ID.
    pub(super) managed_connector: bool,
    /// Both tokens given as NoEcho parameters (the stack keeps them in secrets of its own)
    /// instead of a secret and an SSM parameter made beforehand.
    pub(super) tokens_as_parameters: bool,
}

/// Which accounts an Organization scenario targets, and what is broken there.
#[derive(Default, Clone, Copy, PartialEq)]
pub(super) enum Targeting {
    /// The whole organization.
    #[default]
    Everything,
    /// The first OU only (`OrganizationalUnitIds`), less its last account
    /// (`ExcludedAccountIds`).
    FirstOuLessOne,
    /// The whole organization, where one member account already holds a role of the name the
    /// member stack makes: its stack instance fails, and a failure tolerance of one in three
    /// lets the rollout pass it.
    OneBrokenAccount,
}

/// The account Apono's managed connector runs in: outside the organization.
const MANAGED_CONNECTOR_ACCOUNT: &str = "999988887777";
const MANAGED_EXTERNAL_ID: &str = "apono-tenant-4f2a9c";

/// Someone else's role in the broken account, named as the member stack's Apono role.
/// (`apono-cross-account-` and [`CONNECTOR_ID`]).
pub(super) const CLASHING_ROLE: &str = "apono-cross-account-local-connector";

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
        if self.managed_connector {
            p.push(("ConnectorExternalId".into(), MANAGED_EXTERNAL_ID.into()));
        }
        if self.tokens_as_parameters {
            p.retain(|(k, _)| k != "ConnectorTokenSecretArn");
            p.push(("ConnectorToken".into(), CONNECTOR_TOKEN.into()));
            p.push(("AponoApiToken".into(), TOKEN.into()));
        }
        p
    }
}

/// Removes the policy statement `sid` from every role of `template` (also as a branch of an
/// `Fn::If`); true if one was there.
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
                for branches in statements
                    .iter_mut()
                    .filter_map(|s| s.get_mut("Fn::If").and_then(Value::as_array_mut))
                {
                    for branch in branches.iter_mut().skip(1).filter(|b| b["Sid"] == sid) {
                        *branch = serde_json::json!({"Ref": "AWS::NoValue"});
                        removed = true;
                    }
                }
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
    // The connector's account: this one, or Apono's for its managed connector.
    let connector_account = match scenario.managed_connector {
        true => MANAGED_CONNECTOR_ACCOUNT.to_string(),
        false => mgmt.clone(),
    };
    let v1 = role(&connector_account, "apono-connector-v1");
    if failures_too {
        failing_stacks(report, &w, &cloud, template, scenario, &tag, &v1, seed).await;
    }
    let mut stack = Stack::new(template.clone());
    stack.set_account(&mgmt);
    let (reached, targets) = reach(&w, scenario).await;
    let mut steps = Steps {
        report,
        w: &w,
        cloud: &cloud,
        stack,
        scenario,
        seed,
        reached,
        targets,
        tag,
    };
    let principal = steps.create(&v1).await;
    let v2 = role(&connector_account, "apono-connector-v2");
    let new_principal = steps.update(&principal, &v1, &v2).await;
    steps.no_op_update(&v2).await;
    let mut principals = steps.principals(&new_principal);
    principals.extend([new_principal, v1]);
    steps.delete(&principals).await;
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
    /// Accounts the stack reaches (member roles deployed, or its own).
    reached: Vec<String>,
    /// The targeting parameters of the scenario.
    targets: Vec<(String, String)>,
    tag: String,
}

/// The accounts a scenario reaches and the parameters that target them; a broken account is
/// made broken here.
async fn reach(w: &World, scenario: &Scenario) -> (Vec<String>, Vec<(String, String)>) {
    let mgmt = w.org.management_account_id.clone();
    let members = &w.org.member_account_ids;
    if scenario.scope != "Organization" {
        return (vec![mgmt], Vec::new());
    }
    match scenario.targeting {
        Targeting::Everything => (w.accounts.clone(), Vec::new()),
        Targeting::FirstOuLessOne => {
            // Members are spread over the OUs in turn (`seed_organization`).
            let in_first: Vec<&String> = members.iter().step_by(w.org.ou_ids.len()).collect();
            let excluded = in_first
                .last()
                .expect("a member in the first OU")
                .to_string();
            let mut reached = vec![mgmt];
            reached.extend(
                in_first
                    .iter()
                    .map(|a| a.to_string())
                    .filter(|a| *a != excluded),
            );
            let targets = vec![
                ("OrganizationalUnitIds".into(), w.org.ou_ids[0].clone()),
                ("ExcludedAccountIds".into(), excluded),
            ];
            (reached, targets)
        }
        Targeting::OneBrokenAccount => {
            let broken = &members[0];
            let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
            let admin = w.moto.sdk_config();
            aws_sdk_iam::Client::new(&crate::org::assume_member(&w.moto, &admin, broken).await)
                .create_role()
                .role_name(CLASHING_ROLE)
                .assume_role_policy_document(trust)
                .send()
                .await
                .expect("someone else's role");
            let reached = w
                .accounts
                .iter()
                .filter(|a| *a != broken)
                .cloned()
                .collect();
            let targets = vec![("StackSetFailureTolerancePercentage".into(), "34".into())];
            (reached, targets)
        }
    }
}

impl Steps<'_> {
    /// The scenario's parameters with its targeting.
    fn parameters(&self, connector_role: &str, integration_name: &str) -> Vec<(String, String)> {
        let mut p = self.scenario.parameters(connector_role, integration_name);
        p.extend(self.targets.iter().cloned());
        if self.scenario.mode == "Deploy" {
            // The world's subnets; the VPC derived from them, or given and checked.
            p.retain(|(k, _)| k != "SubnetIds" && k != "VpcId");
            p.push(("SubnetIds".into(), self.w.subnets.join(",")));
            if self.scenario.scope == "Organization" {
                p.push(("VpcId".into(), self.w.vpc.clone()));
            }
        }
        if self.scenario.account_roles {
            p.push(("EksAccessPrincipal".into(), "AccountRole".into()));
        }
        p
    }

    /// The principal of the entries in `account`: the connector role, or the account's own
    /// Apono role.
    fn principal_in(&self, account: &str, connector: &str) -> String {
        match self.scenario.account_roles {
            false => connector.to_string(),
            true if account == self.w.org.management_account_id
                && self.scenario.scope == "Organization" =>
            {
                role(account, &format!("apono-management-{CONNECTOR_ID}"))
            }
            true => role(account, &format!("apono-cross-account-{CONNECTOR_ID}")),
        }
    }

    /// The principals of the reached accounts, each once.
    fn principals(&self, connector: &str) -> Vec<String> {
        let mut principals: Vec<String> = self
            .reached
            .iter()
            .map(|a| self.principal_in(a, connector))
            .collect();
        principals.sort();
        principals.dedup();
        principals
    }

    /// Every entry of ours for the principals of the reached accounts.
    fn entries_for(&self, connector: &str) -> usize {
        let principals = self.principals(connector);
        principals.iter().map(|p| self.w.ours(p)).sum()
    }

    /// With a managed connector, every Apono role (this account's and each member's) trusts
    /// exactly its role from outside the organization, and only with the external ID.
    async fn check_trust(&mut self, connector: &str) {
        if !self.scenario.managed_connector {
            return;
        }
        let mut documents = Vec::new();
        for account in &self.reached {
            let (iam, name) = match *account == self.w.org.management_account_id {
                true => (self.cloud.iam(), format!("apono-management-{CONNECTOR_ID}")),
                false => (
                    self.cloud.member_iam(account).await,
                    format!("apono-cross-account-{CONNECTOR_ID}"),
                ),
            };
            let trust = iam
                .get_role()
                .role_name(&name)
                .send()
                .await
                .ok()
                .and_then(|r| r.role)
                .and_then(|r| r.assume_role_policy_document)
                .map(|d| {
                    url::form_urlencoded::parse(d.as_bytes())
                        .map(|(k, v)| format!("{k}{v}"))
                        .collect::<String>()
                })
                .unwrap_or_default();
            documents.push(trust);
        }
        let trusted = documents
            .iter()
            .all(|trust| trust.contains(connector) && trust.contains(MANAGED_EXTERNAL_ID));
        self.report.check(
            &format!(
                "{}: every Apono role trusts the connector outside the organization, with its external ID",
                self.tag
            ),
            trusted && documents.len() == self.reached.len(),
            format!("{} roles checked", documents.len()),
        );
    }

    /// The member roles went where the scenario targets, the failed instance is named, and the
    /// EKS resource counts no account outside the targets as unreachable.
    fn check_reach(&mut self) {
        if self.scenario.scope != "Organization" {
            return;
        }
        let tag = self.tag.clone();
        let reports = self.cloud.stack_set_reports.borrow();
        let Some(last) = reports.last() else {
            self.report
                .check(&format!("{tag}: StackSet ran"), false, "no operation");
            return;
        };
        let mgmt = &self.w.org.management_account_id;
        let members_reached = self.reached.iter().filter(|a| *a != mgmt).count();
        let unreachable = self
            .stack
            .attribute("EksAccessEntries", "Unreachable")
            .unwrap_or_default();
        let (ok, expected_unreachable) = match self.scenario.targeting {
            Targeting::Everything => (
                last.accounts == members_reached && last.failed.is_empty(),
                0,
            ),
            Targeting::FirstOuLessOne => (
                last.accounts == members_reached && last.failed.is_empty(),
                0,
            ),
            Targeting::OneBrokenAccount => (
                last.accounts == members_reached + 1
                    && last.failed.len() == 1
                    && last.failed[0].1.contains("already exists")
                    && last.succeeded(),
                self.w.regions.len(),
            ),
        };
        self.report.check(
            &format!("{tag}: member roles reach the targeted accounts, failures named"),
            ok && unreachable == expected_unreachable.to_string(),
            format!(
                "StackSet: {}; EKS unreachable pairs: {unreachable}",
                last.summary()
            ),
        );
    }

    /// Create with connector role `v1`; the principal its entries name.
    async fn create(&mut self, v1: &str) -> String {
        let (w, tag) = (self.w, self.tag.clone());
        let since = self.stack.operations.len();
        let params = self.parameters(v1, "");
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
        let created = self.entries_for(&principal);
        let eligible = w.eligible_clusters(self.reached.len());
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
        self.check_reach();
        self.check_trust(&principal).await;
        let last = &self.reached[self.reached.len() - 1];
        let principal_there = self.principal_in(last, &principal);
        let principals = self.principals(&principal);
        let count = || principals.iter().map(|p| w.ours(p)).sum::<usize>();
        let reached = self.reached.len();
        enrolled_by_the_schedule(
            self.report,
            w,
            &tag,
            &principal_there,
            last,
            reached,
            &count,
        )
        .await;
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
        let params = self.parameters(v2, "renamed-by-update");
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
        let (now, before) = (self.entries_for(&new_principal), w.ours(v1));
        let eligible = w.eligible_clusters(self.reached.len());
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
        let params = self.parameters(v2, "renamed-by-update");
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
        let mut member_roles = self.cloud.member_roles().await;
        // Someone else's role in the broken account stays.
        let theirs = member_roles
            .iter()
            .any(|r| r.ends_with(&format!("/{CLASHING_ROLE}")));
        member_roles.retain(|r| !r.ends_with(&format!("/{CLASHING_ROLE}")));
        let theirs_kept = theirs || self.scenario.targeting != Targeting::OneBrokenAccount;
        self.report.check(
            &format!("{tag}: Delete left nothing of ours, everything else"),
            left == 0
                && integrations == ["team-x-aws"]
                && w.someone_elses_entry_kept()
                && member_roles.is_empty()
                && theirs_kept,
            format!(
                "{left} tagged entries, {} member roles, Apono {integrations:?}, {} scheduled runs fired",
                member_roles.len(),
                self.cloud.fired.load(Ordering::SeqCst)
            ),
        );
        let accepted = w.rx.accepted();
        let leaked = accepted
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .filter(|body| body.contains(TOKEN) || body.contains(CONNECTOR_TOKEN))
            .count();
        let secrets_left = aws_sdk_secretsmanager::Client::new(&w.moto.sdk_config())
            .list_secrets()
            .send()
            .await
            .map(|l| l.secret_list.unwrap_or_default().len())
            .unwrap_or(usize::MAX);
        self.report.check(
            &format!("{tag}: no token in any answer, no secret of ours left"),
            leaked == 0 && secrets_left == 0,
            format!("{leaked} answers with a token, {secrets_left} secrets left"),
        );
        let largest = accepted.iter().map(|r| r.body.len()).max().unwrap_or(0);
        self.report.check(
            &format!("{tag}: every response within 4096 bytes"),
            largest <= 4096,
            format!("{} responses, largest {largest} bytes", accepted.len()),
        );
    }
}
