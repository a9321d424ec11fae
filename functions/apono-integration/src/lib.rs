//! `Custom::AponoIntegration`: steps 6-10 of Apono's guide (clicks in the Apono UI) done
//! through the Apono API. Create registers (or adopts) the integration, Update keeps it in
//! step, Delete removes only what this resource created.

pub mod apono;
pub mod token;

use apono::{AponoClient, AponoError, Integration, IntegrationSpec};
use custom_resource::props::{opt_number, opt_string, string_list};
use custom_resource::response::truncate_utf8;
use custom_resource::{
    ids, Context, CustomResource, HandlerResult, Outcome, Output, Properties, PropertyError,
    Request,
};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;
use token::{TokenError, TokenSource};
use url::Url;

/// Unverified (not in Apono's public docs): Apono's type string for an AWS organization. Configurable.
pub const DEFAULT_INTEGRATION_TYPE: &str = "aws-organization";
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

    fn connector_wait(&self) -> Duration {
        Duration::from_secs(
            self.connector_wait_seconds
                .unwrap_or(DEFAULT_CONNECTOR_WAIT_SECONDS),
        )
    }
}

/// How an integration is known to be this resource's own. Apono integrations carry no tags;
/// what marks one is a sentence in its `custom_access_details` (the note Apono shows to
/// requesters, at most 400 characters) naming the stack by its unique ID (a stack re-created
/// under the same name is another owner) and the resource's logical ID. Integration names are
/// unique in an Apono account, so a Create that finds its name taken by an integration with
/// this mark is meeting its own earlier attempt (a process killed after its POST, a second
/// delivery of the event), not something to adopt; and a failed Create's rollback can find
/// and remove what a POST left behind without its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerMark(String);

impl OwnerMark {
    pub fn of(stack_id: &str, logical_id: &str) -> Self {
        // arn:aws:cloudformation:REGION:ACCOUNT:stack/NAME/UUID: the UUID is the stack's own.
        let stack = stack_id.rsplit('/').next().unwrap_or(stack_id);
        OwnerMark(format!(
            "(stack {}, resource {})",
            truncate_utf8(stack, 64),
            truncate_utf8(logical_id, 255)
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The whole note: at most 30 + 338 + 25 characters, within Apono's 400.
    pub fn note(&self) -> String {
        format!(
            "Managed by AWS CloudFormation {}: change it in the stack.",
            self.0
        )
    }
}

/// The physical ID of a failed Create whose POST may have been carried out without its answer
/// reaching us: `pending:<name>`. The rollback's Delete removes an integration of that name
/// only if it carries this resource's [`OwnerMark`].
pub const PENDING_PREFIX: &str = "pending:";

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
    #[error("an integration named {name:?} already exists on connector {connector}, and Apono integration names are unique: choose another IntegrationName (or use that connector to adopt it)")]
    NameTaken { name: String, connector: String },
    #[error("changing IntegrationType means a new integration, and Apono integration names are unique: {name:?} is held by integration {id}, which the change replaces; change IntegrationName as well (the stack then registers the new integration and removes the old one)")]
    NameHeldByReplaced { name: String, id: String },
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
    /// Request IDs of Creates whose POST has been sent in this process: a failed Create among
    /// them answers with a [`PENDING_PREFIX`] physical ID.
    posted: Mutex<HashSet<String>>,
}

impl<T: TokenSource> AponoIntegration<T> {
    pub fn new(tokens: T) -> Self {
        AponoIntegration {
            tokens,
            http: apono::http_client(),
            allowed_hosts: Vec::new(),
            posted: Mutex::default(),
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

    /// Create's work: take over this resource's own integration left by an earlier attempt,
    /// adopt another of this name on this connector, or create one. `replacing` is the
    /// integration a replacement supersedes (CloudFormation deletes it once the replacement
    /// succeeds): never a candidate.
    async fn register(
        &self,
        ctx: &Context,
        req: &Request<AponoProps>,
        replacing: Option<&Integration>,
    ) -> Result<Output, RegistrationError> {
        let props = &req.properties;
        let api = self.client(ctx, props).await?;
        self.wait_for_connector(ctx, &api, props).await?;
        let name = props.name().expect("validated");
        if let Some(old) = replacing.filter(|old| old.name == name) {
            return Err(RegistrationError::NameHeldByReplaced {
                name,
                id: old.id.clone(),
            });
        }
        let mark = OwnerMark::of(&req.stack_id, &req.logical_resource_id);
        let existing = api.find_integrations(&name).await?;
        let mut others = existing
            .iter()
            .filter(|i| Some(i.id.as_str()) != replacing.map(|r| r.id.as_str()));
        if let Some(found) = others.clone().find(|i| i.carries(mark.as_str())) {
            tracing::info!(integration = %found.id, "this resource's own integration, made by an earlier attempt of this Create");
            return Ok(output(Ownership::Created, found));
        }
        if let Some(found) = others.next() {
            let connector = found.connector_id.clone().unwrap_or_default();
            if connector != props.connector_id {
                return Err(RegistrationError::NameTaken { name, connector });
            }
            if found.kind != props.kind() {
                return Err(RegistrationError::TypeClash {
                    name,
                    connector,
                    existing: found.kind.clone(),
                    wanted: props.kind().to_string(),
                });
            }
            tracing::info!(integration = %found.id, "adopting the existing integration; Delete will leave it");
            return Ok(output(Ownership::Adopted, found));
        }
        self.posted_for(&req.request_id, true);
        let spec = props.spec(true, Some(mark.note()));
        let created = api.create_integration(&spec, mark.as_str()).await?;
        self.posted_for(&req.request_id, false);
        tracing::info!(integration = %created.id, "integration created");
        Ok(output(Ownership::Created, &created))
    }

    fn posted_for(&self, request_id: &str, sent: bool) -> bool {
        let mut posted = self.posted.lock().unwrap_or_else(|e| e.into_inner());
        match sent {
            true => posted.insert(request_id.to_string()),
            false => posted.remove(request_id),
        }
    }

    /// The rollback of a Create that failed after its POST: removes the integration of that
    /// name if it carries this resource's mark (it was created although its answer was lost).
    async fn delete_pending(
        &self,
        ctx: &Context,
        req: &Request<AponoProps>,
        name: &str,
    ) -> Result<(), RegistrationError> {
        let api = self.client(ctx, &req.properties).await?;
        let mark = OwnerMark::of(&req.stack_id, &req.logical_resource_id);
        let found = api.find_integrations(name).await?;
        let ours: Vec<_> = found.iter().filter(|i| i.carries(mark.as_str())).collect();
        if ours.is_empty() {
            tracing::info!(
                name,
                "the failed Create's POST created nothing: nothing to delete"
            );
        }
        for integration in ours {
            tracing::info!(integration = %integration.id, "removing what the failed Create's POST created");
            api.delete_integration(&integration.id).await?;
        }
        Ok(())
    }
}

impl<T: TokenSource> CustomResource for AponoIntegration<T> {
    type Properties = AponoProps;

    async fn create(&self, ctx: &Context, req: &Request<AponoProps>) -> HandlerResult<Outcome> {
        Ok(self.register(ctx, req, None).await?.into())
    }

    async fn update(&self, ctx: &Context, req: &Request<AponoProps>) -> HandlerResult<Outcome> {
        let physical_id = req.physical_resource_id.as_deref().unwrap_or_default();
        let (ownership, id) = Ownership::parse(physical_id)
            .ok_or_else(|| RegistrationError::ForeignPhysicalId(physical_id.into()))?;
        let new = &req.properties;
        let keep = || {
            Output::keep()
                .with("IntegrationId", id)
                .with("IntegrationName", new.name().unwrap_or_default())
                .with("Status", "UNCHANGED")
                .with("Ownership", ownership.as_str())
        };
        // Old properties that no longer parse count as changed.
        let unchanged = req.old_properties.as_ref().is_some_and(|old| {
            old.kind() == new.kind() && old.spec(false, None) == new.spec(false, None)
        });
        if unchanged {
            tracing::info!("no change: no Apono call");
            return Ok(keep().into());
        }
        let api = self.client(ctx, new).await?;
        // The integration as it is, not as the old properties say: an update rollback sends
        // the old type back, which is what the integration already has.
        let Some(current) = api.integration(id).await? else {
            if ownership == Ownership::Adopted {
                tracing::info!(
                    integration = id,
                    "adopted integration is gone: nothing to change"
                );
                return Ok(keep().into());
            }
            return Err(RegistrationError::Vanished(id.into()).into());
        };
        if current.kind != new.kind() {
            // A new integration (new physical ID); CloudFormation then deletes the old ID,
            // which removes the old integration only if this resource created it.
            return Ok(self.register(ctx, req, Some(&current)).await?.into());
        }
        if ownership == Ownership::Adopted {
            tracing::info!("adopted integration: left as it is");
            return Ok(keep().into());
        }
        let mark = OwnerMark::of(&req.stack_id, &req.logical_resource_id);
        let updated = api
            .update_integration(id, &new.spec(false, Some(mark.note())))
            .await?
            .ok_or_else(|| RegistrationError::Vanished(id.into()))?;
        Ok(output(Ownership::Created, &updated).into())
    }

    async fn delete(&self, ctx: &Context, req: &Request<AponoProps>) -> HandlerResult<Outcome> {
        let physical_id = req.physical_resource_id.as_deref().unwrap_or_default();
        if let Some(name) = physical_id.strip_prefix(PENDING_PREFIX) {
            self.delete_pending(ctx, req, name).await?;
            return Ok(Output::keep().into());
        }
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

    /// A Create that fails after sending its POST (the answer lost, the deadline reached
    /// while waiting for it) may have created the integration: its rollback must look.
    fn create_physical_id(&self, req: &Request<AponoProps>) -> Option<String> {
        let name = req.properties.name().ok()?;
        self.posted_for(&req.request_id, false)
            .then(|| format!("{PENDING_PREFIX}{name}"))
    }
}
