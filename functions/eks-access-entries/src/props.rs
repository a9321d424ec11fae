//! The resource's properties: what a template may ask for, checked before anything is done.

use crate::eks::Grant;
use custom_resource::props::{opt_boolean, opt_number, opt_string, string_list};
use custom_resource::{ids, Properties, PropertyError};
use org_api::regions::Partition;
use serde::Deserialize;

/// The cluster-admin access policy in the commercial partition; see [`cluster_admin_policy`].
pub const CLUSTER_ADMIN_POLICY: &str =
    "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy";

/// The cluster-admin access policy (Apono's guide's choice) in a partition.
pub fn cluster_admin_policy(partition: Partition) -> String {
    partition.arn("eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy")
}
pub const DEFAULT_MEMBER_ROLE: &str = "apono-eks-access-entries";
/// Account x region pairs worked on at once. Pairs in different accounts or regions share no
/// AWS limit; chosen from the sweep in the README (200 x 17 x 2 at 50 ms per call): 64 runs
/// within 1.1x of the critical-path bound and 60x faster than one pair at a time; 128 gains
/// 1.7x more but sits at 1.3x of its bound as the client saturates.
pub const DEFAULT_MAX_CONCURRENCY: usize = 64;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct EksProps {
    /// The role the entries are for; `{account}` in it stands for each cluster's account
    /// (each account's own Apono role).
    pub principal_arn: String,
    /// The principal in the function's own account, where that role has another name.
    #[serde(default, deserialize_with = "opt_string")]
    pub own_account_principal_arn: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub access_policy_arn: Option<String>,
    /// `cluster` (default) or `namespace` (with `Namespaces`).
    #[serde(default, deserialize_with = "opt_string")]
    pub access_scope: Option<String>,
    #[serde(default, deserialize_with = "string_list")]
    pub namespaces: Vec<String>,
    /// Empty: the regions enabled for this account where EKS is offered.
    #[serde(default, deserialize_with = "string_list")]
    pub regions: Vec<String>,
    /// Empty: every ACTIVE account of the organization (or of `OrganizationalUnitIds`).
    #[serde(default, deserialize_with = "string_list")]
    pub accounts: Vec<String>,
    /// The OUs (or root) the member roles are deployed to: their ACTIVE accounts, at any
    /// depth, and the function's own account. Empty: the whole organization.
    #[serde(default, deserialize_with = "string_list")]
    pub organizational_unit_ids: Vec<String>,
    /// The organization's management account: left out unless it is the function's own, as
    /// a service-managed StackSet never deploys a member role there.
    #[serde(default, deserialize_with = "opt_string")]
    pub management_account_id: Option<String>,
    /// Accounts left out (the StackSet's `AccountFilterType` DIFFERENCE).
    #[serde(default, deserialize_with = "string_list")]
    pub excluded_account_ids: Vec<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub member_role_name: Option<String>,
    #[serde(default, deserialize_with = "opt_boolean")]
    pub enable_api_auth_mode: Option<bool>,
    #[serde(default, deserialize_with = "opt_number")]
    pub max_concurrency: Option<usize>,
    #[serde(default, deserialize_with = "opt_boolean")]
    pub fail_on_skipped: Option<bool>,
    /// Ordering only: the StackSet that creates the member roles, the auth-mode policy.
    #[serde(default)]
    pub wait_for: custom_resource::WaitFor,
}

impl Properties for EksProps {
    fn validate(&self) -> Result<(), PropertyError> {
        principal_arn(&self.principal_arn).map_err(|m| PropertyError::new("PrincipalArn", m))?;
        if Partition::of_arn(&self.principal_arn).is_none() {
            return Err(PropertyError::new(
                "PrincipalArn",
                "its partition is none of aws, aws-cn and aws-us-gov",
            ));
        }
        if let Some(own) = &self.own_account_principal_arn {
            ids::iam_role_arn(own).map_err(|m| PropertyError::new("OwnAccountPrincipalArn", m))?;
        }
        let partition = self.partition();
        let policy = self.policy();
        if !policy.starts_with(&partition.arn("eks::aws:cluster-access-policy/")) {
            return Err(PropertyError::new(
                "AccessPolicyArn",
                format!(
                    "{policy:?} is not an EKS access policy ARN in the principal's partition {} (e.g. {})",
                    partition.name(),
                    cluster_admin_policy(partition)
                ),
            ));
        }
        self.validate_scope()?;
        for region in &self.regions {
            ids::region(region).map_err(|m| PropertyError::new("Regions", m))?;
        }
        for (name, accounts) in [
            ("Accounts", &self.accounts),
            ("ExcludedAccountIds", &self.excluded_account_ids),
        ] {
            for account in accounts {
                ids::account_id(account).map_err(|m| PropertyError::new(name, m))?;
            }
        }
        if let Some(account) = &self.management_account_id {
            ids::account_id(account).map_err(|m| PropertyError::new("ManagementAccountId", m))?;
        }
        for parent in &self.organizational_unit_ids {
            ids::organizational_unit_id(parent)
                .or_else(|_| ids::root_id(parent))
                .map_err(|m| PropertyError::new("OrganizationalUnitIds", m))?;
        }
        let role = self.member_role();
        if !is_role_name(role) {
            return Err(PropertyError::new(
                "MemberRoleName",
                format!("{role:?} is not an IAM role name"),
            ));
        }
        if self.max_concurrency.is_some_and(|n| n == 0 || n > 256) {
            return Err(PropertyError::new("MaxConcurrency", "between 1 and 256"));
        }
        Ok(())
    }
}

impl EksProps {
    /// `Namespaces` goes with `AccessScope` namespace, and only with it.
    fn validate_scope(&self) -> Result<(), PropertyError> {
        let scope = self.access_scope.as_deref().unwrap_or("cluster");
        match (scope, self.namespaces.is_empty()) {
            ("cluster", true) | ("namespace", false) => Ok(()),
            ("cluster", false) => Err(PropertyError::new(
                "Namespaces",
                "only with AccessScope namespace",
            )),
            ("namespace", true) => Err(PropertyError::new(
                "Namespaces",
                "required with AccessScope namespace",
            )),
            (other, _) => Err(PropertyError::new(
                "AccessScope",
                format!("{other:?}: expected cluster or namespace"),
            )),
        }
    }

    /// The principal's partition (validated to be one of the three): the entries are made in it.
    fn partition(&self) -> Partition {
        Partition::of_arn(&self.principal_arn).unwrap_or(Partition::Aws)
    }

    fn policy(&self) -> String {
        self.access_policy_arn
            .clone()
            .unwrap_or_else(|| cluster_admin_policy(self.partition()))
    }

    pub(crate) fn member_role(&self) -> &str {
        self.member_role_name
            .as_deref()
            .unwrap_or(DEFAULT_MEMBER_ROLE)
    }

    pub fn grant(&self) -> Grant {
        Grant {
            principal_arn: self.principal_arn.clone(),
            own_account_principal_arn: self.own_account_principal_arn.clone(),
            policy_arn: self.policy(),
            namespaces: self.namespaces.clone(),
        }
    }
}

/// A role ARN, where `{account}` may stand for the account (and nowhere else).
pub(crate) fn principal_arn(arn: &str) -> Result<(), String> {
    let sample = arn.replace(crate::eks::ACCOUNT_PLACEHOLDER, "123456789012");
    ids::iam_role_arn(&sample)?;
    let placeholder = crate::eks::ACCOUNT_PLACEHOLDER;
    if arn.contains(placeholder) && arn.split(':').nth(4) != Some(placeholder) {
        return Err(format!(
            "{arn:?}: {{account}} may only stand for the account ID"
        ));
    }
    Ok(())
}

/// IAM's role-name rule: 1-64 characters of letters, digits and +=,.@_-.
fn is_role_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(principal: &str, policy: Option<&str>) -> EksProps {
        let mut value = serde_json::json!({"PrincipalArn": principal});
        if let Some(policy) = policy {
            value["AccessPolicyArn"] = policy.into();
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_default_policy_is_cluster_admin_in_the_principals_partition() {
        for (partition, principal) in [
            ("aws", "arn:aws:iam::123456789012:role/apono"),
            ("aws-cn", "arn:aws-cn:iam::123456789012:role/apono"),
            ("aws-us-gov", "arn:aws-us-gov:iam::123456789012:role/apono"),
        ] {
            let p = props(principal, None);
            p.validate().unwrap();
            assert_eq!(
                p.grant().policy_arn,
                format!(
                    "arn:{partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
                )
            );
        }
    }

    #[test]
    fn account_may_stand_only_for_the_account_of_a_principal() {
        let each_account = "arn:aws:iam::{account}:role/apono-cross-account-prod";
        principal_arn(each_account).unwrap();
        let grant = props(each_account, None).grant();
        assert_eq!(
            grant
                .in_account("222222222222", Some("111111111111"))
                .principal_arn,
            "arn:aws:iam::222222222222:role/apono-cross-account-prod"
        );
        assert!(principal_arn("arn:aws:iam::123456789012:role/{account}").is_err());
        assert!(principal_arn("arn:aws:iam::{account}:user/x").is_err());
    }

    #[test]
    fn a_principal_in_an_unknown_partition_is_refused() {
        let err = props("arn:aws-iso:iam::123456789012:role/apono", None)
            .validate()
            .unwrap_err();
        assert_eq!(err.property, "PrincipalArn");
    }

    #[test]
    fn a_policy_from_another_partition_is_refused_with_the_right_example() {
        let p = props(
            "arn:aws-cn:iam::123456789012:role/apono",
            Some(CLUSTER_ADMIN_POLICY),
        );
        let err = p.validate().unwrap_err().to_string();
        assert!(err.contains("AccessPolicyArn"), "{err}");
        assert!(
            err.contains("arn:aws-cn:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"),
            "{err}"
        );
    }
}
