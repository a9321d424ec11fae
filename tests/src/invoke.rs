//! Drives a handler in-process through the real runtime code path (URL policy, parsing,
//! dispatch, deadline, response PUT over HTTP), with loopback response URLs allowed.

use custom_resource::response::{Sender, UrlPolicy};
use custom_resource::{handle_event, Continuation, CustomResource, NoContinuation, RuntimeConfig};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub struct Invoker<R, C = NoContinuation> {
    pub resource: Arc<R>,
    pub continuation: Arc<C>,
    pub config: RuntimeConfig,
    /// Lambda timeout simulated for each invocation.
    pub lambda_timeout: Duration,
    sender: Sender,
}

impl<R: CustomResource> Invoker<R, NoContinuation> {
    pub fn new(resource: R) -> Self {
        Invoker::with_continuation(resource, NoContinuation)
    }
}

impl<R: CustomResource, C: Continuation> Invoker<R, C> {
    pub fn with_continuation(resource: R, continuation: C) -> Self {
        Invoker {
            resource: Arc::new(resource),
            continuation: Arc::new(continuation),
            config: RuntimeConfig {
                deadline_margin: Duration::from_secs(2),
                url_policy: UrlPolicy::AlsoLoopbackForTests,
            },
            lambda_timeout: Duration::from_secs(60),
            sender: Sender::new(),
        }
    }

    pub fn timeout(mut self, lambda_timeout: Duration, margin: Duration) -> Self {
        self.lambda_timeout = lambda_timeout;
        self.config.deadline_margin = margin;
        self
    }

    pub fn production_url_policy(mut self) -> Self {
        self.config.url_policy = UrlPolicy::AwsS3Only;
        self
    }

    /// One invocation; returns what the Lambda handler returned.
    pub async fn invoke(&self, event: impl Into<Value>) -> Result<(), String> {
        handle_event(
            &self.resource,
            &self.continuation,
            &self.sender,
            &self.config,
            event.into(),
            Instant::now() + self.lambda_timeout,
            "arn:aws:lambda:us-east-1:123456789012:function:under-test".into(),
        )
        .await
    }
}

impl From<crate::events::Event> for Value {
    fn from(e: crate::events::Event) -> Value {
        e.into_value()
    }
}
