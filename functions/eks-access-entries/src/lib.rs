//! `Custom::EksAccessEntries`: an access entry for the Apono connector role on every EKS
//! cluster, in every account and region; kept right on update, by a schedule, and removed
//! (only what this stack created) on delete.
//!
//! `props` (what a template may ask), `progress` (the plan and its bitmap, carried across
//! invocations), `fanout` (account x region pairs, `MaxConcurrency` at a time), `scheduled`
//! (the hourly reconcile), `cluster_event` (one new cluster, on its CloudTrail event), `eks`
//! (one cluster), `fleet` (accounts, regions, credentials), and here the resource itself:
//! plan, check, finish and the CloudFormation operations.

mod cluster_event;
pub mod continuation;
pub mod eks;
mod fanout;
pub mod fleet;
mod progress;
mod props;
mod scheduled;

pub use cluster_event::{
    ClusterEventInput, ClusterWait, CLUSTER_EVENT_KEY, CLUSTER_EVENT_NAMES, CLUSTER_WAIT_LIMIT,
    DEFAULT_CLUSTER_POLL,
};
pub use progress::{Counts, Progress, Target};
pub use props::{
    cluster_admin_policy, EksProps, CLUSTER_ADMIN_POLICY, DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MEMBER_ROLE,
};
pub use scheduled::{
    ScheduledError, ScheduledInput, StackGuard, StackState, SCHEDULED_KEY, STACK_AT_REST,
};

use custom_resource::aws::ApiError;
use custom_resource::{
    Context, CustomResource, HandlerResult, Outcome, Output, Request, RequestKind,
};
use eks::{Grant, Owner};
use fleet::Fleet;
use org_api::regions::{eks_regions_among, Partition};
use std::sync::Arc;

pub const DATA_KEYS: &[&str] = &[
    "Accounts",
    "Regions",
    "Clusters",
    "Created",
    "Present",
    "Removed",
    "Skipped",
    "Failed",
    "Unreachable",
    "SkipReasons",
];

#[derive(Debug, thiserror::Error)]
pub enum EksError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("{skipped} cluster(s) skipped and {failed} failed, {unreachable} account/region pair(s) unreachable (FailOnSkipped=true); first reasons: {reasons}")]
    Skipped {
        skipped: usize,
        failed: usize,
        unreachable: usize,
        reasons: String,
    },
    #[error("refused: this function grants only {allowed}, as its stack configured it (the function's EKS_GRANT_* settings); the request asked for {asked}. Change the grant in the stack, not in the event")]
    GrantRefused { allowed: String, asked: String },
    #[error("refused: invalid continuation state: {0}")]
    InvalidState(String),
}

impl Grant {
    fn describe(&self) -> String {
        match self.namespaces.is_empty() {
            true => format!(
                "{} with {} on the whole cluster",
                self.principal_arn, self.policy_arn
            ),
            false => format!(
                "{} with {} in namespaces {}",
                self.principal_arn,
                self.policy_arn,
                self.namespaces.join(",")
            ),
        }
    }

    /// The grant the stack configured in the function's environment: `EKS_GRANT_PRINCIPAL_ARN`,
    /// `EKS_GRANT_POLICY_ARN` (default cluster admin) and `EKS_GRANT_NAMESPACES` (comma
    /// separated; empty: the whole cluster). Without a principal nothing may be granted.
    pub fn from_env() -> Grant {
        Grant::from_vars(|name| std::env::var(name).unwrap_or_default())
    }

    /// The same, from any source of those variables (the function's configuration as Lambda
    /// reports it now: [`fleet::Fleet::configured_grant`]).
    pub fn from_vars(var: impl Fn(&str) -> String) -> Grant {
        let policy = var("EKS_GRANT_POLICY_ARN");
        let principal_arn = var("EKS_GRANT_PRINCIPAL_ARN");
        let partition = Partition::of_arn(&principal_arn).unwrap_or(Partition::Aws);
        Grant {
            own_account_principal_arn: Some(var("EKS_GRANT_OWN_ACCOUNT_PRINCIPAL_ARN"))
                .filter(|p| !p.is_empty()),
            policy_arn: match policy.is_empty() {
                true => cluster_admin_policy(partition),
                false => policy,
            },
            principal_arn,
            namespaces: var("EKS_GRANT_NAMESPACES")
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }
}

/// What a run ended with.
pub enum RunResult {
    Finished(Progress),
    Unfinished(Progress),
}

pub struct EksAccessEntries<F> {
    pub fleet: Arc<F>,
    /// The only grant this function makes (the stack's, from the function's configuration).
    /// `None` only in tests of the fan-out itself: the function binary always sets it.
    pub allowed: Option<Grant>,
    /// The stack whose scheduled runs this function serves (`EKS_OWNER_STACK_ID`).
    pub owner_stack: Option<String>,
    /// How often a cluster event's cluster is read while it is not ACTIVE yet.
    pub cluster_poll: std::time::Duration,
    /// How long a cluster event's cluster may take to become ACTIVE.
    pub cluster_wait_limit: std::time::Duration,
}

impl<F: Fleet> EksAccessEntries<F> {
    pub fn new(fleet: F) -> Self {
        EksAccessEntries {
            fleet: Arc::new(fleet),
            allowed: None,
            owner_stack: None,
            cluster_poll: DEFAULT_CLUSTER_POLL,
            cluster_wait_limit: CLUSTER_WAIT_LIMIT,
        }
    }

    /// As deployed: the grant and the owning stack from the function's own configuration
    /// (`EKS_GRANT_*`, `EKS_OWNER_STACK_ID`, set by the template), so that whoever can invoke
    /// the function cannot ask for another principal, policy or stack.
    /// `EKS_CLUSTER_POLL_SECONDS` (0.05-300, default 15) paces the wait for a new cluster;
    /// the local deploy sets it to run at a hundredth of the production pace.
    pub fn from_env(fleet: F) -> Self {
        let cluster_poll = std::env::var("EKS_CLUSTER_POLL_SECONDS")
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| (0.05..=300.0).contains(s))
            .map_or(DEFAULT_CLUSTER_POLL, std::time::Duration::from_secs_f64);
        EksAccessEntries {
            allowed: Some(Grant::from_env()),
            owner_stack: std::env::var("EKS_OWNER_STACK_ID").ok(),
            cluster_poll,
            ..EksAccessEntries::new(fleet)
        }
    }

    /// Grants only `grant`, whatever an event asks for.
    pub fn allowing(mut self, grant: Grant) -> Self {
        self.allowed = Some(grant);
        self
    }

    /// Refuses progress that would grant anything but the allowed grant, or that does not
    /// hold together (a forged or corrupted continuation).
    fn check(&self, progress: &Progress, owner: &Owner) -> Result<(), EksError> {
        if progress.owner_stack != owner.stack_id || progress.owner_logical != owner.logical_id {
            return Err(EksError::InvalidState(format!(
                "it belongs to {}/{}, not to this resource",
                progress.owner_stack, progress.owner_logical
            )));
        }
        for target in progress.new.iter().chain(progress.old.iter()) {
            target.validate().map_err(EksError::InvalidState)?;
        }
        let items = progress.items().len();
        if progress.done.len() > items.div_ceil(4)
            || !progress.done.chars().all(|c| c.is_ascii_hexdigit())
            || progress.max_concurrency == 0
            || progress.max_concurrency > 256
        {
            return Err(EksError::InvalidState(
                "progress does not match its work items".into(),
            ));
        }
        if let (Some(allowed), Some(new)) = (&self.allowed, &progress.new) {
            if new.grant != *allowed || allowed.principal_arn.is_empty() {
                return Err(EksError::GrantRefused {
                    allowed: match allowed.principal_arn.is_empty() {
                        true => "nothing (no EKS_GRANT_PRINCIPAL_ARN is set)".into(),
                        false => allowed.describe(),
                    },
                    asked: new.grant.describe(),
                });
            }
        }
        Ok(())
    }

    /// Resolves defaults (all accounts, enabled EKS regions) into a concrete target.
    pub async fn target(&self, props: &EksProps) -> Result<Target, ApiError> {
        let mut accounts = if !props.accounts.is_empty() {
            props.accounts.clone()
        } else if !props.organizational_unit_ids.is_empty() {
            // What the member roles reach, and this account, whose role the stack makes.
            let mut under = self
                .fleet
                .active_accounts_under(&props.organizational_unit_ids)
                .await?;
            under.push(self.fleet.own_account().await?);
            under.sort();
            under.dedup();
            under
        } else {
            self.fleet.active_accounts().await?
        };
        accounts.retain(|a| !props.excluded_account_ids.contains(a));
        if let Some(management) = &props.management_account_id {
            if *management != self.fleet.own_account().await? {
                accounts.retain(|a| a != management);
            }
        }
        let regions = if props.regions.is_empty() {
            eks_regions_among(self.fleet.partition(), &self.fleet.enabled_regions().await?)
        } else {
            props.regions.clone()
        };
        Ok(Target {
            accounts,
            regions,
            grant: props.grant(),
            member_role: props.member_role().to_string(),
            enable_api_mode: props.enable_api_auth_mode.unwrap_or(false),
        })
    }

    /// The first progress of an operation.
    pub async fn plan(
        &self,
        new: Option<&EksProps>,
        old: Option<&EksProps>,
        owner: &Owner,
    ) -> Result<Progress, ApiError> {
        let settings = new.or(old).expect("a plan has new or old properties");
        Ok(Progress {
            new: match new {
                Some(p) => Some(self.target(p).await?),
                None => None,
            },
            old: match old {
                Some(p) => Some(self.target(p).await?),
                None => None,
            },
            done: String::new(),
            counts: Counts::default(),
            owner_stack: owner.stack_id.clone(),
            owner_logical: owner.logical_id.clone(),
            fail_on_skipped: settings.fail_on_skipped.unwrap_or(false),
            max_concurrency: settings.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY),
        })
    }

    /// The answer for a finished run.
    pub fn finish(progress: &Progress) -> Result<Output, EksError> {
        let c = &progress.counts;
        if progress.fail_on_skipped && c.skipped + c.failed + c.unreachable > 0 {
            return Err(EksError::Skipped {
                skipped: c.skipped,
                failed: c.failed,
                unreachable: c.unreachable,
                reasons: c.samples.join(" | "),
            });
        }
        let target = progress.new.as_ref().or(progress.old.as_ref());
        Ok(Output::keep()
            .with("Accounts", target.map_or(0, |t| t.accounts.len()))
            .with("Regions", target.map_or(0, |t| t.regions.len()))
            .with("Clusters", c.clusters)
            .with("Created", c.created)
            .with("Present", c.present)
            .with("Removed", c.removed)
            .with("Skipped", c.skipped)
            .with("Failed", c.failed)
            .with("Unreachable", c.unreachable)
            .with("SkipReasons", c.samples.join(" | ")))
    }

    async fn operate(&self, ctx: &Context, req: &Request<EksProps>) -> HandlerResult<Outcome> {
        self.fleet.learn_own_account(&ctx.invoked_function_arn);
        let owner = Owner {
            stack_id: req.stack_id.clone(),
            logical_id: req.logical_resource_id.clone(),
        };
        let progress = match &req.continuation {
            Some(state) => serde_json::from_value(state.clone())
                .map_err(|e| EksError::InvalidState(e.to_string()))?,
            None => {
                let (new, old) = match req.kind {
                    RequestKind::Create => (Some(&req.properties), None),
                    RequestKind::Update => (Some(&req.properties), req.old_properties.as_ref()),
                    RequestKind::Delete => (None, Some(&req.properties)),
                };
                self.plan(new, old, &owner).await?
            }
        };
        self.check(&progress, &owner)?;
        match self.run(ctx, progress, None).await {
            RunResult::Unfinished(progress) => {
                tracing::info!(
                    done = progress.done.chars().filter(|c| *c != '0').count(),
                    "continuing in a new invocation"
                );
                Ok(Outcome::Continue(serde_json::to_value(progress)?))
            }
            RunResult::Finished(progress) => {
                // A failed Create answers with the same physical ID (`create_physical_id`).
                let mut output = Self::finish(&progress)?;
                output.physical_resource_id = match req.kind {
                    RequestKind::Create => Some(physical_id(&progress.owner_logical)),
                    _ => None,
                };
                Ok(output.into())
            }
        }
    }
}

/// The state an own event hands on to its next invocation.
fn state_value<T: serde::Serialize>(state: T) -> serde_json::Value {
    serde_json::to_value(state).expect("progress and waits serialize")
}

/// The physical ID of this stack's access entries resource: the rollback's Delete of a failed
/// Create carries it too, and removes whatever the Create made.
fn physical_id(logical_resource_id: &str) -> String {
    format!("eks-access-entries:{logical_resource_id}")
}

impl<F: Fleet> CustomResource for EksAccessEntries<F> {
    type Properties = EksProps;

    async fn create(&self, ctx: &Context, req: &Request<EksProps>) -> HandlerResult<Outcome> {
        self.operate(ctx, req).await
    }

    async fn update(&self, ctx: &Context, req: &Request<EksProps>) -> HandlerResult<Outcome> {
        self.operate(ctx, req).await
    }

    async fn delete(&self, ctx: &Context, req: &Request<EksProps>) -> HandlerResult<Outcome> {
        self.operate(ctx, req).await
    }

    /// Entries may exist before a Create fails (an earlier invocation of its chain, a timeout
    /// mid-way): its rollback's Delete must reach this function.
    fn create_physical_id(&self, req: &Request<EksProps>) -> Option<String> {
        Some(physical_id(&req.logical_resource_id))
    }

    /// The scheduled reconcile (the schedule rule's input) and a cluster's CloudTrail event
    /// (the cluster-events rule's transformed input).
    const OWN_EVENT_KEYS: &'static [&'static str] = &[SCHEDULED_KEY, CLUSTER_EVENT_KEY];

    async fn own_event(
        &self,
        ctx: &Context,
        key: &'static str,
        input: &serde_json::Value,
        continuation: Option<serde_json::Value>,
    ) -> HandlerResult<Option<serde_json::Value>> {
        let stack_id = input["StackId"].as_str().unwrap_or_default();
        // Checked again by every continuation: a run stops when an operation begins (the
        // operation's own reconcile, or the next scheduled one, covers what it leaves).
        let seen = self
            .fleet
            .stack_state(stack_id)
            .await
            .map_err(|e| ScheduledError(format!("cannot read the stack's status: {e}")))?;
        if !seen.at_rest() {
            tracing::info!(stack_status = %seen.status, event = key, "skipped: the stack is changing; the next scheduled run reconciles");
            return Ok(None);
        }
        let guard = StackGuard {
            stack_id: stack_id.to_string(),
            seen,
            function_arn: ctx.invoked_function_arn.clone(),
        };
        match key {
            CLUSTER_EVENT_KEY => {
                let input: ClusterEventInput = serde_json::from_value(input.clone())
                    .map_err(|e| ScheduledError(format!("not a cluster event input: {e}")))?;
                Ok(self
                    .cluster_event(ctx, &input, continuation, Some(&guard))
                    .await?
                    .map(state_value))
            }
            _ => {
                let input: ScheduledInput = serde_json::from_value(input.clone())
                    .map_err(|e| ScheduledError(format!("not a scheduled reconcile input: {e}")))?;
                Ok(self
                    .scheduled(ctx, &input, continuation, Some(&guard))
                    .await?
                    .map(state_value))
            }
        }
    }
}
