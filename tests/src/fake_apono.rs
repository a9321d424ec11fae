//! A fake of Apono's admin API on 127.0.0.1: connectors (v3) and integrations (v4) with the
//! shapes of Apono's public OpenAPI spec, bearer-token checks, cursor pagination and controllable faults.
//!
//! Over 400 lines on purpose: the routes, the faults that act inside them and the state they
//! share are one service, read beside Apono's spec.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub enum ApiFault {
    Status(u16),
    TooManyRequests {
        retry_after_secs: u64,
    },
    /// A hostile or broken server: an empty list page that always points to itself.
    EndlessCursor,
    /// A 200 answer of this many bytes, streamed without a length.
    HugeBody {
        bytes: usize,
    },
    /// The next integration POST is carried out, but its answer is lost (a 502 instead).
    PostAppliedAnswerLost,
    /// The next integration POST is carried out at once, and answered only after this long
    /// (past the caller's deadline, or after its process was killed).
    PostAppliedAnswerAfter(Duration),
}

#[derive(Default)]
struct Inner {
    token: String,
    connectors: BTreeMap<String, String>,
    /// Connector -> GETs still to answer with its current status before it turns CONNECTED.
    connect_after: HashMap<String, usize>,
    /// Connector -> GETs still to answer 404 before it appears, CONNECTED (a new connector is
    /// known to Apono only once its container has connected).
    appear_after: HashMap<String, usize>,
    /// Insertion-ordered integrations.
    integrations: Vec<Value>,
    next_id: u64,
    faults: VecDeque<ApiFault>,
    /// Every integrations list page points to itself from now on.
    endless_cursor: bool,
    /// The next integration POST is carried out and answered 502.
    lose_post_answer: bool,
    /// The next integration POST is carried out and answered after this delay.
    delay_post_answer: Option<Duration>,
    /// How long to hold the answer being sent.
    hold_answer: Option<Duration>,
    latency: Duration,
    log: Vec<(String, String)>,
}

#[derive(Clone)]
pub struct FakeApono {
    port: u16,
    inner: Arc<Mutex<Inner>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl FakeApono {
    pub async fn start(token: &str) -> FakeApono {
        let inner = Arc::new(Mutex::new(Inner {
            token: token.to_string(),
            next_id: 1,
            ..Default::default()
        }));
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let (port, task) = crate::serve_loopback(app).await;
        FakeApono {
            port,
            inner,
            task: Arc::new(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap())
    }

    pub fn add_connector(&self, id: &str, status: &str) {
        self.with(|s| s.connectors.insert(id.into(), status.into()));
    }

    /// The connector answers its current status `polls` times, then CONNECTED.
    pub fn connect_after(&self, id: &str, polls: usize) {
        self.with(|s| s.connect_after.insert(id.into(), polls));
    }

    /// The connector is unknown (404) for `polls` GETs, then appears CONNECTED: a connector
    /// that a Deploy-mode stack has just started.
    pub fn appear_after(&self, id: &str, polls: usize) {
        self.with(|s| s.appear_after.insert(id.into(), polls));
    }

    /// A pre-existing integration (not created by the stack); returns its ID.
    pub fn add_integration(&self, name: &str, kind: &str, connector_id: &str) -> String {
        self.with(|s| {
            create(
                s,
                &json!({"name": name, "type": kind, "connector_id": connector_id}),
            )
        })["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn integrations(&self) -> Vec<Value> {
        self.with(|s| s.integrations.clone())
    }

    pub fn integration(&self, id: &str) -> Option<Value> {
        self.with(|s| s.integrations.iter().find(|i| i["id"] == id).cloned())
    }

    pub fn remove_integration(&self, id: &str) {
        self.with(|s| s.integrations.retain(|i| i["id"] != id));
    }

    pub fn fail_next(&self, count: usize, fault: ApiFault) {
        self.with(|s| s.faults.extend(std::iter::repeat_n(fault, count)));
    }

    pub fn set_latency(&self, latency: Duration) {
        self.with(|s| s.latency = latency);
    }

    /// Every request as (method, path and query).
    pub fn requests(&self) -> Vec<(String, String)> {
        self.with(|s| s.log.clone())
    }

    /// POST, PUT and DELETE requests received.
    pub fn writes(&self) -> usize {
        self.requests().iter().filter(|(m, _)| m != "GET").count()
    }
}

impl Drop for FakeApono {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

fn create(s: &mut Inner, body: &Value) -> Value {
    let id = format!("int-{:04}", s.next_id);
    s.next_id += 1;
    let integration = json!({
        "id": id,
        "name": body["name"],
        "type": body["type"],
        "category": "CLOUD",
        "status": "ACTIVE",
        "connector_id": body["connector_id"],
        "integration_config": body.get("integration_config").cloned().unwrap_or(json!({})),
        "connected_resource_types": body.get("connected_resource_types").cloned().unwrap_or(json!([])),
        "custom_access_details": body.get("custom_access_details").cloned().unwrap_or(Value::Null),
    });
    s.integrations.push(integration.clone());
    integration
}

/// The spec: `custom_access_details` holds at most 400 characters.
fn check_access_details(body: &Value) -> Option<Response> {
    body["custom_access_details"]
        .as_str()
        .filter(|text| text.chars().count() > 400)
        .map(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "custom_access_details is longer than 400 characters",
            )
        })
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"status": status.as_u16().to_string(), "code": status.canonical_reason(), "message": message})),
    )
        .into_response()
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let latency = {
        let mut s = inner.lock().unwrap();
        s.log.push((method.to_string(), uri.to_string()));
        s.latency
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let response = answer(&inner, method, uri, headers, body);
    let hold = inner.lock().unwrap().hold_answer.take();
    if let Some(delay) = hold {
        tokio::time::sleep(delay).await;
    }
    response
}

fn answer(
    inner: &Mutex<Inner>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = inner.lock().unwrap();
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", s.token));
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"status": "401", "code": "Unauthorized"})),
        )
            .into_response();
    }
    if let Some(fault) = take_fault(&mut s) {
        return fault;
    }
    let query: HashMap<String, String> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let json_body = || serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["api", "admin", "v3", "connectors", id]) => get_connector(&mut s, id),
        ("GET", ["api", "admin", "v4", "integrations"]) if s.endless_cursor => {
            axum::Json(json!({"items": [], "pagination": {"next_page_token": "again"}}))
                .into_response()
        }
        ("GET", ["api", "admin", "v4", "integrations"]) => list_integrations(&s, &query),
        ("POST", ["api", "admin", "v4", "integrations"]) => post_integration(&mut s, &json_body()),
        ("GET", ["api", "admin", "v4", "integrations", id]) => {
            match s.integrations.iter().find(|i| i["id"] == *id) {
                Some(i) => axum::Json(i.clone()).into_response(),
                None => error(StatusCode::NOT_FOUND, "integration not found"),
            }
        }
        ("PUT", ["api", "admin", "v4", "integrations", id]) => {
            put_integration(&mut s, id, &json_body())
        }
        ("DELETE", ["api", "admin", "v4", "integrations", id]) => delete_integration(&mut s, id),
        _ => error(StatusCode::NOT_FOUND, "no such route"),
    }
}

/// The next queued fault: one that answers instead of the route, or one that arms a route
/// (then `None`).
fn take_fault(s: &mut Inner) -> Option<Response> {
    // Faults that act inside a route rather than instead of it.
    match s.faults.front() {
        Some(ApiFault::EndlessCursor) => {
            s.faults.pop_front();
            s.endless_cursor = true;
        }
        Some(ApiFault::PostAppliedAnswerLost) => {
            s.faults.pop_front();
            s.lose_post_answer = true;
        }
        Some(ApiFault::PostAppliedAnswerAfter(delay)) => {
            s.delay_post_answer = Some(*delay);
            s.faults.pop_front();
        }
        _ => {}
    }
    let fault = s.faults.pop_front()?;
    Some(match fault {
        ApiFault::Status(code) => error(StatusCode::from_u16(code).unwrap(), "injected fault"),
        ApiFault::TooManyRequests { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", retry_after_secs.to_string())],
            "slow down",
        )
            .into_response(),
        ApiFault::EndlessCursor
        | ApiFault::PostAppliedAnswerLost
        | ApiFault::PostAppliedAnswerAfter(_) => {
            unreachable!("taken above")
        }
        ApiFault::HugeBody { bytes } => {
            let chunk = axum::body::Bytes::from(vec![b' '; 64 * 1024]);
            let chunks = bytes.div_ceil(chunk.len());
            let stream = futures::stream::iter(
                (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
            );
            (StatusCode::OK, axum::body::Body::from_stream(stream)).into_response()
        }
    })
}

fn get_connector(s: &mut Inner, id: &str) -> Response {
    let id = id.to_string();
    match s.appear_after.get_mut(&id) {
        Some(0) => {
            s.appear_after.remove(&id);
            s.connectors.insert(id.clone(), "CONNECTED".into());
        }
        Some(n) => {
            *n -= 1;
            return error(StatusCode::NOT_FOUND, "connector not found");
        }
        None => {}
    }
    let Some(status) = s.connectors.get(&id).cloned() else {
        return error(StatusCode::NOT_FOUND, "connector not found");
    };
    let status = match s.connect_after.get_mut(&id) {
        Some(0) => {
            s.connectors.insert(id.clone(), "CONNECTED".into());
            "CONNECTED".to_string()
        }
        Some(n) => {
            *n -= 1;
            status
        }
        None => status,
    };
    axum::Json(json!({"id": id, "name": id, "status": status, "version": "1.7.8"})).into_response()
}

fn list_integrations(s: &Inner, query: &HashMap<String, String>) -> Response {
    let matches: Vec<&Value> = s
        .integrations
        .iter()
        .filter(|i| {
            // A search, not an equality: the client must filter exactly itself.
            query
                .get("name")
                .is_none_or(|n| i["name"].as_str().is_some_and(|v| v.contains(n.as_str())))
        })
        .filter(|i| query.get("type").is_none_or(|t| i["type"] == t.as_str()))
        .filter(|i| {
            query
                .get("connector_id")
                .is_none_or(|c| i["connector_id"] == c.as_str())
        })
        .collect();
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100)
        .clamp(1, 100);
    let start: usize = query
        .get("page_token")
        .and_then(|t| t.strip_prefix("cursor-"))
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let end = (start + limit).min(matches.len());
    let next = (end < matches.len()).then(|| format!("cursor-{end}"));
    axum::Json(json!({
        "items": matches[start.min(end)..end],
        "pagination": {"next_page_token": next},
    }))
    .into_response()
}

fn post_integration(s: &mut Inner, body: &Value) -> Response {
    if body["name"].as_str().unwrap_or("").is_empty() || body["type"].as_str().is_none() {
        return error(StatusCode::BAD_REQUEST, "name and type are required");
    }
    if body["integration_config"]
        .as_object()
        .is_some_and(|m| m.values().any(|v| !v.is_string()))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "integration_config values must be strings",
        );
    }
    // The spec: a name is "unique" in the account.
    if s.integrations.iter().any(|i| i["name"] == body["name"]) {
        return error(
            StatusCode::CONFLICT,
            "an integration with this name already exists",
        );
    }
    if let Some(refusal) = check_access_details(body) {
        return refusal;
    }
    let created = create(s, body);
    if std::mem::take(&mut s.lose_post_answer) {
        return error(StatusCode::BAD_GATEWAY, "upstream connection reset");
    }
    s.hold_answer = s.delay_post_answer.take();
    // The spec answers a created IntegrationV4 with 200.
    axum::Json(created).into_response()
}

fn put_integration(s: &mut Inner, id: &str, body: &Value) -> Response {
    // UpdateIntegrationV4 has no `type`; `connector_id` may change.
    if body.get("type").is_some() {
        return error(StatusCode::BAD_REQUEST, "type cannot be updated");
    }
    if let Some(refusal) = check_access_details(body) {
        return refusal;
    }
    let taken = s
        .integrations
        .iter()
        .any(|i| i["name"] == body["name"] && i["id"] != *id);
    if taken {
        return error(
            StatusCode::CONFLICT,
            "an integration with this name already exists",
        );
    }
    match s.integrations.iter_mut().find(|i| i["id"] == *id) {
        Some(i) => {
            i["name"] = body["name"].clone();
            if let Some(connector) = body.get("connector_id").filter(|c| !c.is_null()) {
                i["connector_id"] = connector.clone();
            }
            i["custom_access_details"] = body
                .get("custom_access_details")
                .cloned()
                .unwrap_or(Value::Null);
            i["integration_config"] = body.get("integration_config").cloned().unwrap_or(json!({}));
            i["connected_resource_types"] = body
                .get("connected_resource_types")
                .cloned()
                .unwrap_or(json!([]));
            axum::Json(i.clone()).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "integration not found"),
    }
}

fn delete_integration(s: &mut Inner, id: &str) -> Response {
    let before = s.integrations.len();
    s.integrations.retain(|i| i["id"] != *id);
    if s.integrations.len() < before {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, "integration not found")
    }
}
