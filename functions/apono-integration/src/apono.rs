//! A small client of Apono's admin API (shapes from Apono's public Terraform provider; see
//! its public OpenAPI spec): connectors (v3) and integrations (v4). Retries 429, 5xx and timeouts with backoff,
//! honouring Retry-After, never past the deadline it is given.

use crate::token::TokenAt;
use custom_resource::retry::Backoff;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

mod http;

pub const DEFAULT_API_URL: &str = "https://api.apono.io";
const PAGE_SIZE: usize = 100;

#[derive(Debug, Clone, Deserialize)]
pub struct Connector {
    pub id: String,
    #[serde(default)]
    pub status: Option<String>,
}

impl Connector {
    pub fn is_connected(&self) -> bool {
        self.status.as_deref() == Some("CONNECTED")
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Integration {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub connector_id: Option<String>,
    /// The note Apono shows to requesters; also where this stack marks what it made.
    #[serde(default)]
    pub custom_access_details: Option<String>,
}

impl Integration {
    /// Whether the note carries this owner mark (see `OwnerMark` in the crate root).
    pub fn carries(&self, mark: &str) -> bool {
        self.custom_access_details
            .as_deref()
            .is_some_and(|note| note.contains(mark))
    }
}

/// What we ask Apono to hold. On PUT (a full replace) `type` is left out: the API cannot
/// change it in place (its `UpdateIntegrationV4` has no `type`, but has `connector_id`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IntegrationSpec {
    pub name: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connector_id: Option<String>,
    /// Every value a JSON string, as the API expects.
    pub integration_config: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connected_resource_types: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_access_details: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AponoError {
    #[error("Apono rejected the API token in {at} (HTTP {status}): store a valid Apono API token there and retry")]
    Rejected { at: TokenAt, status: u16 },
    #[error("Apono API {method} {path} answered HTTP {status}: {message}")]
    Client {
        method: Method,
        path: String,
        status: u16,
        message: String,
    },
    #[error("Apono API {method} {path} did not succeed after {attempts} attempt(s) within the time left: {last}")]
    Unavailable {
        method: Method,
        path: String,
        attempts: u32,
        last: String,
    },
    #[error("Apono API {method} {path}: the list did not end ({reason}); nothing was changed")]
    EndlessList {
        method: Method,
        path: String,
        reason: String,
    },
    #[error("unexpected answer from Apono API {method} {path}: {message}")]
    Decode {
        method: Method,
        path: String,
        message: String,
    },
}

pub struct AponoClient {
    http: reqwest::Client,
    base: Url,
    token: String,
    token_at: TokenAt,
    deadline: Instant,
}

/// One HTTP client per process: connection pool and TLS set-up are reused across events.
pub fn http_client() -> reqwest::Client {
    custom_resource::tls::reqwest_builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("apono-aws-onboarding/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client builds with static settings")
}

impl AponoClient {
    pub fn new(
        http: reqwest::Client,
        base: Url,
        token: String,
        token_at: TokenAt,
        deadline: Instant,
    ) -> Self {
        AponoClient {
            http,
            base,
            token,
            token_at,
            deadline,
        }
    }

    /// Retries start at about 500 ms and double up to 8 s, within the deadline.
    fn backoff(&self) -> Backoff {
        Backoff::new(
            Duration::from_millis(500),
            Duration::from_secs(8),
            self.deadline,
        )
    }

    /// `None` when Apono does not know the connector.
    pub async fn connector(&self, id: &str) -> Result<Option<Connector>, AponoError> {
        let path = format!("/api/admin/v3/connectors/{}", encode(id));
        match self.call(Method::GET, &path, &[], None).await? {
            None => Ok(None),
            Some(body) => decode(&Method::GET, &path, body).map(Some),
        }
    }

    /// Integrations with exactly this name (on any connector: names are unique in an Apono
    /// account), every page read.
    pub async fn find_integrations(&self, name: &str) -> Result<Vec<Integration>, AponoError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            items: Vec<Integration>,
            #[serde(default)]
            pagination: Option<Pagination>,
        }
        #[derive(Deserialize)]
        struct Pagination {
            #[serde(default)]
            next_page_token: Option<String>,
        }
        let path = "/api/admin/v4/integrations";
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        let endless = |reason: String| AponoError::EndlessList {
            method: Method::GET,
            path: path.to_string(),
            reason,
        };
        for _ in 0..MAX_PAGES {
            let mut query = vec![("name", name.to_string()), ("limit", PAGE_SIZE.to_string())];
            if let Some(t) = &token {
                query.push(("page_token", t.clone()));
            }
            let body = self
                .call(Method::GET, path, &query, None)
                .await?
                .unwrap_or(Value::Null);
            let page: Page = decode(&Method::GET, path, body)?;
            // The name filter is a search ("*" is a wildcard): keep exact matches only.
            found.extend(page.items.into_iter().filter(|i| i.name == name));
            token = page
                .pagination
                .and_then(|p| p.next_page_token)
                .filter(|t| !t.is_empty());
            match &token {
                None => return Ok(found),
                Some(t) if !seen.insert(t.clone()) => {
                    return Err(endless(format!("the page token {t:?} came back")))
                }
                Some(_) => {}
            }
        }
        Err(endless(format!("more than {MAX_PAGES} pages")))
    }

    /// Integrations with exactly this name that carry `mark`: made by this stack's resource.
    pub async fn marked_integrations(
        &self,
        name: &str,
        mark: &str,
    ) -> Result<Vec<Integration>, AponoError> {
        let mut found = self.find_integrations(name).await?;
        found.retain(|i| i.carries(mark));
        Ok(found)
    }

    /// Creates the integration once. A POST is not idempotent: when an attempt ends without a
    /// clear answer (a timeout, a 5xx, a 429) Apono may still have created it, and when it is
    /// refused (a name already taken) another delivery of the same Create may have created it.
    /// Either way the list is searched first, and an integration carrying `mark` is the one
    /// created here; only then is the POST tried again.
    pub async fn create_integration(
        &self,
        spec: &IntegrationSpec,
        mark: &str,
    ) -> Result<Integration, AponoError> {
        let path = "/api/admin/v4/integrations";
        let body = serde_json::to_value(spec).expect("a spec serializes");
        let mut backoff = self.backoff();
        loop {
            let failure = match self
                .call_with(Method::POST, path, &[], Some(body.clone()), false)
                .await
            {
                Ok(answer) => return decode(&Method::POST, path, answer.unwrap_or(Value::Null)),
                Err(e @ (AponoError::Unavailable { .. } | AponoError::Client { .. })) => e,
                Err(other) => return Err(other),
            };
            if let Some(made) = self
                .marked_integrations(&spec.name, mark)
                .await?
                .into_iter()
                .next()
            {
                tracing::info!(integration = %made.id, error = %failure, "the integration was created by this attempt or another delivery of it");
                return Ok(made);
            }
            let AponoError::Unavailable { last, .. } = failure else {
                return Err(failure);
            };
            let Some(delay) = backoff.next_delay(None) else {
                return Err(AponoError::Unavailable {
                    method: Method::POST,
                    path: path.to_string(),
                    attempts: 1,
                    last,
                });
            };
            tracing::warn!(error = %last, delay_ms = delay.as_millis() as u64, "Apono API POST failed and created nothing, retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// `None` when the integration no longer exists.
    pub async fn integration(&self, id: &str) -> Result<Option<Integration>, AponoError> {
        let path = format!("/api/admin/v4/integrations/{}", encode(id));
        match self.call(Method::GET, &path, &[], None).await? {
            None => Ok(None),
            Some(body) => decode(&Method::GET, &path, body).map(Some),
        }
    }

    /// `None` when the integration no longer exists.
    pub async fn update_integration(
        &self,
        id: &str,
        spec: &IntegrationSpec,
    ) -> Result<Option<Integration>, AponoError> {
        let path = format!("/api/admin/v4/integrations/{}", encode(id));
        let body = serde_json::to_value(spec).expect("a spec serializes");
        match self.call(Method::PUT, &path, &[], Some(body)).await? {
            None => Ok(None),
            Some(answer) => decode(&Method::PUT, &path, answer).map(Some),
        }
    }

    /// `false` when it was already gone.
    pub async fn delete_integration(&self, id: &str) -> Result<bool, AponoError> {
        let path = format!("/api/admin/v4/integrations/{}", encode(id));
        Ok(self.call(Method::DELETE, &path, &[], None).await?.is_some())
    }
}

/// At most this many pages of a list (1,000 x 100 integrations of one name on one connector).
const MAX_PAGES: usize = 1000;

fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

fn decode<T: serde::de::DeserializeOwned>(
    method: &Method,
    path: &str,
    body: Value,
) -> Result<T, AponoError> {
    serde_json::from_value(body).map_err(|e| AponoError::Decode {
        method: method.clone(),
        path: path.to_string(),
        message: e.to_string(),
    })
}
