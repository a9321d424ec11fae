//! One cluster, enrolled on its own CloudTrail event: EKS records `CreateCluster` and
//! `UpdateClusterConfig` in CloudTrail, EventBridge forwards them from every targeted account
//! and region to the stack's event bus, and its rule invokes this function with the cluster's
//! account, region and name. The cluster then gets its entry once it is ACTIVE (within one
//! poll of it), not at the next scheduled reconcile, which stays as the safety net.
//!
//! The event is only a hint: it names a cluster, never a grant. The grant is the stack's own
//! (checked as for every run), the account and region must be ones the stack targets, and the
//! cluster's state is read from EKS with the stack's own role in that account.

use crate::eks::{self, ClusterInfo, ClusterOutcome, Owner};
use crate::fleet::Fleet;
use crate::progress::{Counts, Progress, Target};
use crate::scheduled::ScheduledError;
use crate::{EksAccessEntries, EksProps, StackGuard, DEFAULT_MAX_CONCURRENCY};
use aws_sdk_eks::types::ClusterStatus;
use custom_resource::aws::ApiError;
use custom_resource::{ids, Context};
use org_api::regions::eks_regions_among;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The key that marks a cluster event (the EventBridge rule's transformed input).
pub const CLUSTER_EVENT_KEY: &str = "ClusterEvent";

/// The CloudTrail events that may leave a cluster in need of its entry: a new cluster, and a
/// configuration change (its authentication mode switched to one that takes access entries).
pub const CLUSTER_EVENT_NAMES: &[&str] = &["CreateCluster", "UpdateClusterConfig"];

/// How often a cluster that is not ACTIVE yet is read again (`EKS_CLUSTER_POLL_SECONDS`).
/// The SDK's `ClusterActive` waiter backs off from 30 s to 120 s; a fixed 15 s keeps the entry
/// within 15 s of the cluster becoming ACTIVE, at one DescribeCluster call per 15 s.
pub const DEFAULT_CLUSTER_POLL: Duration = Duration::from_secs(15);

/// How long a cluster may stay CREATING or UPDATING before the wait is given up (EKS creates a
/// cluster in about 10-15 minutes); the scheduled reconcile enrols it later.
pub const CLUSTER_WAIT_LIMIT: Duration = Duration::from_secs(60 * 60);

/// What the EventBridge rule hands the function: the stack's reconcile input (as the
/// schedule's) and, from the CloudTrail event, where the cluster is.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ClusterEventInput {
    pub stack_id: String,
    pub logical_resource_id: String,
    pub properties: serde_json::Value,
    /// The account the event came from (EventBridge's `account`, which a sender cannot set).
    pub account: String,
    pub region: String,
    pub cluster: String,
    pub event_name: String,
    /// When the API call was made (the event's `time`), for the log.
    #[serde(default)]
    pub event_time: Option<String>,
}

impl ClusterEventInput {
    fn validate(&self) -> Result<(), String> {
        ids::account_id(&self.account).map_err(|e| format!("Account: {e}"))?;
        ids::region(&self.region).map_err(|e| format!("Region: {e}"))?;
        cluster_name(&self.cluster)?;
        if !CLUSTER_EVENT_NAMES.contains(&self.event_name.as_str()) {
            return Err(format!(
                "EventName {:?} is none of {}",
                self.event_name,
                CLUSTER_EVENT_NAMES.join(", ")
            ));
        }
        Ok(())
    }
}

/// EKS cluster names: 1-100 characters, a letter or digit first, then letters, digits, `-`
/// and `_` (CreateCluster's `name`).
fn cluster_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    match first_ok
        && name.len() <= 100
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        true => Ok(()),
        false => Err(format!(
            "Cluster {:?} is not an EKS cluster name",
            custom_resource::response::truncate_utf8(name, 120)
        )),
    }
}

/// A wait for the cluster to become ACTIVE, carried from one invocation to the next.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ClusterWait {
    /// When the first invocation began waiting (Unix ms).
    pub since_ms: u64,
    /// DescribeCluster calls so far.
    pub polls: u32,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl<F: Fleet> EksAccessEntries<F> {
    /// Enrols the event's cluster once it is ACTIVE. Returns the wait to continue in a new
    /// invocation while the cluster is still CREATING or UPDATING and this invocation's time
    /// is short; `None` when there is nothing more to do.
    pub async fn cluster_event(
        &self,
        ctx: &Context,
        input: &ClusterEventInput,
        continuation: Option<serde_json::Value>,
        guard: Option<&StackGuard>,
    ) -> Result<Option<ClusterWait>, ScheduledError> {
        self.serves(&input.stack_id)?;
        input
            .validate()
            .map_err(|e| ScheduledError(format!("refused: not a cluster event: {e}")))?;
        self.fleet.learn_own_account(&ctx.invoked_function_arn);
        let mut wait = match continuation {
            Some(state) => serde_json::from_value(state)
                .map_err(|e| ScheduledError(format!("refused: invalid wait state: {e}")))?,
            None => ClusterWait {
                since_ms: unix_ms(),
                polls: 0,
            },
        };
        let props: EksProps = custom_resource::props::parse(input.properties.clone())
            .map_err(|e| ScheduledError(e.to_string()))?;
        let owner = Owner {
            stack_id: input.stack_id.clone(),
            logical_id: input.logical_resource_id.clone(),
        };
        let place = format!("{}/{}/{}", input.account, input.region, input.cluster);
        let target = self
            .event_target(&props, &input.account, &input.region)
            .await
            .map_err(|e| ScheduledError(e.to_string()))?;
        let Some(target) = target else {
            tracing::info!(cluster = %place, event = %input.event_name, "cluster event ignored: not an account and region this stack targets");
            return Ok(None);
        };
        let progress = Progress {
            new: Some(target.clone()),
            old: None,
            done: String::new(),
            counts: Counts::default(),
            owner_stack: owner.stack_id.clone(),
            owner_logical: owner.logical_id.clone(),
            fail_on_skipped: false,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
        };
        self.check(&progress, &owner)
            .map_err(|e| ScheduledError(e.to_string()))?;
        let config = self
            .fleet
            .config_for(&input.account, &target.member_role)
            .await
            .map_err(|e| ScheduledError(e.to_string()))?;
        let client = self.fleet.eks(&config, &input.account, &input.region);
        loop {
            wait.polls += 1;
            let cluster = match eks::describe_cluster(&client, &input.cluster).await {
                Ok(Some(cluster)) => cluster,
                Ok(None) => {
                    tracing::info!(cluster = %place, "cluster event: the cluster no longer exists");
                    return Ok(None);
                }
                Err(e) => return Err(ScheduledError(e.to_string())),
            };
            match cluster.status {
                Some(ClusterStatus::Active) => {
                    let enrolment = Enrolment {
                        client: &client,
                        target: &target,
                        owner: &owner,
                        guard,
                    };
                    self.enrol(&enrolment, &cluster, input, &wait).await;
                    return Ok(None);
                }
                Some(
                    ClusterStatus::Creating | ClusterStatus::Updating | ClusterStatus::Pending,
                ) => {}
                other => {
                    let status = other.as_ref().map_or("unknown", |s| s.as_str());
                    tracing::info!(cluster = %place, status, "cluster event: the cluster will not become ACTIVE; nothing to do");
                    return Ok(None);
                }
            }
            let waited = Duration::from_millis(unix_ms().saturating_sub(wait.since_ms));
            if waited >= self.cluster_wait_limit {
                tracing::warn!(cluster = %place, waited_s = waited.as_secs(), "cluster event: still not ACTIVE; the scheduled reconcile will give it its entry");
                return Ok(None);
            }
            // Hand the wait on while this invocation still has time to do so.
            if ctx.remaining() < self.cluster_poll + HAND_ON_RESERVE {
                tracing::info!(cluster = %place, polls = wait.polls, "cluster event: not ACTIVE yet, waiting in a new invocation");
                return Ok(Some(wait));
            }
            tokio::time::sleep(self.cluster_poll).await;
        }
    }

    /// The cluster is ACTIVE: the stack's grant, as in every reconcile (and undone if the
    /// stack changed meanwhile, see [`StackGuard`]).
    async fn enrol(
        &self,
        at: &Enrolment<'_>,
        cluster: &ClusterInfo,
        input: &ClusterEventInput,
        wait: &ClusterWait,
    ) {
        let own = self.fleet.own_account().await.ok();
        let grant = at.target.grant.in_account(&input.account, own.as_deref());
        let mut outcome = eks::ensure(
            at.client,
            cluster,
            &grant,
            at.owner,
            at.target.enable_api_mode,
        )
        .await;
        if let (ClusterOutcome::Created, Some(guard)) = (&outcome, at.guard) {
            if !guard.keeps(self.fleet.as_ref(), &at.target.grant).await {
                outcome = crate::fanout::undo_created(
                    at.client,
                    &cluster.name,
                    &grant.principal_arn,
                    at.owner,
                )
                .await;
            }
        }
        tracing::info!(
            account = %input.account,
            region = %input.region,
            cluster = %input.cluster,
            event = %input.event_name,
            event_time = input.event_time.as_deref().unwrap_or(""),
            polls = wait.polls,
            waited_ms = unix_ms().saturating_sub(wait.since_ms),
            report = %serde_json::to_string(&outcome).unwrap_or_default(),
            "cluster event: enrolled"
        );
    }

    /// The one account x region an event's cluster is in, as a target, if the stack targets
    /// it: the accounts the member roles reach (the listed accounts, or the OUs' accounts and
    /// this one, less the excluded ones and a management account that is not this one), and
    /// the stack's regions. Whole-organization stacks take any account: their event bus admits
    /// only the organization's accounts.
    pub async fn event_target(
        &self,
        props: &EksProps,
        account: &str,
        region: &str,
    ) -> Result<Option<Target>, ApiError> {
        let own = self.fleet.own_account().await?;
        let in_scope = if !props.accounts.is_empty() {
            props.accounts.iter().any(|a| a == account)
        } else if !props.organizational_unit_ids.is_empty() {
            account == own
                || self
                    .fleet
                    .account_is_under(account, &props.organizational_unit_ids)
                    .await?
        } else {
            true
        };
        let excluded = props.excluded_account_ids.iter().any(|a| a == account)
            || props
                .management_account_id
                .as_ref()
                .is_some_and(|m| m == account && *m != own);
        if !in_scope || excluded {
            return Ok(None);
        }
        let regions = if props.regions.is_empty() {
            eks_regions_among(self.fleet.partition(), &self.fleet.enabled_regions().await?)
        } else {
            props.regions.clone()
        };
        if !regions.iter().any(|r| r == region) {
            return Ok(None);
        }
        Ok(Some(Target {
            accounts: vec![account.to_string()],
            regions: vec![region.to_string()],
            grant: props.grant(),
            member_role: props.member_role().to_string(),
            enable_api_mode: props.enable_api_auth_mode.unwrap_or(false),
        }))
    }
}

/// Where an ACTIVE cluster is enrolled, and for whom.
struct Enrolment<'a> {
    client: &'a aws_sdk_eks::Client,
    target: &'a Target,
    owner: &'a Owner,
    guard: Option<&'a StackGuard>,
}

/// Time kept, beyond one poll, to hand the wait on before the invocation ends.
const HAND_ON_RESERVE: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_follow_eks_rules() {
        for ok in ["a", "prod-eu_1", "9lives", &"x".repeat(100)] {
            assert!(cluster_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-lead",
            "_lead",
            "has space",
            "a/b",
            "quote\"",
            &"x".repeat(101),
        ] {
            assert!(cluster_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_cluster_events_the_rule_forwards_are_taken() {
        let input = |event: &str| ClusterEventInput {
            stack_id: "s".into(),
            logical_resource_id: "EksAccessEntries".into(),
            properties: serde_json::json!({}),
            account: "111111111111".into(),
            region: "eu-west-1".into(),
            cluster: "prod".into(),
            event_name: event.into(),
            event_time: None,
        };
        assert!(input("CreateCluster").validate().is_ok());
        assert!(input("UpdateClusterConfig").validate().is_ok());
        let err = input("DeleteCluster").validate().unwrap_err();
        assert!(err.contains("CreateCluster, UpdateClusterConfig"), "{err}");
        let mut bad = input("CreateCluster");
        bad.account = "1111".into();
        assert!(bad.validate().unwrap_err().starts_with("Account"));
    }
}
