//! Event handling: parse, dispatch, and answer exactly once.

use crate::logging::{register_secret, scrub};
use crate::props::{self, Properties};
use crate::response::{error_chain, redact_url, ResponseBody, Sender, Status, UrlPolicy};
use crate::{Context, CustomResource, Outcome, Output, Request, RequestKind};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use tracing::Instrument;

/// Physical ID of a Create that failed before producing one. The Delete that rollback sends for
/// it succeeds at once, without calling the handler: there is nothing to delete.
pub const FAILED_CREATE_PREFIX: &str = "cfn-create-failed:";

/// The event key under which a continuation carries its progress.
pub const CONTINUATION_KEY: &str = "CustomResourceContinuation";

/// The event key under which a continuation carries when its chain began (Unix ms): the whole
/// chain must answer within the resource's ServiceTimeout, after which CloudFormation has
/// stopped waiting (and may be rolling back: more work would race the rollback's Delete).
pub const CHAIN_STARTED_KEY: &str = "CustomResourceChainStartedMs";

/// Longer than any StackId, RequestId or LogicalResourceId CloudFormation sends (a stack ARN is
/// about 150 bytes, a logical ID at most 255).
const MAX_ID_BYTES: usize = 1024;

/// CloudFormation's ServiceTimeout for a custom resource that sets none, and the largest
/// allowed (AWS::CloudFormation::CustomResource, ServiceTimeout: 1-3600 s).
const SERVICE_TIMEOUT_MAX_SECS: u64 = 3600;

/// Env var that lets tests send responses to `http://127.0.0.1`: read only by a build with the
/// `test-util` feature, which production builds leave out.
pub const TEST_LOOPBACK_ENV: &str = "CUSTOM_RESOURCE_TEST_ALLOW_LOOPBACK_RESPONSE_URL";
/// Env var overriding the deadline margin, in seconds.
pub const DEADLINE_MARGIN_ENV: &str = "CUSTOM_RESOURCE_DEADLINE_MARGIN_SECONDS";

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// How long before the Lambda deadline the handler is stopped so that the FAILED response
    /// still goes out (with retries) before Lambda kills the process.
    pub deadline_margin: Duration,
    pub url_policy: UrlPolicy,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            deadline_margin: Duration::from_secs(10),
            url_policy: UrlPolicy::AwsS3Only,
        }
    }
}

impl RuntimeConfig {
    /// Production defaults, adjusted by [`DEADLINE_MARGIN_ENV`] and (tests only)
    /// [`TEST_LOOPBACK_ENV`].
    pub fn from_env() -> Self {
        let mut config = RuntimeConfig::default();
        if let Some(secs) = std::env::var(DEADLINE_MARGIN_ENV)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
        {
            // Lambda's longest timeout is 900 s: a larger margin means "stop at once".
            config.deadline_margin = Duration::from_secs_f64(secs.min(900.0));
        }
        #[cfg(feature = "test-util")]
        if std::env::var(TEST_LOOPBACK_ENV).as_deref() == Ok("1") {
            config.url_policy = UrlPolicy::AlsoLoopbackForTests;
        }
        config
    }
}

/// Hands unfinished work to a fresh invocation (e.g. an async self-invoke of the Lambda).
pub trait Continuation: Send + Sync + 'static {
    /// `event` is the original CloudFormation event with the progress under
    /// [`CONTINUATION_KEY`]; the runtime does not answer CloudFormation when this succeeds.
    fn continue_with(
        &self,
        ctx: &Context,
        event: Value,
    ) -> impl Future<Output = Result<(), ContinuationError>> + Send;
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ContinuationError(pub String);

/// For functions that always finish in one invocation.
pub struct NoContinuation;

impl Continuation for NoContinuation {
    async fn continue_with(&self, _: &Context, _: Value) -> Result<(), ContinuationError> {
        Err(ContinuationError(
            "this function cannot continue in a new invocation".into(),
        ))
    }
}

/// Serves `resource` on the Lambda runtime API until the process ends.
pub async fn run<R: CustomResource>(resource: R) -> Result<(), lambda_runtime::Error> {
    run_with(resource, NoContinuation, RuntimeConfig::from_env()).await
}

pub async fn run_with<R: CustomResource, C: Continuation>(
    resource: R,
    continuation: C,
    config: RuntimeConfig,
) -> Result<(), lambda_runtime::Error> {
    let runtime = Arc::new(Runtime::new(resource, continuation, config));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let runtime = runtime.clone();
        async move {
            let deadline = lambda_deadline(event.context.deadline());
            let arn = event.context.invoked_function_arn.clone();
            runtime
                .handle(event.payload, deadline, arn)
                .await
                .map_err(lambda_runtime::Error::from)
        }
    }))
    .await
}

/// How many answers a process remembers for duplicate deliveries.
const ANSWER_CACHE_SIZE: usize = 64;

/// Everything that serves events, built once per process.
pub struct Runtime<R, C = NoContinuation> {
    resource: Arc<R>,
    continuation: Arc<C>,
    sender: Sender,
    config: RuntimeConfig,
    /// Answers already sent, by request: Lambda and CloudFormation may deliver an event twice
    /// (and Lambda retries an invocation whose response PUT failed). A repeat gets the same
    /// answer again without running the handler a second time.
    answered: std::sync::Mutex<std::collections::VecDeque<(String, Vec<u8>)>>,
}

impl<R: CustomResource, C: Continuation> Runtime<R, C> {
    pub fn new(resource: R, continuation: C, config: RuntimeConfig) -> Self {
        Runtime {
            resource: Arc::new(resource),
            continuation: Arc::new(continuation),
            sender: Sender::new(),
            config,
            answered: Default::default(),
        }
    }

    fn remembered(&self, key: &str) -> Option<Vec<u8>> {
        let answered = self.answered.lock().unwrap_or_else(|e| e.into_inner());
        answered
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, b)| b.clone())
    }

    fn remember(&self, key: String, body: Vec<u8>) {
        let mut answered = self.answered.lock().unwrap_or_else(|e| e.into_inner());
        if answered.len() == ANSWER_CACHE_SIZE {
            answered.pop_front();
        }
        answered.push_back((key, body));
    }

    /// Handles one event end to end. `Ok` once the event is answered (or deliberately not,
    /// for a refused URL or a continuation); `Err` when the response could not be delivered,
    /// so that Lambda's async retry gets another chance.
    pub async fn handle(
        &self,
        event: Value,
        lambda_deadline: Instant,
        invoked_function_arn: String,
    ) -> Result<(), String> {
        if let Some(input) = R::OWN_EVENT_KEY.and_then(|key| event.get(key)) {
            let span = tracing::info_span!("own_event", kind = R::OWN_EVENT_KEY.unwrap_or(""));
            let input = input.clone();
            // Boxed for the same reason as `decide` below.
            return Box::pin(self.handle_own(event, input, lambda_deadline, invoked_function_arn))
                .instrument(span)
                .await;
        }
        let started = Instant::now();
        let env = Envelope::read(&event);
        let span = tracing::info_span!(
            "custom_resource",
            request_type = %env.request_type,
            logical_resource_id = %env.logical_resource_id,
            stack_id = %env.stack_id,
            resource_type = %env.resource_type,
        );
        self.handle_in_span(env, event, started, lambda_deadline, invoked_function_arn)
            .instrument(span)
            .await
    }

    /// One of the function's own events: the same deadline, panic guard and continuation as a
    /// CloudFormation event, and nothing to answer.
    async fn handle_own(
        &self,
        event: Value,
        input: Value,
        lambda_deadline: Instant,
        invoked_function_arn: String,
    ) -> Result<(), String> {
        let ctx = Context {
            handler_deadline: lambda_deadline
                .checked_sub(self.config.deadline_margin)
                .unwrap_or_else(Instant::now),
            invoked_function_arn,
        };
        let progress = event.get(CONTINUATION_KEY).cloned();
        let (resource, task_ctx) = (self.resource.clone(), ctx.clone());
        let ended = guarded(ctx.handler_deadline, async move {
            resource.own_event(&task_ctx, &input, progress).await
        })
        .await;
        let failure = match ended {
            Ended::Finished(Ok(None)) => return Ok(()),
            Ended::Finished(Ok(Some(state))) => {
                let mut next = event;
                if let Some(map) = next.as_object_mut() {
                    map.insert(CONTINUATION_KEY.to_string(), state);
                }
                match self.continuation.continue_with(&ctx, next).await {
                    Ok(()) => return Ok(()),
                    Err(err) => format!("could not continue the work in a new invocation: {err}"),
                }
            }
            Ended::Finished(Err(err)) => error_chain(err.as_ref()),
            Ended::Panicked(message) => format!("internal error (panic): {message}"),
            Ended::TimedOut => {
                "the work did not finish before the Lambda timeout and was stopped".to_string()
            }
        };
        let failure = scrub(&failure);
        tracing::error!(error = %failure, "failed");
        Err(failure)
    }

    async fn handle_in_span(
        &self,
        env: Envelope,
        event: Value,
        started: Instant,
        lambda_deadline: Instant,
        invoked_function_arn: String,
    ) -> Result<(), String> {
        // The query string is the presigned signature: keep it out of every log line.
        if let Some((_, query)) = env.response_url.split_once('?') {
            crate::logging::register_query_secrets(query);
        }
        let url = match self.config.url_policy.check(&env.response_url) {
            Ok(url) => url,
            Err(why) => {
                tracing::error!(reason = %why, "event not answered");
                return Ok(());
            }
        };
        let secret_values = secret_property_values::<R::Properties>(&event);
        for value in &secret_values {
            register_secret(value);
        }
        tracing::info!(
            physical_resource_id = env.physical_resource_id.as_deref().unwrap_or(""),
            continuation = event.get(CONTINUATION_KEY).is_some(),
            "event received"
        );
        let Some(encoded) = self
            .answer(&env, event, lambda_deadline, invoked_function_arn)
            .await
        else {
            tracing::info!(
                duration_ms = started.elapsed().as_millis() as u64,
                "continued in a new invocation"
            );
            return Ok(());
        };
        let (bytes, outcome, physical_resource_id, reason) = encoded;
        // Leave a sliver for the process to report back to Lambda.
        let send_deadline = lambda_deadline
            .checked_sub(Duration::from_millis(300))
            .unwrap_or(lambda_deadline);
        match self.sender.put(&url, bytes, send_deadline).await {
            Ok(attempts) => {
                tracing::info!(
                    outcome,
                    physical_resource_id = %physical_resource_id,
                    reason = reason.as_deref().unwrap_or(""),
                    attempts,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "response sent"
                );
                Ok(())
            }
            Err(err) => {
                tracing::error!(
                    outcome,
                    url = %redact_url(&url),
                    error = %err,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "response not delivered"
                );
                Err(format!("response not delivered: {err}"))
            }
        }
    }

    /// The encoded answer to send: the earlier one for a repeated delivery, else the
    /// handler's (`None`: the work continues in a new invocation, nothing to send).
    async fn answer(
        &self,
        env: &Envelope,
        event: Value,
        lambda_deadline: Instant,
        invoked_function_arn: String,
    ) -> Option<Encoded> {
        let cache_key = format!("{}/{}", env.request_id, env.logical_resource_id);
        if let Some(bytes) = (!env.request_id.is_empty())
            .then(|| self.remembered(&cache_key))
            .flatten()
        {
            tracing::info!("duplicate delivery: sending the earlier answer again, handler not run");
            let id = env.physical_resource_id.clone().unwrap_or_default();
            return Some((bytes, "REPEATED", id, None));
        }
        let margin = self.config.deadline_margin;
        let ctx = Context {
            handler_deadline: lambda_deadline
                .checked_sub(margin)
                .unwrap_or(lambda_deadline)
                .max(Instant::now()),
            invoked_function_arn,
        };
        // Boxed: the handler's future is nested deep inside this one, and a function's own
        // future (SDK calls in a fan-out) would otherwise exceed the compiler's query depth
        // when laid out in place.
        let decided = Box::pin(decide(
            &self.resource,
            &self.continuation,
            &ctx,
            margin,
            env,
            event,
        ));
        let answer = decided.await?;
        let encoded = encode(env, answer);
        if !env.request_id.is_empty() {
            self.remember(cache_key, encoded.0.clone());
        }
        Some(encoded)
    }
}

/// A response body, its outcome, physical ID and reason (for the log).
type Encoded = (Vec<u8>, &'static str, String, Option<String>);

/// The response body for `answer`, scrubbed, with its outcome, physical ID and reason for the
/// log.
fn encode(env: &Envelope, answer: Answer) -> Encoded {
    let reason = answer.reason.map(|r| scrub(&r));
    let outcome = match answer.status {
        Status::Success => "SUCCESS",
        Status::Failed => "FAILED",
    };
    let bytes = ResponseBody {
        status: answer.status,
        reason: reason.clone(),
        physical_resource_id: answer.physical_resource_id.clone(),
        stack_id: env.stack_id.clone(),
        request_id: env.request_id.clone(),
        logical_resource_id: env.logical_resource_id.clone(),
        no_echo: answer.no_echo,
        // A handler may echo a secret into Data by mistake: Data reaches the stack's events
        // and outputs, so it is scrubbed like a log line.
        data: answer
            .data
            .into_iter()
            .map(|(key, value)| (key, scrub(&value)))
            .collect(),
    }
    .into_bytes();
    (bytes, outcome, answer.physical_resource_id, reason)
}

fn lambda_deadline(deadline: SystemTime) -> Instant {
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Instant::now() + left
}

/// The fields every event carries, read leniently so that even a malformed event is answered.
struct Envelope {
    request_type: String,
    response_url: String,
    stack_id: String,
    request_id: String,
    logical_resource_id: String,
    resource_type: String,
    physical_resource_id: Option<String>,
}

impl Envelope {
    fn read(event: &Value) -> Self {
        let field = |k: &str| {
            event
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        Envelope {
            request_type: field("RequestType"),
            response_url: field("ResponseURL"),
            stack_id: field("StackId"),
            request_id: field("RequestId"),
            logical_resource_id: field("LogicalResourceId"),
            resource_type: field("ResourceType"),
            physical_resource_id: event
                .get("PhysicalResourceId")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        }
    }
}

/// The answer for one event, before it becomes a body.
struct Answer {
    status: Status,
    reason: Option<String>,
    physical_resource_id: String,
    data: std::collections::BTreeMap<String, String>,
    no_echo: bool,
}

impl Answer {
    fn succeeded(physical_resource_id: String, output_data: Output) -> Self {
        Answer {
            status: Status::Success,
            reason: None,
            physical_resource_id,
            data: output_data.data,
            no_echo: output_data.no_echo,
        }
    }

    fn failed(physical_resource_id: String, reason: impl Into<String>) -> Self {
        Answer {
            status: Status::Failed,
            reason: Some(reason.into()),
            physical_resource_id,
            data: Default::default(),
            no_echo: false,
        }
    }
}

/// How a guarded run of a handler ended.
enum Ended<T> {
    Finished(T),
    /// The panic's message.
    Panicked(String),
    /// The deadline came first; the work was stopped.
    TimedOut,
}

/// Runs `work` in a task of its own, so that a panic becomes a value instead of taking the
/// process down, and stops it at `deadline`.
async fn guarded<T: Send + 'static>(
    deadline: Instant,
    work: impl Future<Output = T> + Send + 'static,
) -> Ended<T> {
    let mut task = tokio::spawn(work);
    tokio::select! {
        joined = &mut task => match joined {
            Ok(value) => Ended::Finished(value),
            Err(err) => Ended::Panicked(match err.try_into_panic() {
                Ok(payload) => panic_message(&payload),
                Err(_) => "the task was cancelled".to_string(),
            }),
        },
        _ = tokio::time::sleep_until(deadline) => {
            task.abort();
            Ended::TimedOut
        }
    }
}

/// A CloudFormation event read into a request, with what answering it needs.
struct Parsed<P> {
    request: Arc<Request<P>>,
    /// The ID to answer with when things go wrong: the event's, or the failed-Create marker.
    fallback_id: String,
    /// When the continuation chain began (Unix ms): now, for a first invocation.
    chain_started_ms: u64,
}

/// Reads the event, or answers it at once: identifiers too long, an unknown request type,
/// the Delete of a Create that never succeeded, properties that do not parse.
fn parse<P: Properties>(env: &Envelope, event: &mut Value) -> Result<Parsed<P>, Answer> {
    let marker = || {
        let request_id = crate::response::truncate_utf8(&env.request_id, MAX_ID_BYTES);
        format!("{FAILED_CREATE_PREFIX}{request_id}")
    };
    if [&env.stack_id, &env.request_id, &env.logical_resource_id]
        .iter()
        .any(|field| field.len() > MAX_ID_BYTES)
    {
        return Err(Answer::failed(
            env.physical_resource_id.clone().unwrap_or_else(marker),
            format!(
                "refused: the event's StackId, RequestId or LogicalResourceId is longer than \
                 {MAX_ID_BYTES} bytes, which CloudFormation never sends; nothing was done"
            ),
        ));
    }
    let kind = match env.request_type.as_str() {
        "Create" => RequestKind::Create,
        "Update" => RequestKind::Update,
        "Delete" => RequestKind::Delete,
        other => {
            let id = env.physical_resource_id.clone().unwrap_or_else(marker);
            return Err(Answer::failed(
                id,
                format!("unknown RequestType {other:?}: expected Create, Update or Delete"),
            ));
        }
    };
    let fields = event.as_object_mut();
    let (continuation, chain_started) = match fields {
        Some(map) => (map.remove(CONTINUATION_KEY), map.remove(CHAIN_STARTED_KEY)),
        None => (None, None),
    };
    let now_ms = unix_ms();
    let chain_started_ms = chain_started
        .and_then(|v| v.as_u64())
        .filter(|started| continuation.is_some() && *started <= now_ms)
        .unwrap_or(now_ms);
    let fallback_id = match (kind, &env.physical_resource_id) {
        (RequestKind::Create, _) | (_, None) => marker(),
        (_, Some(id)) => id.clone(),
    };
    if kind == RequestKind::Delete && fallback_id.starts_with(FAILED_CREATE_PREFIX) {
        tracing::info!("delete of a create that never succeeded: nothing to do");
        return Err(Answer::succeeded(fallback_id, Output::keep()));
    }
    let field = |name: &str| event.get(name).cloned();
    let properties = props::parse::<P>(
        field("ResourceProperties").unwrap_or(Value::Null),
        P::SECRETS,
    )
    .map_err(|err| Answer::failed(fallback_id.clone(), err.to_string()))?;
    let old_properties = match kind {
        RequestKind::Update => field("OldResourceProperties").and_then(|old| {
            props::parse::<P>(old, P::SECRETS)
                .map_err(|e| tracing::warn!(error = %e, "old properties do not parse; treating every property as changed"))
                .ok()
        }),
        _ => None,
    };
    let request = Request {
        kind,
        stack_id: env.stack_id.clone(),
        request_id: env.request_id.clone(),
        logical_resource_id: env.logical_resource_id.clone(),
        resource_type: env.resource_type.clone(),
        physical_resource_id: env.physical_resource_id.clone(),
        properties,
        old_properties,
        continuation,
    };
    Ok(Parsed {
        request: Arc::new(request),
        fallback_id,
        chain_started_ms,
    })
}

/// The time a continuation chain has left: what remains of the resource's ServiceTimeout since
/// the chain began, less the runtime's margin. It caps an invocation's deadline like the
/// Lambda timeout does.
struct Budget {
    service_timeout: u64,
    /// The handler's deadline: the Lambda's or the chain's, whichever comes first.
    ctx: Context,
    /// Whether the chain's comes first.
    service_timeout_binds: bool,
}

impl Budget {
    fn new(event: &Value, chain_started_ms: u64, margin: Duration, ctx: &Context) -> Self {
        let service_timeout = service_timeout_secs(event);
        let chain_left_ms = (chain_started_ms + service_timeout * 1000).saturating_sub(unix_ms());
        let chain_deadline = (Instant::now() + Duration::from_millis(chain_left_ms))
            .checked_sub(margin)
            .unwrap_or_else(Instant::now);
        Budget {
            service_timeout,
            service_timeout_binds: chain_deadline < ctx.handler_deadline,
            ctx: Context {
                handler_deadline: ctx.handler_deadline.min(chain_deadline),
                invoked_function_arn: ctx.invoked_function_arn.clone(),
            },
        }
    }

    /// Why the work was stopped.
    fn exceeded(&self) -> String {
        match self.service_timeout_binds {
            true => format!(
                "the work did not finish within the resource's ServiceTimeout ({} s) and was \
                 stopped, since CloudFormation no longer waits for it; raise ServiceTimeout (at \
                 most 3600) or reduce the work (e.g. fewer accounts or regions per resource) and \
                 retry",
                self.service_timeout
            ),
            false => "the operation did not finish before the Lambda timeout and was stopped so \
                      that CloudFormation gets an answer now; raise the function's Timeout (or \
                      reduce the work, e.g. fewer accounts or regions per resource) and retry"
                .to_string(),
        }
    }

    /// The chain's time is up: no more work may start.
    fn spent(&self) -> bool {
        self.service_timeout_binds && self.ctx.remaining().is_zero()
    }
}

/// Runs the handler and turns every way it can end into an answer (`None`: continued).
async fn decide<R: CustomResource, C: Continuation>(
    resource: &Arc<R>,
    continuation: &Arc<C>,
    ctx: &Context,
    margin: Duration,
    env: &Envelope,
    mut event: Value,
) -> Option<Answer> {
    let parsed = match parse::<R::Properties>(env, &mut event) {
        Ok(parsed) => parsed,
        Err(answer) => return Some(answer),
    };
    let Parsed {
        request,
        fallback_id,
        chain_started_ms,
    } = parsed;
    let kind = request.kind;
    // Asked once the Create has failed, so that it can tell what the handler got to.
    let failed_id = || match kind {
        RequestKind::Create => resource
            .create_physical_id(&request)
            .unwrap_or_else(|| fallback_id.clone()),
        _ => fallback_id.clone(),
    };
    let budget = Budget::new(&event, chain_started_ms, margin, ctx);
    let ctx = &budget.ctx;
    if budget.spent() {
        return Some(Answer::failed(failed_id(), budget.exceeded()));
    }

    let (task_resource, task_ctx, task_request) = (resource.clone(), ctx.clone(), request.clone());
    let ended = guarded(ctx.handler_deadline, async move {
        match task_request.kind {
            RequestKind::Create => task_resource.create(&task_ctx, &task_request).await,
            RequestKind::Update => task_resource.update(&task_ctx, &task_request).await,
            RequestKind::Delete => task_resource.delete(&task_ctx, &task_request).await,
        }
    })
    .await;
    let result = match ended {
        Ended::Finished(result) => result,
        Ended::TimedOut => return Some(Answer::failed(failed_id(), budget.exceeded())),
        Ended::Panicked(message) => {
            let reason =
                format!("internal error (panic): {message}; this is a bug, please report it");
            tracing::error!(reason = %reason, "handler panicked");
            return Some(Answer::failed(failed_id(), reason));
        }
    };
    match result {
        Ok(Outcome::Done(output)) => Some(succeeded(env, kind, fallback_id, output)),
        Ok(Outcome::Continue(_)) if budget.spent() => {
            Some(Answer::failed(failed_id(), budget.exceeded()))
        }
        Ok(Outcome::Continue(state)) => {
            let mut next = event;
            if let Some(map) = next.as_object_mut() {
                map.insert(CONTINUATION_KEY.to_string(), state);
                map.insert(CHAIN_STARTED_KEY.to_string(), chain_started_ms.into());
            }
            match continuation.continue_with(ctx, next).await {
                Ok(()) => None,
                Err(err) => Some(Answer::failed(
                    failed_id(),
                    format!("could not continue the work in a new invocation: {err}"),
                )),
            }
        }
        Err(err) => Some(Answer::failed(failed_id(), error_chain(err.as_ref()))),
    }
}

/// A finished handler's answer: its physical ID, or the runtime's default on Create, or the
/// event's.
fn succeeded(env: &Envelope, kind: RequestKind, fallback_id: String, mut output: Output) -> Answer {
    let physical_resource_id = match (output.physical_resource_id.take(), kind) {
        (Some(id), _) if !id.is_empty() => id,
        (_, RequestKind::Create) => default_physical_id(env),
        _ => fallback_id,
    };
    if kind == RequestKind::Update
        && env.physical_resource_id.as_deref() != Some(physical_resource_id.as_str())
    {
        tracing::info!(
            old = env.physical_resource_id.as_deref().unwrap_or(""),
            new = %physical_resource_id,
            "replacement: CloudFormation will delete the old physical ID"
        );
    }
    Answer::succeeded(physical_resource_id, output)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The resource's `ServiceTimeout` (seconds; CloudFormation passes it among the properties,
/// as a string), within CloudFormation's 1-3600; 3600 when absent or unreadable.
fn service_timeout_secs(event: &Value) -> u64 {
    let given = &event["ResourceProperties"]["ServiceTimeout"];
    given
        .as_u64()
        .or_else(|| given.as_str()?.trim().parse().ok())
        .map_or(SERVICE_TIMEOUT_MAX_SECS, |s: u64| {
            s.clamp(1, SERVICE_TIMEOUT_MAX_SECS)
        })
}

/// `<stack name>-<logical id>-<request id prefix>`: unique per Create, readable in the console.
fn default_physical_id(env: &Envelope) -> String {
    let stack_name = env
        .stack_id
        .split('/')
        .nth(1)
        .unwrap_or("stack")
        .to_string();
    let suffix: String = env
        .request_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect();
    format!("{stack_name}-{}-{suffix}", env.logical_resource_id)
}

fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "no message".to_string()
    }
}

/// String values of the secret properties, in the new and the old properties.
fn secret_property_values<P: Properties>(event: &Value) -> Vec<String> {
    let mut values = Vec::new();
    for key in ["ResourceProperties", "OldResourceProperties"] {
        for name in P::SECRETS {
            collect_strings(event.get(key).and_then(|p| p.get(*name)), &mut values);
        }
    }
    values
}

fn collect_strings(value: Option<&Value>, out: &mut Vec<String>) {
    match value {
        Some(Value::String(s)) => out.push(s.clone()),
        Some(Value::Array(items)) => items.iter().for_each(|v| collect_strings(Some(v), out)),
        Some(Value::Object(map)) => map.values().for_each(|v| collect_strings(Some(v), out)),
        _ => {}
    }
}
