//! What happens on one cluster: read first, write only what differs, touch only entries that
//! carry this stack's tags.

use aws_sdk_eks::types::{AccessScope, AccessScopeType, AuthenticationMode, ClusterStatus};
use aws_sdk_eks::Client;
use custom_resource::aws::ApiError;
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;

/// Tags that mark an entry as created by one custom resource of one stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub stack_id: String,
    pub logical_id: String,
}

pub const STACK_TAG: &str = "apono-onboarding:stack-id";
pub const RESOURCE_TAG: &str = "apono-onboarding:logical-id";

impl Owner {
    fn tags(&self) -> HashMap<String, String> {
        HashMap::from([
            (STACK_TAG.to_string(), self.stack_id.clone()),
            (RESOURCE_TAG.to_string(), self.logical_id.clone()),
        ])
    }

    fn owns(&self, tags: Option<&HashMap<String, String>>) -> bool {
        tags.is_some_and(|t| {
            t.get(STACK_TAG) == Some(&self.stack_id)
                && t.get(RESOURCE_TAG) == Some(&self.logical_id)
        })
    }
}

/// Stands for the cluster's account in a principal ARN: each account's own role.
pub const ACCOUNT_PLACEHOLDER: &str = "{account}";

/// The access an entry should grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Grant {
    /// May hold [`ACCOUNT_PLACEHOLDER`]: the principal is then a role in each cluster's account.
    pub principal_arn: String,
    /// The principal in the function's own account, where it is another role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_account_principal_arn: Option<String>,
    pub policy_arn: String,
    /// Empty: cluster-wide; else these namespaces.
    pub namespaces: Vec<String>,
}

impl Grant {
    /// The grant as it applies to clusters in `account` (`own`: the function's account).
    pub fn in_account(&self, account: &str, own: Option<&str>) -> Grant {
        let principal_arn = match (&self.own_account_principal_arn, own == Some(account)) {
            (Some(own_principal), true) => own_principal.clone(),
            _ => self.principal_arn.replace(ACCOUNT_PLACEHOLDER, account),
        };
        Grant {
            principal_arn,
            own_account_principal_arn: None,
            policy_arn: self.policy_arn.clone(),
            namespaces: self.namespaces.clone(),
        }
    }

    fn scope(&self) -> AccessScope {
        if self.namespaces.is_empty() {
            AccessScope::builder()
                .r#type(AccessScopeType::Cluster)
                .build()
        } else {
            AccessScope::builder()
                .r#type(AccessScopeType::Namespace)
                .set_namespaces(Some(self.namespaces.clone()))
                .build()
        }
    }

    fn scope_matches(&self, scope: Option<&AccessScope>) -> bool {
        let Some(scope) = scope else { return false };
        if self.namespaces.is_empty() {
            scope.r#type() == Some(&AccessScopeType::Cluster)
        } else {
            let mut have = scope.namespaces().to_vec();
            let mut want = self.namespaces.clone();
            have.sort();
            want.sort();
            scope.r#type() == Some(&AccessScopeType::Namespace) && have == want
        }
    }
}

/// What one cluster ended as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum ClusterOutcome {
    /// We created the entry (and associated the policy).
    Created,
    /// The entry was there already: ours (repaired if needed) or someone else's (untouched).
    Present {
        ours: bool,
    },
    /// Our entry was removed.
    Removed,
    /// Nothing of ours to remove.
    Absent,
    Skipped(String),
    Failed(String),
}

/// A cluster, as far as the decisions need it.
#[derive(Debug, Clone)]
pub struct ClusterInfo {
    pub name: String,
    pub status: Option<ClusterStatus>,
    pub mode: Option<AuthenticationMode>,
}

pub async fn list_clusters(eks: &Client) -> Result<Vec<ClusterInfo>, ApiError> {
    let mut names = Vec::new();
    let mut pages = eks.list_clusters().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| ApiError::from_sdk("eks:ListClusters", e))?;
        names.extend(page.clusters().iter().cloned());
    }
    let mut clusters = Vec::with_capacity(names.len());
    for name in names {
        // A cluster deleted between the list and the read is not there any more.
        if let Some(cluster) = describe_cluster(eks, &name).await? {
            clusters.push(cluster);
        }
    }
    Ok(clusters)
}

/// One cluster's status and authentication mode; `None` when there is no such cluster.
pub async fn describe_cluster(eks: &Client, name: &str) -> Result<Option<ClusterInfo>, ApiError> {
    let out = match eks.describe_cluster().name(name).send().await {
        Ok(out) => out,
        Err(e) => {
            let e = ApiError::from_sdk("eks:DescribeCluster", e);
            return match is_not_found(&e) {
                true => Ok(None),
                false => Err(e),
            };
        }
    };
    let cluster = out.cluster();
    Ok(Some(ClusterInfo {
        status: cluster.and_then(|c| c.status().cloned()),
        mode: cluster
            .and_then(|c| c.access_config())
            .and_then(|a| a.authentication_mode().cloned()),
        name: name.to_string(),
    }))
}

fn is_not_found(err: &ApiError) -> bool {
    err.code() == Some("ResourceNotFoundException")
}

/// Makes `grant` hold on `cluster`.
pub async fn ensure(
    eks: &Client,
    cluster: &ClusterInfo,
    grant: &Grant,
    owner: &Owner,
    enable_api_mode: bool,
) -> ClusterOutcome {
    match cluster.status {
        Some(ClusterStatus::Active) => {}
        ref other => {
            let status = other.as_ref().map(|s| s.as_str()).unwrap_or("unknown");
            return ClusterOutcome::Skipped(format!("cluster status is {status}, not ACTIVE"));
        }
    }
    match cluster.mode {
        Some(AuthenticationMode::Api | AuthenticationMode::ApiAndConfigMap) => {}
        _ if enable_api_mode => {
            return match switch_to_api_and_config_map(eks, &cluster.name).await {
                Ok(()) => ClusterOutcome::Skipped(
                    "authentication mode CONFIG_MAP switched to API_AND_CONFIG_MAP (EnableApiAuthMode); the entry follows on the next reconcile, once the cluster is ACTIVE again".into(),
                ),
                Err(e) => ClusterOutcome::Failed(e.to_string()),
            };
        }
        _ => {
            return ClusterOutcome::Skipped(
                "authentication mode is CONFIG_MAP: access entries need API or API_AND_CONFIG_MAP (set EnableApiAuthMode=true to switch it; the switch cannot be undone)".into(),
            )
        }
    }
    match ensure_active(eks, &cluster.name, grant, owner).await {
        Ok(outcome) => outcome,
        Err(e) => ClusterOutcome::Failed(e.to_string()),
    }
}

async fn ensure_active(
    eks: &Client,
    cluster: &str,
    grant: &Grant,
    owner: &Owner,
) -> Result<ClusterOutcome, ApiError> {
    match entry_ownership(eks, cluster, &grant.principal_arn, owner).await? {
        Some(ours) => {
            if ours {
                associate_if_missing(eks, cluster, grant).await?;
            }
            Ok(ClusterOutcome::Present { ours })
        }
        None => {
            if create_entry(eks, cluster, grant, owner).await? {
                associate_if_missing(eks, cluster, grant).await?;
                Ok(ClusterOutcome::Created)
            } else {
                // Someone created it between our read and our write: theirs, untouched.
                Ok(ClusterOutcome::Present { ours: false })
            }
        }
    }
}

/// `false` when the entry already existed (ResourceInUseException).
async fn create_entry(
    eks: &Client,
    cluster: &str,
    grant: &Grant,
    owner: &Owner,
) -> Result<bool, ApiError> {
    // A role created moments ago is not yet visible to EKS: InvalidParameterException until
    // IAM has propagated. Retry for about a minute before giving up.
    let mut delay = Duration::from_secs(2);
    for attempt in 1.. {
        let result = eks
            .create_access_entry()
            .cluster_name(cluster)
            .principal_arn(&grant.principal_arn)
            .r#type("STANDARD")
            .set_tags(Some(owner.tags()))
            .send()
            .await
            .map_err(|e| ApiError::from_sdk("eks:CreateAccessEntry", e));
        match result {
            Ok(_) => return Ok(true),
            Err(e) if e.code() == Some("ResourceInUseException") => return Ok(false),
            Err(e) if e.code() == Some("InvalidParameterException") && attempt < 6 => {
                tracing::info!(
                    cluster,
                    attempt,
                    "principal not yet visible to EKS, retrying"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(20));
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns")
}

async fn associate_if_missing(eks: &Client, cluster: &str, grant: &Grant) -> Result<(), ApiError> {
    let associated = eks
        .list_associated_access_policies()
        .cluster_name(cluster)
        .principal_arn(&grant.principal_arn)
        .send()
        .await
        .map_err(|e| ApiError::from_sdk("eks:ListAssociatedAccessPolicies", e))?;
    let present = associated.associated_access_policies().iter().any(|p| {
        p.policy_arn() == Some(grant.policy_arn.as_str()) && grant.scope_matches(p.access_scope())
    });
    if !present {
        eks.associate_access_policy()
            .cluster_name(cluster)
            .principal_arn(&grant.principal_arn)
            .policy_arn(&grant.policy_arn)
            .access_scope(grant.scope())
            .send()
            .await
            .map_err(|e| ApiError::from_sdk("eks:AssociateAccessPolicy", e))?;
    }
    Ok(())
}

/// Whether `principal_arn` has an entry on `cluster` and whether it carries our tags
/// (`None`: no entry).
async fn entry_ownership(
    eks: &Client,
    cluster: &str,
    principal_arn: &str,
    owner: &Owner,
) -> Result<Option<bool>, ApiError> {
    match eks
        .describe_access_entry()
        .cluster_name(cluster)
        .principal_arn(principal_arn)
        .send()
        .await
    {
        Ok(out) => Ok(Some(owner.owns(out.access_entry().and_then(|e| e.tags())))),
        Err(e) => {
            let e = ApiError::from_sdk("eks:DescribeAccessEntry", e);
            if is_not_found(&e) {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// Removes the policy `policy_arn` from our entry for `principal_arn` (policy changed).
pub async fn disassociate_if_ours(
    eks: &Client,
    cluster: &str,
    principal_arn: &str,
    policy_arn: &str,
    owner: &Owner,
) -> Result<(), ApiError> {
    if entry_ownership(eks, cluster, principal_arn, owner).await? != Some(true) {
        return Ok(());
    }
    let associated = eks
        .list_associated_access_policies()
        .cluster_name(cluster)
        .principal_arn(principal_arn)
        .send()
        .await
        .map_err(|e| ApiError::from_sdk("eks:ListAssociatedAccessPolicies", e))?;
    if associated
        .associated_access_policies()
        .iter()
        .any(|p| p.policy_arn() == Some(policy_arn))
    {
        match eks
            .disassociate_access_policy()
            .cluster_name(cluster)
            .principal_arn(principal_arn)
            .policy_arn(policy_arn)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) => {
                let e = ApiError::from_sdk("eks:DisassociateAccessPolicy", e);
                if !is_not_found(&e) {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// Deletes the entry for `principal_arn` if, and only if, it carries our tags. A CONFIG_MAP
/// cluster holds no access entries (EKS refuses every access-entry call there): it is
/// skipped with the reason, as on Create, not counted as a failure.
pub async fn remove_if_ours(
    eks: &Client,
    cluster: &ClusterInfo,
    principal_arn: &str,
    owner: &Owner,
) -> ClusterOutcome {
    if cluster.mode == Some(AuthenticationMode::ConfigMap) {
        return ClusterOutcome::Skipped(
            "authentication mode is CONFIG_MAP: it holds no access entries".into(),
        );
    }
    let cluster = cluster.name.as_str();
    match entry_ownership(eks, cluster, principal_arn, owner).await {
        Ok(Some(true)) => {}
        Ok(Some(false)) => return ClusterOutcome::Present { ours: false },
        Ok(None) => return ClusterOutcome::Absent,
        Err(e) => return ClusterOutcome::Failed(e.to_string()),
    }
    match eks
        .delete_access_entry()
        .cluster_name(cluster)
        .principal_arn(principal_arn)
        .send()
        .await
    {
        Ok(_) => ClusterOutcome::Removed,
        Err(e) => {
            let e = ApiError::from_sdk("eks:DeleteAccessEntry", e);
            if is_not_found(&e) {
                ClusterOutcome::Absent
            } else {
                ClusterOutcome::Failed(e.to_string())
            }
        }
    }
}

async fn switch_to_api_and_config_map(eks: &Client, cluster: &str) -> Result<(), ApiError> {
    eks.update_cluster_config()
        .name(cluster)
        .access_config(
            aws_sdk_eks::types::UpdateAccessConfigRequest::builder()
                .authentication_mode(AuthenticationMode::ApiAndConfigMap)
                .build(),
        )
        .send()
        .await
        .map_err(|e| ApiError::from_sdk("eks:UpdateClusterConfig", e))?;
    Ok(())
}
