//! Runs a real function binary as Lambda would: a local Lambda runtime API on 127.0.0.1 that
//! hands the binary its events, collects its answers, and (as the Lambda Invoke API,
//! `AWS_ENDPOINT_URL_LAMBDA`) queues the async self-invocations a continuation makes. Several
//! processes may serve one function, each taking the next queued event when it is free, as
//! Lambda runs concurrent invocations in execution environments of their own.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::path::Path as FsPath;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub enum Outcome {
    Response(Value),
    Error(Value),
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<(String, Value)>,
    in_flight: usize,
    results: HashMap<String, Outcome>,
    next_id: u64,
    timeout: Duration,
    async_invokes: usize,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    work: Arc<Notify>,
    done: Arc<Notify>,
    function_arn: String,
    /// When set, an Invoke must be allowed by the caller's IAM policies (moto enforcing).
    authorizer: Option<crate::iam::Authorizer>,
    /// What GetFunctionConfiguration reports, by function ARN.
    configurations: Option<Configurations>,
}

/// Every function's configuration as Lambda holds it now (it outlives a process: an Update of
/// the function starts new ones, while old ones may still finish an invocation).
pub type Configurations = Arc<Mutex<std::collections::BTreeMap<String, Value>>>;

/// How a function is run: its execution environments, and where its configuration is.
#[derive(Clone, Default)]
pub struct Deployment {
    pub environments: usize,
    pub configurations: Option<Configurations>,
}

/// One function process and its runtime API.
pub struct Function {
    pub name: String,
    port: u16,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
    /// The execution environments: one process each.
    children: Vec<Child>,
    pub started: Instant,
    /// Every line the process wrote (stdout and stderr), for the secret scan.
    pub output: Arc<Mutex<Vec<String>>>,
}

impl Function {
    /// Starts `binary` with `env` (plus the runtime API variables) and a Lambda timeout.
    pub async fn start(
        name: &str,
        binary: &FsPath,
        env: &[(String, String)],
        timeout: Duration,
    ) -> Function {
        let arn = format!("arn:aws:lambda:us-east-1:123456789012:function:{name}");
        Function::start_as(name, &arn, binary, env, timeout, None).await
    }

    /// As [`Function::start`], for the function `arn`; with an authorizer, its Invoke API
    /// serves only callers whose policies allow lambda:InvokeFunction on `arn`.
    pub async fn start_as(
        name: &str,
        arn: &str,
        binary: &FsPath,
        env: &[(String, String)],
        timeout: Duration,
        authorizer: Option<crate::iam::Authorizer>,
    ) -> Function {
        let deployment = Deployment {
            environments: 1,
            configurations: None,
        };
        Function::start_deployed(name, arn, binary, env, timeout, authorizer, deployment).await
    }

    /// As [`Function::start_as`], with `deployment.environments` processes serving the one
    /// queue, and GetFunctionConfiguration answered from `deployment.configurations`.
    pub async fn start_deployed(
        name: &str,
        arn: &str,
        binary: &FsPath,
        env: &[(String, String)],
        timeout: Duration,
        authorizer: Option<crate::iam::Authorizer>,
        deployment: Deployment,
    ) -> Function {
        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner {
                timeout,
                ..Default::default()
            })),
            work: Arc::new(Notify::new()),
            done: Arc::new(Notify::new()),
            function_arn: arn.to_string(),
            authorizer,
            configurations: deployment.configurations,
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .route("/2015-03-31/functions/{name}/invocations", post(invoke_api))
            .route(
                "/2015-03-31/functions/{name}/configuration",
                get(configuration_api),
            )
            .with_state(shared.clone());
        let (port, server) = crate::serve_loopback(app).await;
        let started = Instant::now();
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut children = Vec::new();
        for _ in 0..deployment.environments.max(1) {
            children.push(spawn_environment(binary, name, port, env, &output));
        }
        Function {
            name: name.to_string(),
            port,
            shared,
            server,
            children,
            started,
            output,
        }
    }

    /// Queues an event; returns its request ID.
    pub fn enqueue(&self, event: Value) -> String {
        let id = {
            let mut inner = self.shared.inner.lock().unwrap();
            inner.next_id += 1;
            let id = format!("{}-{:06}", self.name, inner.next_id);
            inner.queue.push_back((id.clone(), event));
            id
        };
        self.shared.work.notify_waiters();
        self.shared.work.notify_one();
        id
    }

    /// Invokes and waits for this invocation's outcome (and for any continuations it queued).
    pub async fn invoke(&self, event: Value, wait: Duration) -> Result<Outcome, String> {
        let id = self.enqueue(event);
        let until = Instant::now() + wait;
        loop {
            let done = self.shared.done.notified();
            {
                let inner = self.shared.inner.lock().unwrap();
                if let Some(outcome) = inner.results.get(&id) {
                    if inner.queue.is_empty() && inner.in_flight == 0 {
                        return Ok(outcome.clone());
                    }
                }
            }
            if tokio::time::timeout(until.saturating_duration_since(Instant::now()), done)
                .await
                .is_err()
            {
                return Err(format!("{}: no outcome within {wait:?}", self.name));
            }
        }
    }

    /// Whether the invocation `id` still waits for the process to take it.
    pub fn is_queued(&self, id: &str) -> bool {
        let inner = self.shared.inner.lock().unwrap();
        inner.queue.iter().any(|(queued, _)| queued == id)
    }

    /// Whether the invocation `id` has ended (with a response or an error).
    pub fn has_ended(&self, id: &str) -> bool {
        self.shared.inner.lock().unwrap().results.contains_key(id)
    }

    /// Nothing queued, nothing running (a continuation counts as queued).
    pub fn is_idle(&self) -> bool {
        let inner = self.shared.inner.lock().unwrap();
        inner.queue.is_empty() && inner.in_flight == 0
    }

    /// Async self-invocations received (continuations).
    pub fn async_invokes(&self) -> usize {
        self.shared.inner.lock().unwrap().async_invokes
    }

    pub fn pid(&self) -> Option<u32> {
        self.children.first()?.id()
    }

    /// Peak resident memory of the process so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    pub fn output_text(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.start_kill();
        }
        self.server.abort();
    }
}

/// One execution environment: the binary, polling the runtime API on `port`; what it writes
/// goes to `output`.
fn spawn_environment(
    binary: &FsPath,
    name: &str,
    port: u16,
    env: &[(String, String)],
    output: &Arc<Mutex<Vec<String>>>,
) -> Child {
    let mut command = Command::new(binary);
    command
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
        .env(
            "AWS_ENDPOINT_URL_LAMBDA",
            format!("http://127.0.0.1:{port}"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: the closure runs in the forked child before exec and calls only prctl, which
    // is async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        command.pre_exec(|| {
            // If the test process dies, take the function with it.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let output = output.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                output.lock().unwrap().push(line);
            }
        });
    }
    child
}

async fn next(State(shared): State<Shared>) -> Response {
    loop {
        let notified = shared.work.notified();
        let job = {
            let mut inner = shared.inner.lock().unwrap();
            let job = inner.queue.pop_front();
            if job.is_some() {
                inner.in_flight += 1;
            }
            job.map(|j| (j, inner.timeout))
        };
        if let Some(((id, event), timeout)) = job {
            let deadline = SystemTime::now() + timeout;
            let deadline_ms = deadline.duration_since(UNIX_EPOCH).unwrap().as_millis();
            return (
                StatusCode::OK,
                [
                    ("lambda-runtime-aws-request-id", id),
                    ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
                    (
                        "lambda-runtime-invoked-function-arn",
                        shared.function_arn.clone(),
                    ),
                    (
                        "lambda-runtime-trace-id",
                        "Root=1-00000000-000000000000000000000000".to_string(),
                    ),
                ],
                serde_json::to_vec(&event).unwrap(),
            )
                .into_response();
        }
        notified.await;
    }
}

fn finish(shared: &Shared, id: String, outcome: Outcome) -> StatusCode {
    {
        let mut inner = shared.inner.lock().unwrap();
        inner.in_flight = inner.in_flight.saturating_sub(1);
        inner.results.insert(id, outcome);
    }
    shared.done.notify_waiters();
    StatusCode::ACCEPTED
}

async fn response(State(shared): State<Shared>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    finish(&shared, id, Outcome::Response(value))
}

async fn error(State(shared): State<Shared>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    finish(&shared, id, Outcome::Error(value))
}

async fn init_error(body: Bytes) -> StatusCode {
    eprintln!("function init error: {}", String::from_utf8_lossy(&body));
    StatusCode::ACCEPTED
}

/// Lambda's answer when the caller's IAM does not allow `action` on this function; `None`
/// when it does (or no authorizer is set).
async fn refusal(shared: &Shared, headers: &HeaderMap, action: &str) -> Option<Response> {
    let authorizer = shared.authorizer.as_ref()?;
    let denied = authorizer
        .check(headers, action, &shared.function_arn)
        .await
        .err()?;
    Some(
        (
            StatusCode::FORBIDDEN,
            [("x-amzn-errortype", "AccessDeniedException")],
            axum::Json(serde_json::json!({ "Message": denied })),
        )
            .into_response(),
    )
}

/// Lambda's GetFunctionConfiguration: the function's configuration as it is now.
async fn configuration_api(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(denied) = refusal(&shared, &headers, "lambda:GetFunctionConfiguration").await {
        return denied;
    }
    let configuration = shared
        .configurations
        .as_ref()
        .and_then(|c| c.lock().unwrap().get(&shared.function_arn).cloned());
    match configuration {
        Some(configuration) => axum::Json(configuration).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [("x-amzn-errortype", "ResourceNotFoundException")],
            axum::Json(serde_json::json!({ "Message": "Function not found" })),
        )
            .into_response(),
    }
}

/// Lambda's Invoke API: an `Event` invocation is queued like any other.
async fn invoke_api(
    State(shared): State<Shared>,
    Path(_name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let kind = headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse");
    if kind != "Event" {
        return (
            StatusCode::BAD_REQUEST,
            "only Event invocations are emulated",
        )
            .into_response();
    }
    if let Some(denied) = refusal(&shared, &headers, "lambda:InvokeFunction").await {
        return denied;
    }
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    {
        let mut inner = shared.inner.lock().unwrap();
        inner.next_id += 1;
        let id = format!("async-{:06}", inner.next_id);
        inner.queue.push_back((id, event));
        inner.async_invokes += 1;
    }
    shared.work.notify_one();
    StatusCode::ACCEPTED.into_response()
}
