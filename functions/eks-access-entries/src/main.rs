// The runtime future nests the SDK and fan-out futures deeply; laying it out needs more
// than the default 128 levels of query depth.
#![recursion_limit = "256"]

use custom_resource::{Context, Runtime, RuntimeConfig};
use eks_access_entries::continuation::SelfInvoke;
use eks_access_entries::eks::Grant;
use eks_access_entries::fleet::AwsFleet;
use eks_access_entries::{
    stack_status, EksAccessEntries, ScheduledInput, SCHEDULED_CONTINUATION_KEY, SCHEDULED_KEY,
    STACK_AT_REST,
};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Serves CloudFormation events through the runtime, and EventBridge's scheduled reconcile
/// (events carrying `ScheduledReconcile`) directly: it has no CloudFormation to answer.
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    custom_resource::logging::init();
    let config = custom_resource::aws::load_config().await;
    let fleet = Arc::new(AwsFleet::new(config.clone(), None).await?);
    let lambda = aws_sdk_lambda::Client::new(&config);
    let cfn = Arc::new(aws_sdk_cloudformation::Client::new(&config));
    let runtime_config = RuntimeConfig::from_env();
    let margin = runtime_config.deadline_margin;
    // The grant and the stack are the function's own configuration, set by the template:
    // whoever can invoke the function cannot ask for another principal, policy or stack.
    let resource = || EksAccessEntries {
        fleet: fleet.clone(),
        allowed: Some(Grant::from_env()),
        owner_stack: std::env::var("EKS_OWNER_STACK_ID").ok(),
    };
    let runtime = Arc::new(Runtime::new(
        resource(),
        SelfInvoke {
            lambda: lambda.clone(),
        },
        runtime_config,
    ));
    let scheduled = Arc::new(resource());
    let self_invoke = Arc::new(SelfInvoke { lambda });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (runtime, scheduled, self_invoke, cfn) = (
            runtime.clone(),
            scheduled.clone(),
            self_invoke.clone(),
            cfn.clone(),
        );
        async move {
            let left = event
                .context
                .deadline()
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            let deadline = tokio::time::Instant::now() + left;
            let arn = event.context.invoked_function_arn.clone();
            let Some(input) = event.payload.get(SCHEDULED_KEY) else {
                return runtime
                    .handle(event.payload, deadline, arn)
                    .await
                    .map_err(Into::into);
            };
            let input: ScheduledInput = serde_json::from_value(input.clone())?;
            // Checked again by every continuation: a run stops when an operation begins.
            let status = stack_status(&cfn, &input.stack_id).await?;
            if !STACK_AT_REST.contains(&status.as_str()) {
                tracing::info!(stack_status = %status, "scheduled reconcile skipped: the stack is changing; the next run reconciles");
                return Ok(());
            }
            let ctx = Context {
                handler_deadline: deadline.checked_sub(margin).unwrap_or(deadline),
                invoked_function_arn: arn.clone(),
            };
            if let Some(progress) = scheduled.scheduled(&ctx, &input).await? {
                let mut next = event.payload.clone();
                next[SCHEDULED_KEY][SCHEDULED_CONTINUATION_KEY] = serde_json::to_value(progress)?;
                self_invoke.invoke(&arn, &next).await?;
            }
            Ok::<(), lambda_runtime::Error>(())
        }
    }))
    .await
}
