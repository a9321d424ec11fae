//! The scheduled reconcile: like an Update that changed nothing, so that clusters and accounts
//! that appeared since get their entry.

use crate::eks::Owner;
use crate::fleet::Fleet;
use crate::{EksAccessEntries, EksProps, Progress, RunResult};
use custom_resource::Context;
use serde::Deserialize;

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
    /// `guard`: the owning stack as it was when the run began (see [`StackGuard`]).
    pub async fn scheduled(
        &self,
        ctx: &Context,
        input: &ScheduledInput,
        continuation: Option<serde_json::Value>,
        guard: Option<&StackGuard>,
    ) -> Result<Option<Progress>, ScheduledError> {
        self.serves(&input.stack_id)?;
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
                let props: EksProps = custom_resource::props::parse(input.properties.clone())
                    .map_err(|e| ScheduledError(e.to_string()))?;
                self.plan(Some(&props), None, &owner)
                    .await
                    .map_err(|e| ScheduledError(e.to_string()))?
            }
        };
        self.check(&progress, &owner)
            .map_err(|e| ScheduledError(e.to_string()))?;
        match self.run(ctx, progress, guard).await {
            RunResult::Unfinished(p) => Ok(Some(p)),
            RunResult::Finished(p) => {
                let output = Self::finish(&p).map_err(|e| ScheduledError(e.to_string()))?;
                tracing::info!(data = ?output.data, "scheduled reconcile finished");
                Ok(None)
            }
        }
    }
}

impl<F: Fleet> EksAccessEntries<F> {
    /// A scheduled run or a cluster event acts only for the stack this function belongs to.
    pub(crate) fn serves(&self, stack_id: &str) -> Result<(), ScheduledError> {
        match self.owner_stack.as_ref().is_some_and(|s| s != stack_id) {
            true => Err(ScheduledError(format!(
                "refused: this function reconciles only its own stack's entries, not those of {stack_id}"
            ))),
            false => Ok(()),
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

/// The owning stack's status and when its last Update began (DescribeStacks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackState {
    pub status: String,
    pub last_updated: Option<String>,
}

impl StackState {
    pub fn at_rest(&self) -> bool {
        STACK_AT_REST.contains(&self.status.as_str())
    }
}

/// The owning stack as a scheduled run or a cluster event found it when it began. Lambda runs
/// invocations side by side, so a run may still be writing when the stack's Delete removes the
/// entries, or when an Update moves them to a new principal. After each entry it creates, the
/// run reads the stack again; if the stack has changed, the entry stays only if the stack is
/// not being deleted or rolled back and the function's configuration (updated before the
/// entries, which depend on it) still names the run's grant. Otherwise the run removes that
/// entry and stops. An entry written after the operation's removal is then always removed by
/// its writer (the stack's status and the function's configuration change before the
/// operation reaches the entries), one written before by the operation.
#[derive(Debug, Clone)]
pub struct StackGuard {
    pub stack_id: String,
    pub seen: StackState,
    /// The function itself, whose configuration names the grant.
    pub function_arn: String,
}

impl StackGuard {
    /// Whether an entry made with `grant` may stay (a failed read counts as no).
    pub async fn keeps<F: Fleet>(&self, fleet: &F, grant: &crate::eks::Grant) -> bool {
        let now = match fleet.stack_state(&self.stack_id).await {
            Ok(now) if now == self.seen => return true,
            Ok(now) => now,
            Err(e) => {
                tracing::warn!(error = %e, "the stack cannot be read: the entry just made is not kept");
                return false;
            }
        };
        let going = ["DELETE", "ROLLBACK", "IMPORT_ROLLBACK"];
        if going.iter().any(|g| now.status.starts_with(g)) {
            tracing::warn!(stack_status = %now.status, "the stack is going: the entry just made is not kept");
            return false;
        }
        match fleet.configured_grant(&self.function_arn).await {
            Ok(configured) if configured == *grant => true,
            Ok(configured) => {
                tracing::warn!(stack_status = %now.status, configured = %configured.principal_arn, "the stack's grant changed: the entry just made is not kept");
                false
            }
            Err(e) => {
                tracing::warn!(stack_status = %now.status, error = %e, "the function's configuration cannot be read: the entry just made is not kept");
                false
            }
        }
    }
}

/// Why a scheduled reconcile stopped (there is no CloudFormation to answer: it is logged).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ScheduledError(pub String);
