//! Which accounts a scenario reaches, what is broken or outside the organization there, and
//! the checks that the member roles, the trust and the entries follow.

use super::scenario::{Scenario, Steps};
use super::*;

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
pub(super) const MANAGED_CONNECTOR_ACCOUNT: &str = "999988887777";
pub(super) const MANAGED_EXTERNAL_ID: &str = "apono-tenant-4f2a9c";

/// Someone else's role in the broken account, named as the member stack's Apono role
/// (`apono-cross-account-` and [`CONNECTOR_ID`], the ID the scenario with a broken account types).
pub(super) const CLASHING_ROLE: &str = "apono-cross-account-local-connector";

/// The accounts a scenario reaches and the parameters that target them; a broken account is
/// made broken here.
pub(super) async fn reach(w: &World, scenario: &Scenario) -> (Vec<String>, Vec<(String, String)>) {
    let mgmt = w.org.management_account_id.clone();
    let members = &w.org.member_account_ids;
    if scenario.scope != "Organization" {
        return (vec![mgmt], Vec::new());
    }
    // From a delegated administrator every member, its own account among them, and never the
    // management account, where no StackSet deploys the member roles.
    let everyone = match scenario.delegated_admin {
        true => members.clone(),
        false => w.accounts.clone(),
    };
    match scenario.targeting {
        Targeting::Everything => (everyone, Vec::new()),
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
            let reached = everyone.into_iter().filter(|a| a != broken).collect();
            let targets = vec![("StackSetFailureTolerancePercentage".into(), "34".into())];
            (reached, targets)
        }
    }
}

impl Steps<'_> {
    /// With a managed connector, every Apono role (this account's and each member's) trusts
    /// exactly its role from outside the organization, and only with the external ID.
    pub(super) async fn check_trust(&mut self, connector: &str) {
        if !self.scenario.managed_connector {
            return;
        }
        let mut documents = Vec::new();
        for account in &self.reached {
            let (iam, name) = match *account == self.w.org.management_account_id {
                true => (
                    self.cloud.iam(),
                    format!("apono-management-{}", self.connector_id()),
                ),
                false => (
                    self.cloud.member_iam(account).await,
                    format!("apono-cross-account-{}", self.connector_id()),
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
    pub(super) fn check_reach(&mut self) {
        if self.scenario.scope != "Organization" {
            return;
        }
        let tag = self.tag.clone();
        let reports = self.cloud.stack_set_reports.borrow();
        let member_roles = format!("apono-member-roles-{}", self.connector_id());
        let last = reports
            .iter()
            .rev()
            .find(|(name, _)| *name == member_roles)
            .map(|(_, report)| report);
        let Some(last) = last else {
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
}
