//! One CloudFormation event, from its JSON to its answer: parse (or answer at once), run the
//! handler guarded (deadline, panic), and turn every way it can end into one answer.

use super::{
    Continuation, Envelope, CHAIN_STARTED_KEY, CONTINUATION_KEY, FAILED_CREATE_PREFIX,
    MAX_ID_BYTES, SERVICE_TIMEOUT_MAX_SECS,
};
use crate::props::{self, Properties};
use crate::response::{error_chain, Status};
use crate::{Context, CustomResource, Outcome, Output, Request, RequestKind};
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// The answer for one event, before it becomes a body.
pub(super) struct Answer {
    pub(super) status: Status,
    pub(super) reason: Option<String>,
    pub(super) physical_resource_id: String,
    pub(super) data: std::collections::BTreeMap<String, String>,
    pub(super) no_echo: bool,
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
pub(super) enum Ended<T> {
    Finished(T),
    /// The panic's message.
    Panicked(String),
    /// The deadline came first; the work was stopped.
    TimedOut,
}

/// Runs `work` in a task of its own, so that a panic becomes a value instead of taking the
/// process down, and stops it at `deadline`.
pub(super) async fn guarded<T: Send + 'static>(
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

/// The physical ID of a Create that failed before producing one.
fn failed_create_marker(env: &Envelope) -> String {
    let request_id = crate::response::truncate_utf8(&env.request_id, MAX_ID_BYTES);
    format!("{FAILED_CREATE_PREFIX}{request_id}")
}

/// The operation asked for, or the answer to an event no handler should see: identifiers
/// longer than CloudFormation sends, or an unknown request type.
fn request_kind(env: &Envelope) -> Result<RequestKind, Answer> {
    let id = || {
        env.physical_resource_id
            .clone()
            .unwrap_or_else(|| failed_create_marker(env))
    };
    if [&env.stack_id, &env.request_id, &env.logical_resource_id]
        .iter()
        .any(|field| field.len() > MAX_ID_BYTES)
    {
        return Err(Answer::failed(
            id(),
            format!(
                "refused: the event's StackId, RequestId or LogicalResourceId is longer than \
                 {MAX_ID_BYTES} bytes, which CloudFormation never sends; nothing was done"
            ),
        ));
    }
    match env.request_type.as_str() {
        "Create" => Ok(RequestKind::Create),
        "Update" => Ok(RequestKind::Update),
        "Delete" => Ok(RequestKind::Delete),
        other => Err(Answer::failed(
            id(),
            format!("unknown RequestType {other:?}: expected Create, Update or Delete"),
        )),
    }
}

/// Reads the event, or answers it at once: identifiers too long, an unknown request type,
/// the Delete of a Create that never succeeded, properties that do not parse.
fn parse<P: Properties>(env: &Envelope, event: &mut Value) -> Result<Parsed<P>, Answer> {
    let kind = request_kind(env)?;
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
        (RequestKind::Create, _) | (_, None) => failed_create_marker(env),
        (_, Some(id)) => id.clone(),
    };
    if kind == RequestKind::Delete && fallback_id.starts_with(FAILED_CREATE_PREFIX) {
        tracing::info!("delete of a create that never succeeded: nothing to do");
        return Err(Answer::succeeded(fallback_id, Output::keep()));
    }
    let field = |name: &str| event.get(name).cloned();
    let properties = props::parse::<P>(field("ResourceProperties").unwrap_or(Value::Null))
        .map_err(|err| Answer::failed(fallback_id.clone(), err.to_string()))?;
    let old_properties = match kind {
        RequestKind::Update => field("OldResourceProperties").and_then(|old| {
            props::parse::<P>(old)
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
pub(super) async fn decide<R: CustomResource, C: Continuation>(
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

    let result = match run_handler(resource, ctx, &request).await {
        Ended::Finished(result) => result,
        Ended::TimedOut => return Some(Answer::failed(failed_id(), budget.exceeded())),
        Ended::Panicked(message) => return Some(Answer::failed(failed_id(), panicked(&message))),
    };
    match result {
        Ok(Outcome::Done(output)) => Some(succeeded(env, kind, fallback_id, output)),
        Ok(Outcome::Continue(_)) if budget.spent() => {
            Some(Answer::failed(failed_id(), budget.exceeded()))
        }
        Ok(Outcome::Continue(state)) => {
            let handed_on = hand_on(
                continuation.as_ref(),
                ctx,
                event,
                state,
                Some(chain_started_ms),
            );
            handed_on
                .await
                .err()
                .map(|why| Answer::failed(failed_id(), why))
        }
        Err(err) => Some(Answer::failed(failed_id(), error_chain(err.as_ref()))),
    }
}

/// A panic's reason: a bug of ours, said so, and logged.
fn panicked(message: &str) -> String {
    let reason = format!("internal error (panic): {message}; this is a bug, please report it");
    tracing::error!(reason = %reason, "handler panicked");
    reason
}

/// The handler for the request's kind, in a task of its own stopped at the handler deadline.
async fn run_handler<R: CustomResource>(
    resource: &Arc<R>,
    ctx: &Context,
    request: &Arc<Request<R::Properties>>,
) -> Ended<crate::HandlerResult<Outcome>> {
    let (resource, ctx, request) = (resource.clone(), ctx.clone(), request.clone());
    guarded(ctx.handler_deadline, async move {
        match request.kind {
            RequestKind::Create => resource.create(&ctx, &request).await,
            RequestKind::Update => resource.update(&ctx, &request).await,
            RequestKind::Delete => resource.delete(&ctx, &request).await,
        }
    })
    .await
}

/// Hands the event, with the progress (and a CloudFormation chain's start), to a new
/// invocation; `Err` says why it could not.
pub(super) async fn hand_on<C: Continuation>(
    continuation: &C,
    ctx: &Context,
    mut event: Value,
    state: Value,
    chain_started_ms: Option<u64>,
) -> Result<(), String> {
    if let Some(map) = event.as_object_mut() {
        map.insert(CONTINUATION_KEY.to_string(), state);
        if let Some(started) = chain_started_ms {
            map.insert(CHAIN_STARTED_KEY.to_string(), started.into());
        }
    }
    continuation
        .continue_with(ctx, event)
        .await
        .map_err(|err| format!("could not continue the work in a new invocation: {err}"))
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
