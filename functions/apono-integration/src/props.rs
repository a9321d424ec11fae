//! The resource's properties: what a template may ask for, checked before anything is done.

use crate::apono::{self, IntegrationSpec};
use crate::token::TokenAt;
use custom_resource::props::{opt_number, opt_string, string_list};
use custom_resource::{ids, Properties, PropertyError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use url::Url;

/// Unverified (not in Apono's public docs): Apono's type string for an AWS organization. Configurable.
pub const DEFAULT_INTEGRATION_TYPE: &str = "aws-organization";
pub const DEFAULT_CONNECTOR_WAIT_SECONDS: u64 = 300;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AponoProps {
    pub connector_id: String,
    /// Name of the SSM SecureString holding the Apono API token (never the token itself).
    #[serde(default, deserialize_with = "opt_string")]
    pub api_token_parameter_name: Option<String>,
    /// Or the ARN of a Secrets Manager secret holding it (the stack's, from a NoEcho parameter).
    #[serde(default, deserialize_with = "opt_string")]
    pub api_token_secret_arn: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub api_url: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub integration_name: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub integration_type: Option<String>,
    /// Used for the default integration name.
    #[serde(default, deserialize_with = "opt_string")]
    pub organization_id: Option<String>,
    #[serde(default)]
    pub integration_config: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "string_list")]
    pub connected_resource_types: Vec<String>,
    #[serde(default, deserialize_with = "opt_number")]
    pub connector_wait_seconds: Option<u64>,
    /// Ordering only: in Deploy mode, the connector's ECS service.
    #[serde(default)]
    pub wait_for: custom_resource::WaitFor,
}

impl Properties for AponoProps {
    fn validate(&self) -> Result<(), PropertyError> {
        let id_ok = !self.connector_id.is_empty()
            && self.connector_id.len() <= 128
            && self
                .connector_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !id_ok {
            return Err(PropertyError::new(
                "ConnectorId",
                format!(
                    "{:?} is not a connector ID (letters, digits, - and _; at most 128)",
                    self.connector_id
                ),
            ));
        }
        self.token_at()?;
        self.api_url()?;
        if let Some(org) = &self.organization_id {
            ids::organization_id(org).map_err(|m| PropertyError::new("OrganizationId", m))?;
        }
        let name = self.name()?;
        if name.chars().count() > 128 {
            return Err(PropertyError::new(
                "IntegrationName",
                format!("{} characters; at most 128", name.chars().count()),
            ));
        }
        if self.connector_wait_seconds.is_some_and(|s| s > 3600) {
            return Err(PropertyError::new("ConnectorWaitSeconds", "at most 3600"));
        }
        if self.integration_config.keys().any(|k| k.trim().is_empty()) {
            return Err(PropertyError::new(
                "IntegrationConfig",
                "keys must not be empty",
            ));
        }
        Ok(())
    }
}

impl AponoProps {
    /// Where the API token is: exactly one of `ApiTokenParameterName` and `ApiTokenSecretArn`.
    pub fn token_at(&self) -> Result<TokenAt, PropertyError> {
        match (&self.api_token_parameter_name, &self.api_token_secret_arn) {
            (Some(name), None) => {
                let name_ok = name.len() <= 2048
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.-/:".contains(c));
                if !name_ok {
                    return Err(PropertyError::new(
                        "ApiTokenParameterName",
                        format!("{name:?} is not an SSM parameter name (e.g. /apono/api-token); pass the parameter's name, not the token"),
                    ));
                }
                Ok(TokenAt::Parameter(name.clone()))
            }
            (None, Some(arn)) => {
                let parts: Vec<&str> = arn.splitn(7, ':').collect();
                let arn_ok = parts.len() == 7
                    && parts[0] == "arn"
                    && parts[2] == "secretsmanager"
                    && ids::account_id(parts[4]).is_ok()
                    && parts[5] == "secret";
                if !arn_ok {
                    return Err(PropertyError::new(
                        "ApiTokenSecretArn",
                        format!("{arn:?} is not a Secrets Manager secret ARN; pass the secret's ARN, not the token"),
                    ));
                }
                Ok(TokenAt::Secret(arn.clone()))
            }
            (Some(_), Some(_)) => Err(PropertyError::new(
                "ApiTokenSecretArn",
                "give the token's place once: ApiTokenParameterName or ApiTokenSecretArn, not both",
            )),
            (None, None) => Err(PropertyError::new(
                "ApiTokenParameterName",
                "required (or ApiTokenSecretArn): where the Apono API token is kept",
            )),
        }
    }

    /// https only; plain http is accepted for loopback hosts (local fakes), never elsewhere.
    pub fn api_url(&self) -> Result<Url, PropertyError> {
        let raw = self.api_url.as_deref().unwrap_or(apono::DEFAULT_API_URL);
        let err = |m: &str| PropertyError::new("ApiUrl", format!("{raw:?} {m}"));
        let url = Url::parse(raw).map_err(|_| err("is not a URL (e.g. https://api.apono.io)"))?;
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        match url.scheme() {
            "https" => Ok(url),
            "http" if loopback => Ok(url),
            _ => Err(err("must be an https URL")),
        }
    }

    pub fn name(&self) -> Result<String, PropertyError> {
        match (&self.integration_name, &self.organization_id) {
            (Some(name), _) => Ok(name.clone()),
            (None, Some(org)) => Ok(format!("aws-organization-{org}")),
            (None, None) => Err(PropertyError::new(
                "IntegrationName",
                "required when OrganizationId is not given (the default name is derived from it)",
            )),
        }
    }

    pub fn kind(&self) -> &str {
        self.integration_type
            .as_deref()
            .unwrap_or(DEFAULT_INTEGRATION_TYPE)
    }

    /// The body for POST (with the type) or PUT (without: the type cannot change in place),
    /// with the owner's note.
    pub fn spec(&self, for_create: bool, note: Option<String>) -> IntegrationSpec {
        IntegrationSpec {
            name: self.name().unwrap_or_default(),
            kind: for_create.then(|| self.kind().to_string()),
            connector_id: Some(self.connector_id.clone()),
            integration_config: self.integration_config.clone(),
            connected_resource_types: self.connected_resource_types.clone(),
            custom_access_details: note,
        }
    }

    pub(crate) fn connector_wait(&self) -> Duration {
        Duration::from_secs(
            self.connector_wait_seconds
                .unwrap_or(DEFAULT_CONNECTOR_WAIT_SECONDS),
        )
    }
}
