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
                let props: EksProps = custom_resource::props::parse(input.properties.clone())
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
