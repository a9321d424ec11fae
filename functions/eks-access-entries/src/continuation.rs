//! Continues unfinished work in a fresh invocation of this same function (async Invoke of
//! itself, carrying the progress in the event), so that the whole fan-out fits inside one
//! custom resource's lifetime whatever the Lambda timeout.

use custom_resource::{Context, Continuation, ContinuationError};
use serde_json::Value;

pub struct SelfInvoke {
    pub lambda: aws_sdk_lambda::Client,
}

impl SelfInvoke {
    pub async fn invoke(&self, function_arn: &str, event: &Value) -> Result<(), ContinuationError> {
        let payload = serde_json::to_vec(event).map_err(|e| ContinuationError(e.to_string()))?;
        self.lambda
            .invoke()
            .function_name(function_arn)
            .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload))
            .send()
            .await
            .map_err(|e| {
                ContinuationError(
                    custom_resource::aws::ApiError::from_sdk("lambda:InvokeFunction", e)
                        .to_string(),
                )
            })?;
        Ok(())
    }
}

impl Continuation for SelfInvoke {
    async fn continue_with(&self, ctx: &Context, event: Value) -> Result<(), ContinuationError> {
        self.invoke(&ctx.invoked_function_arn, &event).await
    }
}
