//! `Custom::AponoIntegration`: steps 6-10 of Apono's guide (clicks in the Apono UI) done
//! through the Apono API. Create registers (or adopts) the integration, Update keeps it in
//! step, Delete removes only what this resource created.

pub mod apono;
mod ownership;
mod props;
pub mod token;

pub use ownership::{OwnerMark, Ownership, PENDING_PREFIX};
pub use props::{AponoProps, DEFAULT_CONNECTOR_WAIT_SECONDS, DEFAULT_INTEGRATION_TYPE};

use apono::{AponoClient, AponoError, Integration};
use custom_resource::{Context, CustomResource, HandlerResult, Outcome, Output, Request};
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;
use token::{TokenError, TokenSource};
use url::Url;

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
        let at = props.token_at().expect("validated");
        let token = self.tokens.token(&at).await?;
        Ok(AponoClient::new(
            self.http.clone(),
            base,
            token,
            at,
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
        self.note_post(&req.request_id);
        let spec = props.spec(true, Some(mark.note()));
        let created = api.create_integration(&spec, mark.as_str()).await?;
        self.forget_post(&req.request_id);
        tracing::info!(integration = %created.id, "integration created");
        Ok(output(Ownership::Created, &created))
    }

    /// Notes that this request's POST has been sent, until [`Self::forget_post`].
    fn note_post(&self, request_id: &str) {
        let mut posted = self.posted.lock().unwrap_or_else(|e| e.into_inner());
        posted.insert(request_id.to_string());
    }

    /// Whether this request's POST was sent (and its answer not handled); forgets it.
    fn forget_post(&self, request_id: &str) -> bool {
        let mut posted = self.posted.lock().unwrap_or_else(|e| e.into_inner());
        posted.remove(request_id)
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
        let ours = api.marked_integrations(name, mark.as_str()).await?;
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
        self.forget_post(&req.request_id)
            .then(|| format!("{PENDING_PREFIX}{name}"))
    }
}
