//! `Custom::AponoIntegration`: steps 6-10 of Apono's guide (clicks in the Apono UI) done
//! through the Apono API. Create registers (or adopts) the integration, Update keeps it in
//! step, Delete removes only what this resource created.

pub mod apono;
pub mod token;

use apono::{AponoClient, AponoError, Integration, IntegrationSpec};
use custom_resource::props::{opt_number, opt_string, string_list};
use custom_resource::{
    ids, Context, CustomResource, HandlerResult, Outcome, Output, Properties, PropertyError,
    Request,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use token::{TokenError, TokenSource};
use url::Url;

/// Unverified (not in Apono's public docs): Apono's type string for an AWS organization. Configurable.
pub const DEFAULT_INTEGRATION_TYPE: &str = "aws-organization";
/// Verified type string for a single account.
pub const ACCOUNT_INTEGRATION_TYPE: &str = "aws-account";
pub const DEFAULT_CONNECTOR_WAIT_SECONDS: u64 = 300;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AponoProps {
    pub connector_id: String,
    /// Name of the SSM SecureString holding the Apono API token (never the token itself).
    pub api_token_parameter_name: String,
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
        let name = &self.api_token_parameter_name;
        let name_ok = !name.is_empty()
            && name.len() <= 2048
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-/:".contains(c));
        if !name_ok {
            return Err(PropertyError::new(
                "ApiTokenParameterName",
                format!("{name:?} is not an SSM parameter name (e.g. /apono/api-token); pass the parameter's name, not the token"),
            ));
        }
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

    /// The body for POST (with type and connector) or PUT (without).
    pub fn spec(&self, for_create: bool) -> IntegrationSpec {
        IntegrationSpec {
            name: self.name().unwrap_or_default(),
            kind: for_create.then(|| self.kind().to_string()),
            connector_id: for_create.then(|| self.connector_id.clone()),
            integration_config: self.integration_config.clone(),
            connected_resource_types: self.connected_resource_types.clone(),
        }
    }

    fn connector_wait(&self) -> Duration {
        Duration::from_secs(
            self.connector_wait_seconds
                .unwrap_or(DEFAULT_CONNECTOR_WAIT_SECONDS),
        )
    }
}

/// Whether this resource created the integration (and so may delete it) or found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    Created,
    Adopted,
}

impl Ownership {
    fn prefix(self) -> &'static str {
        match self {
            Ownership::Created => "created:",
            Ownership::Adopted => "adopted:",
        }
    }

    /// The physical ID: `created:<id>` or `adopted:<id>`.
    pub fn physical_id(self, integration_id: &str) -> String {
        format!("{}{integration_id}", self.prefix())
    }

    pub fn parse(physical_id: &str) -> Option<(Ownership, &str)> {
        [Ownership::Created, Ownership::Adopted]
            .into_iter()
            .find_map(|o| physical_id.strip_prefix(o.prefix()).map(|id| (o, id)))
            .filter(|(_, id)| !id.is_empty())
    }

    fn as_str(self) -> &'static str {
        match self {
            Ownership::Created => "created",
            Ownership::Adopted => "adopted",
        }
    }
}

pub const DATA_KEYS: &[&str] = &["IntegrationId", "IntegrationName", "Status", "Ownership"];

fn output(ownership: Ownership, integration: &Integration) -> Output {
    Output::new(ownership.physical_id(&integration.id))
        .with("IntegrationId", &integration.id)
        .with("IntegrationName", &integration.name)
        .with("Status", integration.status.as_deref().unwrap_or("UNKNOWN"))
        .with("Ownership", ownership.as_str())
}

#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Apono(#[from] AponoError),
    #[error("connector {id} is not known to Apono after waiting {waited} s: check ConnectorId, and that the connector is installed and running (a new connector becomes known to Apono when its container first connects with its token; raise ConnectorWaitSeconds if it starts slowly)")]
    UnknownConnector { id: String, waited: u64 },
    #[error("connector {id} did not report CONNECTED within {waited} s (last status: {status}): check that the connector is running and can reach Apono, or raise ConnectorWaitSeconds")]
    NotConnected {
        id: String,
        waited: u64,
        status: String,
    },
    #[error("an integration named {name:?} already exists on connector {connector} with type {existing}, not {wanted}: choose another IntegrationName")]
    TypeClash {
        name: String,
        connector: String,
        existing: String,
        wanted: String,
    },
    #[error("integration {0} no longer exists in Apono: delete and recreate this resource (or the stack) to register it again")]
    Vanished(String),
    #[error("physical ID {0:?} was not written by this function; nothing was changed")]
    ForeignPhysicalId(String),
    #[error("refused: ApiUrl host {0:?} is not Apono's (apono.io), and the API token is sent only to Apono; another host must be named in the function's own configuration ({ALLOWED_HOSTS_ENV}), not in the event")]
    HostNotAllowed(String),
}

/// Hosts besides Apono's own the function may send the token to, comma separated: set by
/// whoever deploys the function (the local deploy names its fake Apono), never by an event.
pub const ALLOWED_HOSTS_ENV: &str = "APONO_API_ALLOWED_HOSTS";

/// Apono's API domain: the host itself and its subdomains.
const APONO_DOMAIN: &str = "apono.io";

pub struct AponoIntegration<T> {
    pub tokens: T,
    pub http: reqwest::Client,
    /// Extra hosts the token may go to (see [`ALLOWED_HOSTS_ENV`]).
    pub allowed_hosts: Vec<String>,
}

impl<T: TokenSource> AponoIntegration<T> {
    pub fn new(tokens: T) -> Self {
        AponoIntegration {
            tokens,
            http: apono::http_client(),
            allowed_hosts: Vec::new(),
        }
    }

    /// Also sends the token to these hosts (exact host names, no port).
    pub fn also_allowing(mut self, hosts: impl IntoIterator<Item = String>) -> Self {
        self.allowed_hosts
            .extend(hosts.into_iter().map(|h| h.trim().to_ascii_lowercase()));
        self.allowed_hosts.retain(|h| !h.is_empty());
        self
    }

    /// The extra hosts of the function's own configuration ([`ALLOWED_HOSTS_ENV`]).
    pub fn allowed_hosts_from_env() -> Vec<String> {
        std::env::var(ALLOWED_HOSTS_ENV)
            .unwrap_or_default()
            .split(',')
            .map(str::to_string)
            .collect()
    }

    /// Apono's domain, or a host the function's configuration names.
    fn check_host(&self, url: &Url) -> Result<(), RegistrationError> {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let apono = host == APONO_DOMAIN || host.ends_with(&format!(".{APONO_DOMAIN}"));
        match apono || self.allowed_hosts.contains(&host) {
            true => Ok(()),
            false => Err(RegistrationError::HostNotAllowed(host)),
        }
    }

    async fn client(
        &self,
        ctx: &Context,
        props: &AponoProps,
    ) -> Result<AponoClient, RegistrationError> {
        let base = props.api_url().expect("validated");
        // Before the token is even read.
        self.check_host(&base)?;
        let token = self.tokens.token(&props.api_token_parameter_name).await?;
        Ok(AponoClient::new(
            self.http.clone(),
            base,
            token,
            &props.api_token_parameter_name,
            ctx.handler_deadline,
        ))
    }

    /// Polls until the connector is CONNECTED, within ConnectorWaitSeconds and the deadline.
    /// "Unknown" (404) is waited on like "disconnected": Apono learns a connector only when its
    /// container first connects, which in Deploy mode happens some time after the ECS service
    /// this resource follows has stabilised.
    async fn wait_for_connector(
        &self,
        ctx: &Context,
        api: &AponoClient,
        props: &AponoProps,
    ) -> Result<(), RegistrationError> {
        let id = &props.connector_id;
        let budget = props
            .connector_wait()
            .min(ctx.remaining().saturating_sub(Duration::from_secs(5)));
        let until = tokio::time::Instant::now() + budget;
        let interval = (budget / 10).clamp(Duration::from_millis(250), Duration::from_secs(5));
        loop {
            let status = match api.connector(id).await? {
                Some(connector) if connector.is_connected() => return Ok(()),
                Some(connector) => Some(connector.status.unwrap_or_else(|| "none".into())),
                None => None,
            };
            if tokio::time::Instant::now() + interval > until {
                let waited = budget.as_secs();
                return Err(match status {
                    None => RegistrationError::UnknownConnector {
                        id: id.clone(),
                        waited,
                    },
                    Some(status) => RegistrationError::NotConnected {
                        id: id.clone(),
                        waited,
                        status,
                    },
                });
            }
            tracing::info!(connector = %id, status = status.as_deref().unwrap_or("unknown to Apono"), "waiting for the connector to connect");
            tokio::time::sleep(interval).await;
        }
    }

    /// Create's work: adopt an integration with this name on this connector, or create one.
    /// `replacing` is the integration a replacement supersedes: never a candidate for adoption
    /// (CloudFormation deletes it once the replacement succeeds).
    async fn register(
        &self,
        ctx: &Context,
        props: &AponoProps,
        replacing: Option<&str>,
    ) -> Result<Output, RegistrationError> {
        let api = self.client(ctx, props).await?;
        self.wait_for_connector(ctx, &api, props).await?;
        let name = props.name().expect("validated");
        let existing = api.find_integrations(&name, &props.connector_id).await?;
        if let Some(found) = existing.iter().find(|i| Some(i.id.as_str()) != replacing) {
            if found.kind != props.kind() {
                return Err(RegistrationError::TypeClash {
                    name,
                    connector: props.connector_id.clone(),
                    existing: found.kind.clone(),
                    wanted: props.kind().to_string(),
                });
            }
            tracing::info!(integration = %found.id, "adopting the existing integration; Delete will leave it");
            return Ok(output(Ownership::Adopted, found));
        }
        let created = api.create_integration(&props.spec(true), replacing).await?;
        tracing::info!(integration = %created.id, "integration created");
        Ok(output(Ownership::Created, &created))
    }
}

impl<T: TokenSource> CustomResource for AponoIntegration<T> {
    type Properties = AponoProps;

    async fn create(&self, ctx: &Context, req: &Request<AponoProps>) -> HandlerResult<Outcome> {
        Ok(self.register(ctx, &req.properties, None).await?.into())
    }

    async fn update(&self, ctx: &Context, req: &Request<AponoProps>) -> HandlerResult<Outcome> {
        let physical_id = req.physical_resource_id.as_deref().unwrap_or_default();
        let (ownership, id) = Ownership::parse(physical_id)
            .ok_or_else(|| RegistrationError::ForeignPhysicalId(physical_id.into()))?;
        let new = &req.properties;
        let old = req.old_properties.as_ref();
        // Type and connector cannot change in place: register anew; CloudFormation then
        // deletes the old physical ID (which removes the old integration only if we created it).
        // Old properties that no longer parse are not taken as a replacement: a new physical ID
        // would make CloudFormation delete the integration this resource still stands for.
        if old.is_some_and(|o| o.kind() != new.kind() || o.connector_id != new.connector_id) {
            return Ok(self.register(ctx, new, Some(id)).await?.into());
        }
        let unchanged = old.is_some_and(|o| o.spec(false) == new.spec(false));
        let keep = || {
            Output::keep()
                .with("IntegrationId", id)
                .with("IntegrationName", new.name().unwrap_or_default())
                .with("Status", "UNCHANGED")
                .with("Ownership", ownership.as_str())
        };
        if unchanged {
            tracing::info!("no change: no Apono call");
            return Ok(keep().into());
        }
        if ownership == Ownership::Adopted {
            tracing::info!("adopted integration: left as it is");
            return Ok(keep().into());
        }
        let api = self.client(ctx, new).await?;
        let updated = api
            .update_integration(id, &new.spec(false))
            .await?
            .ok_or_else(|| RegistrationError::Vanished(id.into()))?;
        Ok(output(Ownership::Created, &updated).into())
    }

    async fn delete(&self, ctx: &Context, req: &Request<AponoProps>) -> HandlerResult<Outcome> {
        let physical_id = req.physical_resource_id.as_deref().unwrap_or_default();
        match Ownership::parse(physical_id) {
            Some((Ownership::Created, id)) => {
                let api = self.client(ctx, &req.properties).await?;
                if !api.delete_integration(id).await? {
                    tracing::info!(integration = id, "already gone");
                }
            }
            Some((Ownership::Adopted, id)) => {
                tracing::info!(integration = id, "adopted: left in Apono");
            }
            None => tracing::warn!(physical_id, "not written by this function: nothing deleted"),
        }
        Ok(Output::keep().into())
    }
}
