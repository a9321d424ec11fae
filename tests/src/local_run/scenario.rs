//! One scenario's lifecycle and the checks made at each step.

use super::failing::failing_stacks;
use super::*;
use crate::deploy::{Stack, StackStatus};
use serde_json::Value;
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
    /// Deployed from a member account registered as the StackSets delegated administrator,
    /// not from the management account.
    pub(super) delegated_admin: bool,
    /// Only what must be typed (the tokens as parameters, the subnets); the connector ID is
    /// derived (aws-<account ID>), the VPC from the subnets, the rest defaults.
    pub(super) minimal: bool,
}

impl Scenario {
    /// The scenario's name in the report.
    pub(super) fn tag(&self, seed: u64) -> String {
        let from = match self.delegated_admin {
            true => " from a delegated administrator",
            false => "",
        };
        format!("{}/{}{from} seed {seed}", self.scope, self.mode)
    }
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
            ("ConnectorWaitSeconds", "30"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if !integration_name.is_empty() {
            p.push(("AponoIntegrationName".into(), integration_name.into()));
        }
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
        if self.tokens_as_parameters || self.minimal {
            p.retain(|(k, _)| k != "ConnectorTokenSecretArn" && k != "AponoApiTokenParameterName");
            p.push(("ConnectorToken".into(), CONNECTOR_TOKEN.into()));
            p.push(("AponoApiToken".into(), TOKEN.into()));
        }
        if self.minimal {
            let defaulted = [
                "Scope",
                "ConnectorMode",
                "AponoConnectorId",
                "ConnectorWaitSeconds",
            ];
            p.retain(|(k, _)| !defaulted.contains(&k.as_str()));
        }
        p
    }

    /// The connector ID the stack runs with: derived when not typed, as the template derives
    /// it.
    pub(super) fn connector_id(&self, stack_account: &str) -> String {
        match self.minimal {
            true => format!("aws-{stack_account}"),
            false => CONNECTOR_ID.to_string(),
        }
    }
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
    let stack_account = match scenario.delegated_admin {
        true => w.delegate_stacksets().await,
        false => w.org.management_account_id.clone(),
    };
    let cloud = LocalCloud::new(&w, template, seed, &stack_account).await;
    let tag = scenario.tag(seed);
    println!(
        "\n== {tag}: organization {} ({} members in {} OUs), EKS in {} regions",
        w.org.organization_id,
        w.org.member_account_ids.len(),
        w.org.ou_ids.len(),
        w.regions.len()
    );
    if scenario.mode == "Existing" {
        w.apono
            .add_connector(&scenario.connector_id(&stack_account), "CONNECTED");
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
    stack.set_account(&stack_account);
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
pub(super) struct Steps<'a> {
    pub(super) report: &'a mut Report,
    pub(super) w: &'a World,
    pub(super) cloud: &'a LocalCloud<'a>,
    pub(super) stack: Stack,
    pub(super) scenario: &'a Scenario,
    pub(super) seed: u64,
    /// Accounts the stack reaches (member roles deployed, or its own).
    pub(super) reached: Vec<String>,
    /// The targeting parameters of the scenario.
    pub(super) targets: Vec<(String, String)>,
    pub(super) tag: String,
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
            if !self.scenario.minimal {
                p.push(("VpcId".into(), self.w.vpc.clone()));
            }
        }
        if self.scenario.account_roles {
            p.push(("EksAccessPrincipal".into(), "AccountRole".into()));
        }
        p
    }

    /// The connector ID the stack runs with.
    pub(super) fn connector_id(&self) -> String {
        self.scenario.connector_id(self.cloud.account())
    }

    /// The principal of the entries in `account`: the connector role, or the account's own
    /// Apono role.
    pub(super) fn principal_in(&self, account: &str, connector: &str) -> String {
        match self.scenario.account_roles {
            false => connector.to_string(),
            true if account == self.cloud.account() && self.scenario.scope == "Organization" => {
                role(
                    account,
                    &format!("apono-management-{}", self.connector_id()),
                )
            }
            true => role(
                account,
                &format!("apono-cross-account-{}", self.connector_id()),
            ),
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
    pub(super) fn entries_for(&self, connector: &str) -> usize {
        let principals = self.principals(connector);
        principals.iter().map(|p| self.w.ours(p)).sum()
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
        let typed: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
        self.report.check(
            &format!("{tag}: Create"),
            status == StackStatus::CreateComplete,
            format!("{} (typed: {})", status_line(&status), typed.join(", ")),
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
        let last = self.reached[self.reached.len() - 1].clone();
        let principal_there = self.principal_in(&last, &principal);
        self.enrolled_by_the_schedule(&principal_there, &last).await;
        self.enrolled_by_their_events(&principal).await;
        self.events_stay_inside_the_targets(&principal).await;
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
            format!(
                "{now} for the current role, {before} of ours left for the old one {:?}",
                w.eks
                    .clusters_with_tagged(v1, eks_access_entries::eks::STACK_TAG)
            ),
        );
        new_principal
    }

    /// The same parameters again: no operation, no write anywhere.
    async fn no_op_update(&mut self, v2: &str) {
        let w = self.w;
        let since = self.stack.operations.len();
        let params = self.parameters(v2, "renamed-by-update");
        let (writes_before, eks_before) = (w.eks.mutations() + w.apono.writes(), w.eks.mutations());
        let status = self
            .stack
            .update(self.cloud, &borrowed(&params), self.seed)
            .await;
        let writes = w.eks.mutations() + w.apono.writes() - writes_before;
        let operations = self.stack.operations.len() - since;
        self.report.check(
            &format!("{}: no-op Update sends nothing, writes nothing", self.tag),
            status == StackStatus::UpdateComplete && operations == 0 && writes == 0,
            format!(
                "{operations} operations, {writes} writes (scheduled runs included) {:?}",
                w.eks.mutations_since(eks_before)
            ),
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
        // Rules and buses of ours: none left, in any account and region.
        let rules = self.cloud.events.rules_like("arn:aws:events:");
        let buses = self.cloud.events.buses();
        self.report.check(
            &format!("{tag}: Delete left nothing of ours, everything else"),
            left == 0
                && integrations == ["team-x-aws"]
                && w.someone_elses_entry_kept()
                && member_roles.is_empty()
                && theirs_kept
                && rules.is_empty()
                && buses.is_empty(),
            format!(
                "{left} tagged entries, {} member roles, {} EventBridge rules, {} buses, Apono {integrations:?}, {} scheduled runs fired",
                member_roles.len(),
                rules.len(),
                buses.len(),
                self.cloud.fired()
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
