//! The Apono API token, read at run time: from an SSM SecureString the user made, or from the
//! Secrets Manager secret the stack made of a `NoEcho` parameter. Custom-resource properties
//! carry only where it is (CloudFormation does not resolve `{{resolve:ssm-secure:...}}` in them).

use aws_config::SdkConfig;
use custom_resource::aws::ApiError;
use std::fmt;
use std::future::Future;

/// Where the token is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenAt {
    /// An SSM SecureString's name.
    Parameter(String),
    /// A Secrets Manager secret's ARN; the secret string is the token.
    Secret(String),
}

impl fmt::Display for TokenAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenAt::Parameter(name) => write!(f, "SSM parameter {name}"),
            TokenAt::Secret(arn) => write!(f, "Secrets Manager secret {arn}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("SSM parameter {name} does not exist: create it with `aws ssm put-parameter --type SecureString --name {name} --value <Apono API token>` in this account and region (or give the token as the AponoApiToken parameter), then retry")]
    NotFound { name: String },
    #[error("Secrets Manager secret {arn} does not exist: it is the stack's own (AponoApiToken); update the stack to re-create it")]
    SecretNotFound { arn: String },
    #[error("{at} is empty: store the Apono API token in it")]
    Empty { at: TokenAt },
    #[error("cannot read {at}: {source} (one encrypted with a customer managed KMS key also needs kms:Decrypt)")]
    Api { at: TokenAt, source: Box<ApiError> },
}

pub trait TokenSource: Send + Sync + 'static {
    fn token(&self, at: &TokenAt) -> impl Future<Output = Result<String, TokenError>> + Send;
}

/// The token from SSM or Secrets Manager, through the SDK.
#[derive(Clone)]
pub struct AwsTokens {
    pub ssm: aws_sdk_ssm::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl AwsTokens {
    pub fn new(config: &SdkConfig) -> Self {
        AwsTokens {
            ssm: aws_sdk_ssm::Client::new(config),
            secrets: aws_sdk_secretsmanager::Client::new(config),
        }
    }

    async fn parameter(&self, name: &str) -> Result<Option<String>, TokenError> {
        let out = self
            .ssm
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| {
                let err = ApiError::from_sdk("ssm:GetParameter", e);
                match err.code() {
                    Some("ParameterNotFound") => TokenError::NotFound { name: name.into() },
                    _ => TokenError::Api {
                        at: TokenAt::Parameter(name.into()),
                        source: Box::new(err),
                    },
                }
            })?;
        Ok(out.parameter().and_then(|p| p.value()).map(str::to_string))
    }

    async fn secret(&self, arn: &str) -> Result<Option<String>, TokenError> {
        let out = self
            .secrets
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| {
                let err = ApiError::from_sdk("secretsmanager:GetSecretValue", e);
                match err.code() {
                    Some("ResourceNotFoundException") => {
                        TokenError::SecretNotFound { arn: arn.into() }
                    }
                    _ => TokenError::Api {
                        at: TokenAt::Secret(arn.into()),
                        source: Box::new(err),
                    },
                }
            })?;
        Ok(out.secret_string().map(str::to_string))
    }
}

impl TokenSource for AwsTokens {
    async fn token(&self, at: &TokenAt) -> Result<String, TokenError> {
        let value = match at {
            TokenAt::Parameter(name) => self.parameter(name).await?,
            TokenAt::Secret(arn) => self.secret(arn).await?,
        };
        let value = value
            .as_deref()
            .map(str::trim)
            .unwrap_or_default()
            .to_string();
        if value.is_empty() {
            return Err(TokenError::Empty { at: at.clone() });
        }
        // From here on the token is replaced by *** in every log line and reason.
        custom_resource::logging::register_secret(&value);
        Ok(value)
    }
}
