//! Drives a handler in-process through the real runtime code path (URL policy, parsing,
//! dispatch, deadline, duplicate detection, response PUT over HTTP), with loopback response
//! URLs allowed.

use custom_resource::response::UrlPolicy;
use custom_resource::{
    Context, Continuation, ContinuationError, CustomResource, NoContinuation, Runtime,
    RuntimeConfig,
};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

pub struct Invoker<R, C = NoContinuation> {
    runtime: Runtime<R, C>,
    /// Lambda timeout simulated for each invocation.
    pub lambda_timeout: Duration,
}

/// Test defaults: loopback response URLs allowed, a 2 s deadline margin.
pub fn test_config() -> RuntimeConfig {
    RuntimeConfig {
        deadline_margin: Duration::from_secs(2),
        url_policy: UrlPolicy::AlsoLoopbackForTests,
    }
}

impl<R: CustomResource> Invoker<R, NoContinuation> {
    pub fn new(resource: R) -> Self {
        Invoker::with_config(resource, NoContinuation, test_config())
    }

    pub fn with(resource: R, config: RuntimeConfig) -> Self {
        Invoker::with_config(resource, NoContinuation, config)
    }
}

impl<R: CustomResource, C: Continuation> Invoker<R, C> {
    pub fn with_config(resource: R, continuation: C, config: RuntimeConfig) -> Self {
        Invoker {
            runtime: Runtime::new(resource, continuation, config),
            lambda_timeout: Duration::from_secs(60),
        }
    }

    /// One invocation; returns what the Lambda handler returned.
    pub async fn invoke(&self, event: impl Into<Value>) -> Result<(), String> {
        self.runtime
            .handle(
                event.into(),
                Instant::now() + self.lambda_timeout,
                "arn:aws:lambda:us-east-1:123456789012:function:under-test".into(),
            )
            .await
    }

    /// One invocation, and the one answer `rx` received for it (asserted to be exactly one).
    pub async fn answer(&self, rx: &crate::receiver::Receiver, event: impl Into<Value>) -> Value {
        let before = rx.accepted().len();
        self.invoke(event).await.unwrap();
        let sent = rx.accepted();
        assert_eq!(sent.len(), before + 1, "exactly one response per event");
        sent.last().unwrap().json()
    }
}

impl From<crate::events::Event> for Value {
    fn from(e: crate::events::Event) -> Value {
        e.into_value()
    }
}

/// A continuation that keeps the events it is handed, for the test to deliver as the next
/// invocation (what the Lambda self-invoke does in production).
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<Value>>>);

impl Captured {
    pub fn take(&self) -> Option<Value> {
        self.0.lock().unwrap().pop()
    }
}

impl Continuation for Captured {
    async fn continue_with(&self, _: &Context, event: Value) -> Result<(), ContinuationError> {
        self.0.lock().unwrap().push(event);
        Ok(())
    }
}
