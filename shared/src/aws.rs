//! One place that decides how every function talks to AWS: adaptive retries for throttling and
//! bounded timeouts. `AWS_ENDPOINT_URL` (honoured by aws-config) points the SDK at moto in tests.

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use std::time::Duration;

/// Loads the shared SDK configuration once per process (not per event), with the HTTPS
/// client that trusts the process's one root store ([`crate::tls`]).
pub async fn load_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(crate::tls::sdk_http_client())
        .retry_config(retry_config())
        .timeout_config(timeout_config())
        .load()
        .await
}

/// Adaptive retries back off on throttling across all calls of a client, which is what a
/// fan-out over hundreds of accounts needs.
pub fn retry_config() -> RetryConfig {
    RetryConfig::adaptive()
        .with_max_attempts(8)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(10))
}

pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(20))
        .operation_timeout(Duration::from_secs(120))
        .build()
}

/// An AWS call that failed, classified so the reason can say what to fix.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("access denied calling {action}{}: grant this action to the function's role", on.as_deref().map(|o| format!(" in {o}")).unwrap_or_default())]
    AccessDenied { action: String, on: Option<String> },
    #[error("{action} failed{}: {code}: {message}", on.as_deref().map(|o| format!(" in {o}")).unwrap_or_default())]
    Service {
        action: String,
        on: Option<String>,
        code: String,
        message: String,
    },
    #[error("{action} could not reach AWS{}: {message}", on.as_deref().map(|o| format!(" in {o}")).unwrap_or_default())]
    Transport {
        action: String,
        on: Option<String>,
        message: String,
    },
}

const ACCESS_DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AccessDeniedForDependencyException",
];

impl ApiError {
    /// Classifies an SDK error of the IAM action `action` (e.g. "organizations:ListAccounts").
    pub fn from_sdk<E, R>(
        action: &str,
        err: aws_smithy_runtime_api::client::result::SdkError<E, R>,
    ) -> Self
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        use aws_smithy_types::error::metadata::ProvideErrorMetadata;
        let action = action.to_string();
        match (err.code(), err.message()) {
            (Some(code), _) if ACCESS_DENIED_CODES.contains(&code) => {
                ApiError::AccessDenied { action, on: None }
            }
            (Some(code), message) => ApiError::Service {
                action,
                on: None,
                code: code.to_string(),
                message: message.unwrap_or("no message").to_string(),
            },
            _ => ApiError::Transport {
                action,
                on: None,
                message: aws_smithy_types::error::display::DisplayErrorContext(&err).to_string(),
            },
        }
    }

    /// Names where the call was made (an account, a region).
    pub fn on(mut self, place: impl Into<String>) -> Self {
        let place = Some(place.into());
        match &mut self {
            ApiError::AccessDenied { on, .. }
            | ApiError::Service { on, .. }
            | ApiError::Transport { on, .. } => *on = place,
        }
        self
    }

    /// The service's error code, if it answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::AccessDenied { .. } => Some("AccessDenied"),
            ApiError::Service { code, .. } => Some(code),
            ApiError::Transport { .. } => None,
        }
    }
}
