//! `Custom::EksAccessEntries`: an access entry for the Apono connector role on every EKS
//! cluster, in every account and region; kept right on update, by a schedule, and removed
//! (only what this stack created) on delete.

pub mod continuation;
pub mod eks;
pub mod fleet;

use custom_resource::aws::{eks_regions_among, ApiError};
use custom_resource::props::{opt_boolean, opt_number, opt_string, string_list};
use custom_resource::{
    ids, Context, CustomResource, HandlerResult, Outcome, Output, Properties, PropertyError,
    Request, RequestKind,
};
use eks::{ClusterOutcome, Grant, Owner};
use fleet::Fleet;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;

pub const CLUSTER_ADMIN_POLICY: &str =
    "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy";
pub const DEFAULT_MEMBER_ROLE: &str = "apono-eks-access-entries";
/// Account x region pairs worked on at once. Pairs in different accounts or regions share no
/// AWS limit; chosen from the sweep in the README (200 x 17 x 2 at 50 ms per call): 64 runs
/// within 1.1x of the critical-path bound and 60x faster than one pair at a time; 128 gains
/// 1.7x more but sits at 1.3x of its bound as the client saturates.
pub const DEFAULT_MAX_CONCURRENCY: usize = 64;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct EksProps {
    pub principal_arn: String,
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
    /// Empty: every ACTIVE account of the organization.
    #[serde(default, deserialize_with = "string_list")]
    pub accounts: Vec<String>,
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
        ids::iam_role_arn(&self.principal_arn)
            .map_err(|m| PropertyError::new("PrincipalArn", m))?;
        if !self
            .policy()
            .starts_with("arn:aws:eks::aws:cluster-access-policy/")
        {
            return Err(PropertyError::new(
                "AccessPolicyArn",
                format!(
                    "{:?} is not an EKS access policy ARN (e.g. {CLUSTER_ADMIN_POLICY})",
                    self.policy()
                ),
            ));
        }
        match (
            self.access_scope.as_deref().unwrap_or("cluster"),
            self.namespaces.is_empty(),
        ) {
            ("cluster", true) | ("namespace", false) => {}
            ("cluster", false) => {
                return Err(PropertyError::new(
                    "Namespaces",
                    "only with AccessScope namespace",
                ))
            }
            ("namespace", true) => {
                return Err(PropertyError::new(
                    "Namespaces",
                    "required with AccessScope namespace",
                ))
            }
            (other, _) => {
                return Err(PropertyError::new(
                    "AccessScope",
                    format!("{other:?}: expected cluster or namespace"),
                ))
            }
        }
        for region in &self.regions {
            ids::region(region).map_err(|m| PropertyError::new("Regions", m))?;
        }
        for account in &self.accounts {
            ids::account_id(account).map_err(|m| PropertyError::new("Accounts", m))?;
        }
        let role = self.member_role();
        if role.is_empty()
            || role.len() > 64
            || !role
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
        {
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
    fn policy(&self) -> &str {
        self.access_policy_arn
            .as_deref()
            .unwrap_or(CLUSTER_ADMIN_POLICY)
    }

    fn member_role(&self) -> &str {
        self.member_role_name
            .as_deref()
            .unwrap_or(DEFAULT_MEMBER_ROLE)
    }

    pub fn grant(&self) -> Grant {
        Grant {
            principal_arn: self.principal_arn.clone(),
            policy_arn: self.policy().to_string(),
            namespaces: self.namespaces.clone(),
        }
    }
}

/// Accounts x regions and the grant that should (new) or should no longer (old) hold there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Target {
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    pub grant: Grant,
    pub member_role: String,
    pub enable_api_mode: bool,
}

impl Target {
    /// Every field within what a plan can produce: account IDs, region names, a role name,
    /// and at most 10,000 accounts x 40 regions.
    fn validate(&self) -> Result<(), String> {
        if self.accounts.len() > 10_000 || self.regions.len() > 40 {
            return Err("more accounts or regions than an organization has".into());
        }
        for account in &self.accounts {
            ids::account_id(account)?;
        }
        for region in &self.regions {
            ids::region(region)?;
        }
        let role = &self.member_role;
        if role.is_empty()
            || role.len() > 64
            || !role
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
        {
            return Err(format!("{role:?} is not an IAM role name"));
        }
        ids::iam_role_arn(&self.grant.principal_arn)?;
        Ok(())
    }

    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.accounts
            .iter()
            .flat_map(|a| self.regions.iter().map(move |r| (a.as_str(), r.as_str())))
    }

    fn contains(&self, account: &str, region: &str) -> bool {
        self.accounts.iter().any(|a| a == account) && self.regions.iter().any(|r| r == region)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counts {
    pub clusters: usize,
    pub created: usize,
    pub present: usize,
    pub removed: usize,
    pub skipped: usize,
    pub failed: usize,
    /// Account x region pairs that could not be read at all.
    pub unreachable: usize,
    /// A few reasons, for `Data` (the full report is in the log).
    pub samples: Vec<String>,
}

impl Counts {
    fn note(&mut self, text: String) {
        if self.samples.len() < 3 {
            self.samples
                .push(custom_resource::response::truncate_utf8(&text, 200).to_string());
        }
    }

    /// An account or region that could not be read at all is the most actionable reason:
    /// it goes before cluster skips, whatever order the fan-out finished in.
    fn note_first(&mut self, text: String) {
        self.samples.insert(
            0,
            custom_resource::response::truncate_utf8(&text, 200).to_string(),
        );
        self.samples.truncate(3);
    }
}

/// Everything a run needs to go on in a fresh invocation. The work items are the `new` pairs
/// followed by the `old` pairs that are not `new`; `done` is a bitmap over them, so the state
/// stays a few KB even for 1,000 accounts x 17 regions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Progress {
    pub new: Option<Target>,
    pub old: Option<Target>,
    pub done: String,
    pub counts: Counts,
    pub owner_stack: String,
    pub owner_logical: String,
    pub fail_on_skipped: bool,
    pub max_concurrency: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Ensure,
    Remove,
}

impl Progress {
    fn items(&self) -> Vec<(Action, String, String)> {
        let mut items = Vec::new();
        if let Some(new) = &self.new {
            items.extend(
                new.pairs()
                    .map(|(a, r)| (Action::Ensure, a.to_string(), r.to_string())),
            );
        }
        if let Some(old) = &self.old {
            items.extend(
                old.pairs()
                    .filter(|(a, r)| !self.new.as_ref().is_some_and(|n| n.contains(a, r)))
                    .map(|(a, r)| (Action::Remove, a.to_string(), r.to_string())),
            );
        }
        items
    }

    fn is_done(&self, index: usize) -> bool {
        bit(&self.done, index)
    }

    fn mark_done(&mut self, index: usize) {
        self.done = set_bit(&self.done, index);
    }
}

fn bit(hex: &str, index: usize) -> bool {
    hex.as_bytes()
        .get(index / 4)
        .and_then(|c| (*c as char).to_digit(16))
        .is_some_and(|d| d & (1 << (index % 4)) != 0)
}

fn set_bit(hex: &str, index: usize) -> String {
    let mut digits: Vec<u32> = hex.chars().filter_map(|c| c.to_digit(16)).collect();
    if digits.len() <= index / 4 {
        digits.resize(index / 4 + 1, 0);
    }
    digits[index / 4] |= 1 << (index % 4);
    digits
        .iter()
        .map(|d| char::from_digit(*d, 16).unwrap())
        .collect()
}

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
        let var = |name: &str| std::env::var(name).unwrap_or_default();
        let policy = var("EKS_GRANT_POLICY_ARN");
        Grant {
            principal_arn: var("EKS_GRANT_PRINCIPAL_ARN"),
            policy_arn: match policy.is_empty() {
                true => CLUSTER_ADMIN_POLICY.to_string(),
                false => policy,
            },
            namespaces: var("EKS_GRANT_NAMESPACES")
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }
}

/// One AssumeRole per account per run, shared by that account's regions.
type ConfigCache = Mutex<HashMap<String, Arc<OnceCell<Result<aws_config::SdkConfig, ApiError>>>>>;

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
}

impl<F: Fleet> EksAccessEntries<F> {
    pub fn new(fleet: F) -> Self {
        EksAccessEntries {
            fleet: Arc::new(fleet),
            allowed: None,
            owner_stack: None,
        }
    }

    /// As deployed: the grant and the owning stack from the function's own configuration
    /// (`EKS_GRANT_*`, `EKS_OWNER_STACK_ID`, set by the template), so that whoever can invoke
    /// the function cannot ask for another principal, policy or stack.
    pub fn from_env(fleet: F) -> Self {
        EksAccessEntries {
            fleet: Arc::new(fleet),
            allowed: Some(Grant::from_env()),
            owner_stack: std::env::var("EKS_OWNER_STACK_ID").ok(),
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
        let accounts = if props.accounts.is_empty() {
            self.fleet.active_accounts().await?
        } else {
            props.accounts.clone()
        };
        let regions = if props.regions.is_empty() {
            eks_regions_among(&self.fleet.enabled_regions().await?)
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

    /// Works through the items not yet done, `max_concurrency` at a time, until done or until
    /// the time left is needed to finish what is in flight.
    pub async fn run(&self, ctx: &Context, mut progress: Progress) -> RunResult {
        let items = progress.items();
        let pending: Vec<usize> = (0..items.len()).filter(|i| !progress.is_done(*i)).collect();
        let concurrency = progress.max_concurrency.max(1);
        // Keep a quarter of this invocation's time (1-60 s) to finish what is in flight.
        let reserve = (ctx.remaining() / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let started = AtomicUsize::new(0);
        let configs: ConfigCache = Mutex::default();
        let owner = Owner {
            stack_id: progress.owner_stack.clone(),
            logical_id: progress.owner_logical.clone(),
        };
        let (new, old) = (progress.new.clone(), progress.old.clone());
        let results: Vec<(usize, Option<PairReport>)> = futures::stream::iter(pending)
            .map(|index| {
                let (action, account, region) = items[index].clone();
                let (started, configs, owner, new, old) = (&started, &configs, &owner, &new, &old);
                async move {
                    // The first wave always runs, so every invocation makes progress.
                    if started.fetch_add(1, Ordering::SeqCst) >= concurrency
                        && ctx.remaining() < reserve
                    {
                        return (index, None);
                    }
                    let target = match action {
                        Action::Ensure => new.as_ref(),
                        Action::Remove => old.as_ref(),
                    }
                    .expect("items come from their target");
                    let cell = configs
                        .lock()
                        .unwrap()
                        .entry(account.clone())
                        .or_default()
                        .clone();
                    let config = cell
                        .get_or_init(|| self.fleet.config_for(&account, &target.member_role))
                        .await
                        .clone();
                    let report = match config {
                        Ok(config) => {
                            let client = self.fleet.eks(&config, &account, &region);
                            let previous = match action {
                                Action::Ensure => {
                                    old.as_ref().filter(|o| o.contains(&account, &region))
                                }
                                Action::Remove => None,
                            };
                            pair(&client, action, target, previous, owner).await
                        }
                        Err(e) => Err(e),
                    };
                    (
                        index,
                        Some(PairReport {
                            account,
                            region,
                            result: report,
                        }),
                    )
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;

        let mut unfinished = false;
        for (index, report) in results {
            let Some(report) = report else {
                unfinished = true;
                continue;
            };
            report.log_and_count(&mut progress.counts, action_of(&items, index));
            progress.mark_done(index);
        }
        if unfinished {
            RunResult::Unfinished(progress)
        } else {
            RunResult::Finished(progress)
        }
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
        match self.run(ctx, progress).await {
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

/// The physical ID of this stack's access entries resource: the rollback's Delete of a failed
/// Create carries it too, and removes whatever the Create made.
fn physical_id(logical_resource_id: &str) -> String {
    format!("eks-access-entries:{logical_resource_id}")
}

fn action_of(items: &[(Action, String, String)], index: usize) -> Action {
    items[index].0
}

/// What one account x region ended as.
struct PairReport {
    account: String,
    region: String,
    result: Result<Vec<(String, ClusterOutcome)>, ApiError>,
}

impl PairReport {
    fn log_and_count(self, counts: &mut Counts, action: Action) {
        let (account, region) = (&self.account, &self.region);
        match self.result {
            Err(e) => {
                // A region not enabled for the account answers with an invalid-token error.
                let reason = match e.code() {
                    Some(
                        "UnrecognizedClientException" | "InvalidClientTokenId" | "AuthFailure",
                    ) => {
                        format!("account {account} region {region}: region not enabled for this account")
                    }
                    _ => format!("account {account} region {region}: {e}"),
                };
                tracing::warn!(account, region, reason = %reason, "account/region skipped");
                if action == Action::Ensure {
                    counts.unreachable += 1;
                    counts.note_first(reason);
                }
            }
            Ok(clusters) => {
                for (cluster, outcome) in clusters {
                    tracing::info!(account, region, cluster = %cluster, report = %serde_json::to_string(&outcome).unwrap_or_default(), "cluster");
                    counts.clusters += usize::from(action == Action::Ensure);
                    match outcome {
                        ClusterOutcome::Created => counts.created += 1,
                        ClusterOutcome::Present { .. } => {
                            counts.present += usize::from(action == Action::Ensure)
                        }
                        ClusterOutcome::Removed => counts.removed += 1,
                        ClusterOutcome::Absent => {}
                        ClusterOutcome::Skipped(why) => {
                            counts.skipped += 1;
                            counts.note(format!("{account}/{region}/{cluster}: {why}"));
                        }
                        ClusterOutcome::Failed(why) => {
                            counts.failed += 1;
                            counts.note(format!("{account}/{region}/{cluster}: {why}"));
                        }
                    }
                }
            }
        }
    }
}

/// One account x region: ensure the target's grant (and undo the previous grant where it
/// differs), or remove the grant of a target this pair no longer belongs to.
async fn pair(
    eks: &aws_sdk_eks::Client,
    action: Action,
    target: &Target,
    previous: Option<&Target>,
    owner: &Owner,
) -> Result<Vec<(String, ClusterOutcome)>, ApiError> {
    let clusters = eks::list_clusters(eks).await?;
    let mut outcomes = Vec::with_capacity(clusters.len());
    for cluster in clusters {
        let outcome = match action {
            Action::Remove => {
                eks::remove_if_ours(eks, &cluster, &target.grant.principal_arn, owner).await
            }
            Action::Ensure => {
                let outcome =
                    eks::ensure(eks, &cluster, &target.grant, owner, target.enable_api_mode).await;
                if let Some(prev) = previous.map(|p| &p.grant).filter(|g| **g != target.grant) {
                    if prev.principal_arn != target.grant.principal_arn {
                        if let ClusterOutcome::Failed(why) =
                            eks::remove_if_ours(eks, &cluster, &prev.principal_arn, owner).await
                        {
                            tracing::warn!(cluster = %cluster.name, reason = %why, "old entry not removed");
                        }
                    } else if prev.policy_arn != target.grant.policy_arn {
                        if let Err(e) = eks::disassociate_if_ours(
                            eks,
                            &cluster.name,
                            &prev.principal_arn,
                            &prev.policy_arn,
                            owner,
                        )
                        .await
                        {
                            tracing::warn!(cluster = %cluster.name, reason = %e, "old policy not removed");
                        }
                    }
                }
                outcome
            }
        };
        outcomes.push((cluster.name, outcome));
    }
    Ok(outcomes)
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

    /// The scheduled reconcile (the EventBridge rule's input).
    const OWN_EVENT_KEY: Option<&'static str> = Some(SCHEDULED_KEY);

    async fn own_event(
        &self,
        ctx: &Context,
        input: &serde_json::Value,
        continuation: Option<serde_json::Value>,
    ) -> HandlerResult<Option<serde_json::Value>> {
        let input: ScheduledInput = serde_json::from_value(input.clone())
            .map_err(|e| ScheduledError(format!("not a scheduled reconcile input: {e}")))?;
        // Checked again by every continuation: a run stops when an operation begins.
        let status = self
            .fleet
            .stack_status(&input.stack_id)
            .await
            .map_err(|e| ScheduledError(format!("cannot read the stack's status: {e}")))?;
        if !STACK_AT_REST.contains(&status.as_str()) {
            tracing::info!(stack_status = %status, "scheduled reconcile skipped: the stack is changing; the next run reconciles");
            return Ok(None);
        }
        let unfinished = self.scheduled(ctx, &input, continuation).await?;
        Ok(unfinished.map(|progress| serde_json::to_value(progress).expect("progress serializes")))
    }
}

/// The input of the scheduled reconcile (EventBridge rule target input).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScheduledInput {
    pub stack_id: String,
    pub logical_resource_id: String,
    pub properties: serde_json::Value,
}

/// The key that marks a scheduled-reconcile event.
pub const SCHEDULED_KEY: &str = "ScheduledReconcile";

impl<F: Fleet> EksAccessEntries<F> {
    /// Reconciles like an Update that changed nothing: clusters and accounts that appeared since
    /// get their entry. Returns the progress to continue with, if unfinished.
    /// `continuation`: the progress an earlier invocation of this run handed on.
    pub async fn scheduled(
        &self,
        ctx: &Context,
        input: &ScheduledInput,
        continuation: Option<serde_json::Value>,
    ) -> Result<Option<Progress>, ScheduledError> {
        if self
            .owner_stack
            .as_ref()
            .is_some_and(|stack| *stack != input.stack_id)
        {
            return Err(ScheduledError(format!(
                "refused: this function reconciles only its own stack's entries, not those of {}",
                input.stack_id
            )));
        }
        self.fleet.learn_own_account(&ctx.invoked_function_arn);
        let owner = Owner {
            stack_id: input.stack_id.clone(),
            logical_id: input.logical_resource_id.clone(),
        };
        let progress = match continuation {
            Some(state) => {
                serde_json::from_value(state).map_err(|e| ScheduledError(e.to_string()))?
            }
            None => {
                let props: EksProps = custom_resource::props::parse(input.properties.clone(), &[])
                    .map_err(|e| ScheduledError(e.to_string()))?;
                self.plan(Some(&props), None, &owner)
                    .await
                    .map_err(|e| ScheduledError(e.to_string()))?
            }
        };
        self.check(&progress, &owner)
            .map_err(|e| ScheduledError(e.to_string()))?;
        match self.run(ctx, progress).await {
            RunResult::Unfinished(p) => Ok(Some(p)),
            RunResult::Finished(p) => {
                let output = Self::finish(&p).map_err(|e| ScheduledError(e.to_string()))?;
                tracing::info!(data = ?output.data, "scheduled reconcile finished");
                Ok(None)
            }
        }
    }
}

/// Stack states in which no CloudFormation operation is running: the only ones in which a
/// scheduled run may act. During a Create, Update or Delete the rule's input may be stale (an
/// Update that moves the entries to a new principal updates the rule only afterwards) or the
/// entries may be on their way out; the next run after the operation reconciles.
pub const STACK_AT_REST: &[&str] = &[
    "CREATE_COMPLETE",
    "UPDATE_COMPLETE",
    "UPDATE_ROLLBACK_COMPLETE",
    "IMPORT_COMPLETE",
    "IMPORT_ROLLBACK_COMPLETE",
];

/// Why a scheduled reconcile stopped (there is no CloudFormation to answer: it is logged).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ScheduledError(pub String);
