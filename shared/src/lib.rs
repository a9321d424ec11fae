//! A CloudFormation custom-resource runtime on top of `lambda_runtime`.
//!
//! A function author implements [`CustomResource`] (create, update, delete over a typed
//! [`Properties`] struct); [`run`] does everything else and guarantees **exactly one response per
//! event**: a returned error, a panic, malformed properties and a handler still running near the
//! Lambda deadline all end in a FAILED response whose reason a human can act on.
//!
//! ```no_run
//! use custom_resource::{CustomResource, Context, Request, HandlerResult, Outcome, Output, Properties};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! #[serde(rename_all = "PascalCase", deny_unknown_fields)]
//! struct Props {
//!     greeting: String,
//!     #[serde(default, deserialize_with = "custom_resource::props::opt_number")]
//!     repeat: Option<u32>,
//! }
//! impl Properties for Props {}
//!
//! struct Hello;
//! impl CustomResource for Hello {
//!     type Properties = Props;
//!     async fn create(&self, _: &Context, req: &Request<Props>) -> HandlerResult<Outcome> {
//!         let text = req.properties.greeting.repeat(req.properties.repeat.unwrap_or(1) as usize);
//!         Ok(Output::new(format!("hello-{}", req.request_id)).with("Text", text).into())
//!     }
//!     async fn update(&self, ctx: &Context, req: &Request<Props>) -> HandlerResult<Outcome> {
//!         self.create(ctx, req).await.map(|_| Output::keep().into())
//!     }
//!     async fn delete(&self, _: &Context, _: &Request<Props>) -> HandlerResult<Outcome> {
//!         Ok(Output::keep().into())
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), lambda_runtime::Error> {
//!     custom_resource::logging::init();
//!     custom_resource::run(Hello).await
//! }
//! ```

pub mod aws;
pub mod ids;
pub mod logging;
pub mod props;
pub mod response;
pub mod retry;
mod runtime;
pub mod tls;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

pub use props::{Properties, PropertyError, WaitFor};
pub use runtime::{
    run, run_with, Continuation, ContinuationError, NoContinuation, Runtime, RuntimeConfig,
    CHAIN_STARTED_KEY, CONTINUATION_KEY, DEADLINE_MARGIN_ENV, FAILED_CREATE_PREFIX,
    TEST_LOOPBACK_ENV,
};

/// What a handler returns on failure: its `Display` (with its `source()` chain) becomes the
/// FAILED reason, so make it say what to fix.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;
pub type HandlerResult<T> = Result<T, HandlerError>;

/// Which CloudFormation operation an event asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Create,
    Update,
    Delete,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Create => "Create",
            RequestKind::Update => "Update",
            RequestKind::Delete => "Delete",
        }
    }
}

/// One CloudFormation event with its properties parsed and validated.
#[derive(Debug, Clone)]
pub struct Request<P> {
    pub kind: RequestKind,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub resource_type: String,
    /// Absent on Create (unless this is a continuation of one).
    pub physical_resource_id: Option<String>,
    pub properties: P,
    /// On Update: the previous properties, or `None` when they no longer parse with this
    /// version's parser (treat everything as changed).
    pub old_properties: Option<P>,
    /// Progress carried by a continuation (see [`Outcome::Continue`]); `None` on the first run.
    pub continuation: Option<serde_json::Value>,
}

/// Facts about the invocation a handler may need.
#[derive(Debug, Clone)]
pub struct Context {
    /// When the handler must be finished: the Lambda deadline less the runtime's margin.
    pub handler_deadline: tokio::time::Instant,
    pub invoked_function_arn: String,
}

impl Context {
    /// Time left before the runtime answers FAILED on the handler's behalf.
    pub fn remaining(&self) -> Duration {
        self.handler_deadline
            .saturating_duration_since(tokio::time::Instant::now())
    }
}

/// A successful result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// `None` keeps the event's physical ID (Update/Delete) or, on Create, asks the runtime to
    /// derive one from the stack and logical ID. A different ID on Update means replacement:
    /// CloudFormation will later send a Delete for the old one.
    pub physical_resource_id: Option<String>,
    /// Values readable with `!GetAtt Resource.Key`.
    pub data: BTreeMap<String, String>,
    pub no_echo: bool,
}

impl Output {
    pub fn new(physical_resource_id: impl Into<String>) -> Self {
        Output {
            physical_resource_id: Some(physical_resource_id.into()),
            ..Default::default()
        }
    }

    pub fn keep() -> Self {
        Output::default()
    }

    pub fn with(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.data.insert(key.into(), value.to_string());
        self
    }
}

/// What a handler asks the runtime to do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Answer CloudFormation.
    Done(Output),
    /// Hand the remaining work to a fresh invocation carrying this state (see [`Continuation`]);
    /// only the final invocation answers CloudFormation.
    Continue(serde_json::Value),
}

impl From<Output> for Outcome {
    fn from(output: Output) -> Self {
        Outcome::Done(output)
    }
}

/// A custom resource: three operations over typed properties. Handlers must be idempotent:
/// CloudFormation and Lambda may deliver the same event more than once.
pub trait CustomResource: Send + Sync + 'static {
    type Properties: Properties;

    fn create(
        &self,
        ctx: &Context,
        request: &Request<Self::Properties>,
    ) -> impl Future<Output = HandlerResult<Outcome>> + Send;

    /// Default: `create` again, for a resource whose Update is its Create (one that reads, or
    /// puts in place). The physical ID it returns decides: the same (or none) keeps the
    /// resource, another replaces it (CloudFormation then deletes the old one).
    fn update(
        &self,
        ctx: &Context,
        request: &Request<Self::Properties>,
    ) -> impl Future<Output = HandlerResult<Outcome>> + Send {
        self.create(ctx, request)
    }

    /// Default: nothing to delete, for a resource that makes nothing.
    fn delete(
        &self,
        _ctx: &Context,
        _request: &Request<Self::Properties>,
    ) -> impl Future<Output = HandlerResult<Outcome>> + Send {
        async { Ok(Output::keep().into()) }
    }

    /// The physical ID a failed Create of this request answers with; asked once the handler
    /// has stopped, so it may depend on what the handler got to. A resource whose Create makes
    /// things step by step returns it: every failed Create (an error, a panic, the Lambda timeout, the ServiceTimeout of a
    /// continuation chain, a failed hand-over) then answers with it instead of the
    /// failed-Create marker, so that CloudFormation's rollback sends a Delete the handler acts
    /// on and nothing made so far is left behind. `None` (the default): a failed Create made
    /// nothing that needs deleting.
    fn create_physical_id(&self, _request: &Request<Self::Properties>) -> Option<String> {
        None
    }

    /// The keys that mark the function's own events, which are not CloudFormation's (e.g. a
    /// scheduled run, `{"ScheduledReconcile": {...}}`, or an EventBridge rule's transformed
    /// input). Empty (the default): every event is CloudFormation's.
    const OWN_EVENT_KEYS: &'static [&'static str] = &[];

    /// Serves one of the function's own events: `key` is the first of
    /// [`Self::OWN_EVENT_KEYS`] the event carries, `input` its value there, `continuation` the
    /// progress an earlier invocation handed on. Returns the progress to hand on to a new
    /// invocation when the work is unfinished. No one waits for an answer: the runtime logs an
    /// error and returns it to Lambda (which retries).
    fn own_event(
        &self,
        _ctx: &Context,
        _key: &'static str,
        _input: &serde_json::Value,
        _continuation: Option<serde_json::Value>,
    ) -> impl Future<Output = HandlerResult<Option<serde_json::Value>>> + Send {
        async { Err("this function has no events of its own".into()) }
    }
}
