//! Event handling: parse, dispatch, and answer exactly once. `decide` turns one CloudFormation
//! event into its answer; `config` holds the settings and the continuation seam.

use crate::logging::{register_secret, scrub};
use crate::props::Properties;
use crate::response::{error_chain, redact_url, ResponseBody, Sender, Status};
use crate::{Context, CustomResource};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use tracing::Instrument;

mod config;
mod decide;
pub use config::{Continuation, ContinuationError, NoContinuation, RuntimeConfig};
use decide::{decide, guarded, hand_on, Answer, Ended};

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
        let own = R::OWN_EVENT_KEYS
            .iter()
            .find_map(|key| Some((*key, event.get(*key)?.clone())));
        if let Some((key, input)) = own {
            let span = tracing::info_span!("own_event", kind = key);
            // Boxed for the same reason as `decide` below.
            return Box::pin(self.handle_own(
                event,
                key,
                input,
                lambda_deadline,
                invoked_function_arn,
            ))
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

    /// The handler's context: it must finish the deadline margin before the Lambda's.
    fn context(&self, lambda_deadline: Instant, invoked_function_arn: String) -> Context {
        Context {
            handler_deadline: lambda_deadline
                .checked_sub(self.config.deadline_margin)
                .unwrap_or(lambda_deadline)
                .max(Instant::now()),
            invoked_function_arn,
        }
    }

    /// One of the function's own events: the same deadline, panic guard and continuation as a
    /// CloudFormation event, and nothing to answer.
    async fn handle_own(
        &self,
        event: Value,
        key: &'static str,
        input: Value,
        lambda_deadline: Instant,
        invoked_function_arn: String,
    ) -> Result<(), String> {
        let ctx = self.context(lambda_deadline, invoked_function_arn);
        let progress = event.get(CONTINUATION_KEY).cloned();
        let (resource, task_ctx) = (self.resource.clone(), ctx.clone());
        let ended = guarded(ctx.handler_deadline, async move {
            resource.own_event(&task_ctx, key, &input, progress).await
        })
        .await;
        let failure = match ended {
            Ended::Finished(Ok(None)) => return Ok(()),
            Ended::Finished(Ok(Some(state))) => {
                match hand_on(self.continuation.as_ref(), &ctx, event, state, None).await {
                    Ok(()) => return Ok(()),
                    Err(why) => why,
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
        self.deliver(&url, encoded, lambda_deadline, started).await
    }

    /// Sends the answer; `Err` when it could not be delivered (Lambda then retries).
    async fn deliver(
        &self,
        url: &url::Url,
        (bytes, outcome, physical_resource_id, reason): Encoded,
        lambda_deadline: Instant,
        started: Instant,
    ) -> Result<(), String> {
        // Leave a sliver for the process to report back to Lambda.
        let send_deadline = lambda_deadline
            .checked_sub(Duration::from_millis(300))
            .unwrap_or(lambda_deadline);
        let duration_ms = || started.elapsed().as_millis() as u64;
        match self.sender.put(url, bytes, send_deadline).await {
            Ok(attempts) => {
                tracing::info!(
                    outcome,
                    physical_resource_id = %physical_resource_id,
                    reason = reason.as_deref().unwrap_or(""),
                    attempts,
                    duration_ms = duration_ms(),
                    "response sent"
                );
                Ok(())
            }
            Err(err) => {
                tracing::error!(
                    outcome,
                    url = %redact_url(url),
                    error = %err,
                    duration_ms = duration_ms(),
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
        let ctx = self.context(lambda_deadline, invoked_function_arn);
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
