//! How the runtime is set up: its configuration (deadline margin, which response URLs may be
//! called) and the seam through which unfinished work continues in a new invocation.

use super::DEADLINE_MARGIN_ENV;
#[cfg(feature = "test-util")]
use super::TEST_LOOPBACK_ENV;
use crate::response::UrlPolicy;
use crate::Context;
use serde_json::Value;
use std::future::Future;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// How long before the Lambda deadline the handler is stopped so that the FAILED response
    /// still goes out (with retries) before Lambda kills the process.
    pub deadline_margin: Duration,
    pub url_policy: UrlPolicy,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            deadline_margin: Duration::from_secs(10),
            url_policy: UrlPolicy::AwsS3Only,
        }
    }
}

impl RuntimeConfig {
    /// Production defaults, adjusted by [`DEADLINE_MARGIN_ENV`] and (tests only)
    /// [`TEST_LOOPBACK_ENV`](super::TEST_LOOPBACK_ENV).
    pub fn from_env() -> Self {
        let mut config = RuntimeConfig::default();
        if let Some(secs) = std::env::var(DEADLINE_MARGIN_ENV)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
        {
            // Lambda's longest timeout is 900 s: a larger margin means "stop at once".
            config.deadline_margin = Duration::from_secs_f64(secs.min(900.0));
        }
        #[cfg(feature = "test-util")]
        if std::env::var(TEST_LOOPBACK_ENV).as_deref() == Ok("1") {
            config.url_policy = UrlPolicy::AlsoLoopbackForTests;
        }
        config
    }
}

/// Hands unfinished work to a fresh invocation (e.g. an async self-invoke of the Lambda).
pub trait Continuation: Send + Sync + 'static {
    /// `event` is the original CloudFormation event with the progress under
    /// [`CONTINUATION_KEY`](super::CONTINUATION_KEY); the runtime does not answer CloudFormation when this succeeds.
    fn continue_with(
        &self,
        ctx: &Context,
        event: Value,
    ) -> impl Future<Output = Result<(), ContinuationError>> + Send;
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ContinuationError(pub String);

/// For functions that always finish in one invocation.
pub struct NoContinuation;

impl Continuation for NoContinuation {
    async fn continue_with(&self, _: &Context, _: Value) -> Result<(), ContinuationError> {
        Err(ContinuationError(
            "this function cannot continue in a new invocation".into(),
        ))
    }
}
