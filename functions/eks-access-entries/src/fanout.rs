//! The fan-out: every account x region pair of a plan, `MaxConcurrency` at a time, one
//! AssumeRole per account, stopping while there is time to hand the rest on.

use crate::eks::Grant;
use crate::eks::{self, ClusterOutcome, Owner};
use crate::fleet::Fleet;
use crate::progress::{Action, Counts, Progress, Target};
use crate::{EksAccessEntries, RunResult, StackGuard};
use custom_resource::aws::ApiError;
use custom_resource::Context;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;

/// One AssumeRole per account per run, shared by that account's regions.
type ConfigCache = Mutex<HashMap<String, Arc<OnceCell<Result<aws_config::SdkConfig, ApiError>>>>>;

/// What every pair of one run shares.
struct Run<'a> {
    ctx: &'a Context,
    concurrency: usize,
    /// Time kept to finish what is in flight instead of starting more.
    reserve: Duration,
    started: AtomicUsize,
    configs: ConfigCache,
    owner: Owner,
    new: Option<Target>,
    old: Option<Target>,
    /// Outside a CloudFormation operation: the stack as the run found it.
    guard: Option<&'a StackGuard>,
    /// Set once the stack has changed under the run: no pair starts after it.
    stopped: AtomicBool,
}

impl<F: Fleet> EksAccessEntries<F> {
    /// Works through the items not yet done, `max_concurrency` at a time, until done or until
    /// the time left is needed to finish what is in flight. With a `guard` (a scheduled run),
    /// also until the stack changes: what remains is then left unfinished.
    pub async fn run(
        &self,
        ctx: &Context,
        mut progress: Progress,
        guard: Option<&StackGuard>,
    ) -> RunResult {
        let items = progress.items();
        let pending: Vec<usize> = (0..items.len()).filter(|i| !progress.is_done(*i)).collect();
        let run = Run {
            ctx,
            concurrency: progress.max_concurrency.max(1),
            // A quarter of this invocation's time, 1-60 s.
            reserve: (ctx.remaining() / 4).clamp(Duration::from_secs(1), Duration::from_secs(60)),
            started: AtomicUsize::new(0),
            configs: Mutex::default(),
            owner: Owner {
                stack_id: progress.owner_stack.clone(),
                logical_id: progress.owner_logical.clone(),
            },
            new: progress.new.clone(),
            old: progress.old.clone(),
            guard,
            stopped: AtomicBool::new(false),
        };
        let results: Vec<(usize, Option<PairReport>)> = futures::stream::iter(pending)
            .map(|index| {
                let (action, account, region) = items[index].clone();
                let run = &run;
                async move { (index, self.work_pair(run, action, account, region).await) }
            })
            .buffer_unordered(run.concurrency)
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

    /// One account x region, or `None` when it was not started because the time left is
    /// needed to finish what is in flight (the first wave always starts, so every invocation
    /// makes progress).
    async fn work_pair(
        &self,
        run: &Run<'_>,
        action: Action,
        account: String,
        region: String,
    ) -> Option<PairReport> {
        if run.stopped.load(Ordering::SeqCst)
            || (run.started.fetch_add(1, Ordering::SeqCst) >= run.concurrency
                && run.ctx.remaining() < run.reserve)
        {
            return None;
        }
        let target = match action {
            Action::Ensure => run.new.as_ref(),
            Action::Remove => run.old.as_ref(),
        }
        .expect("items come from their target");
        let cell = run
            .configs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(account.clone())
            .or_default()
            .clone();
        let config = cell
            .get_or_init(|| self.fleet.config_for(&account, &target.member_role))
            .await
            .clone();
        let result = match config {
            Ok(config) => {
                let client = self.fleet.eks(&config, &account, &region);
                let previous = match action {
                    Action::Ensure => run.old.as_ref().filter(|o| o.contains(&account, &region)),
                    Action::Remove => None,
                };
                // The principal may differ per account (each account's own Apono role).
                let own = self.fleet.own_account().await.ok();
                let here = |t: &Target| t.grant.in_account(&account, own.as_deref());
                let work = PairWork {
                    action,
                    grant: here(target),
                    previous: previous.map(here),
                    enable_api_mode: target.enable_api_mode,
                };
                let result = pair(&client, &work, &run.owner).await;
                match result {
                    Ok(outcomes) => Ok(self.unless_changed(run, &client, &work, outcomes).await),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        Some(PairReport {
            account,
            region,
            result,
        })
    }
}

impl<F: Fleet> EksAccessEntries<F> {
    /// After a pair created entries outside a CloudFormation operation: if the stack changed
    /// meanwhile in a way that makes them wrong, they are removed again and the run stops (see
    /// [`StackGuard`]).
    async fn unless_changed(
        &self,
        run: &Run<'_>,
        client: &aws_sdk_eks::Client,
        work: &PairWork,
        mut outcomes: Vec<(String, ClusterOutcome)>,
    ) -> Vec<(String, ClusterOutcome)> {
        let Some(guard) = run.guard else {
            return outcomes;
        };
        let grant = &run
            .new
            .as_ref()
            .expect("entries are created for a target")
            .grant;
        if !outcomes.iter().any(|(_, o)| *o == ClusterOutcome::Created)
            || guard.keeps(self.fleet.as_ref(), grant).await
        {
            return outcomes;
        }
        run.stopped.store(true, Ordering::SeqCst);
        for (cluster, outcome) in outcomes.iter_mut() {
            if *outcome == ClusterOutcome::Created {
                *outcome =
                    undo_created(client, cluster, &work.grant.principal_arn, &run.owner).await;
            }
        }
        outcomes
    }
}

/// Removes an entry just made by a run the stack changed under.
pub(crate) async fn undo_created(
    client: &aws_sdk_eks::Client,
    cluster: &str,
    principal_arn: &str,
    owner: &Owner,
) -> ClusterOutcome {
    let info = eks::ClusterInfo {
        name: cluster.to_string(),
        status: None,
        mode: None,
    };
    tracing::warn!(
        cluster,
        "the stack changed during this run: the entry it just made is removed"
    );
    match eks::remove_if_ours(client, &info, principal_arn, owner).await {
        ClusterOutcome::Failed(why) => ClusterOutcome::Failed(why),
        _ => ClusterOutcome::Skipped(
            "the stack changed during this run: the entry made was removed again; the stack's operation or the next reconcile decides".into(),
        ),
    }
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

/// What one account x region is to get: the grants as they apply in its account.
struct PairWork {
    action: Action,
    grant: Grant,
    /// The grant before an Update, where this pair had one.
    previous: Option<Grant>,
    enable_api_mode: bool,
}

/// One account x region: ensure the grant (and undo the previous grant where it differs), or
/// remove the grant of a target this pair no longer belongs to.
async fn pair(
    eks: &aws_sdk_eks::Client,
    work: &PairWork,
    owner: &Owner,
) -> Result<Vec<(String, ClusterOutcome)>, ApiError> {
    let clusters = eks::list_clusters(eks).await?;
    let mut outcomes = Vec::with_capacity(clusters.len());
    for cluster in clusters {
        let grant = &work.grant;
        let outcome = match work.action {
            Action::Remove => eks::remove_if_ours(eks, &cluster, &grant.principal_arn, owner).await,
            Action::Ensure => {
                let outcome = eks::ensure(eks, &cluster, grant, owner, work.enable_api_mode).await;
                if let Some(prev) = work.previous.as_ref().filter(|g| *g != grant) {
                    if prev.principal_arn != grant.principal_arn {
                        if let ClusterOutcome::Failed(why) =
                            eks::remove_if_ours(eks, &cluster, &prev.principal_arn, owner).await
                        {
                            tracing::warn!(cluster = %cluster.name, reason = %why, "old entry not removed");
                        }
                    } else if prev.policy_arn != grant.policy_arn {
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
