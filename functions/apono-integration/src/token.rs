//! The Apono API token, read at run time from an SSM SecureString (CloudFormation does not
//! resolve `{{resolve:ssm-secure:...}}` inside custom-resource properties).

use custom_resource::aws::ApiError;
use std::future::Future;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("SSM parameter {name} does not exist: create it with `aws ssm put-parameter --type SecureString --name {name} --value <Apono API token>` in this account and region, then retry")]
    NotFound { name: String },
    #[error("SSM parameter {name} is empty: store the Apono API token in it")]
    Empty { name: String },
    #[error("cannot read SSM parameter {name}: {source} (a parameter encrypted with a customer managed KMS key also needs kms:Decrypt)")]
    Api { name: String, source: ApiError },
}

pub trait TokenSource: Send + Sync + 'static {
    fn token(
        &self,
        parameter_name: &str,
    ) -> impl Future<Output = Result<String, TokenError>> + Send;
}

#[derive(Clone)]
pub struct SsmTokens {
    pub ssm: aws_sdk_ssm::Client,
}

impl TokenSource for SsmTokens {
    async fn token(&self, name: &str) -> Result<String, TokenError> {
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
                        name: name.into(),
                        source: err,
                    },
                }
            })?;
        let value = out
            .parameter()
            .and_then(|p| p.value())
            .map(str::trim)
            .unwrap_or_default()
            .to_string();
        if value.is_empty() {
            return Err(TokenError::Empty { name: name.into() });
        }
        // From here on the token is replaced by *** in every log line and reason.
        custom_resource::logging::register_secret(&value);
        Ok(value)
    }
}
