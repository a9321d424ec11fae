//! A custom resource whose behaviour is chosen by its properties: the runtime's own test subject
//! and lifecycle demo.

use custom_resource::props::opt_number;
use custom_resource::{
    Context, CustomResource, HandlerResult, Outcome, Output, Properties, Request,
};
use serde::Deserialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum Behaviour {
    #[default]
    Succeed,
    Fail,
    Panic,
    Hang,
    LongReason,
    BigData,
    /// Never finishes: hands on to a new invocation every time.
    KeepContinuing,
    /// A handler bug: its secret property echoed into `Data`.
    EchoKey,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DemoProps {
    #[serde(default)]
    pub behaviour: Behaviour,
    #[serde(default, deserialize_with = "opt_number")]
    pub size: Option<usize>,
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

impl Properties for DemoProps {
    const SECRETS: &'static [&'static str] = &["ApiKey"];
}

/// Counts handler calls so tests can prove when the handler was (not) reached.
#[derive(Clone, Default)]
pub struct Demo {
    pub calls: Arc<AtomicUsize>,
}

impl Demo {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn act(&self, req: &Request<DemoProps>) -> HandlerResult<Outcome> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let p = &req.properties;
        match p.behaviour {
            Behaviour::Succeed => {
                let id = match req.physical_resource_id.clone() {
                    Some(id) => id,
                    None => format!("demo-{}", p.name.as_deref().unwrap_or("thing")),
                };
                Ok(Output::new(id)
                    .with(
                        "Greeting",
                        format!("hello {}", p.name.as_deref().unwrap_or("world")),
                    )
                    .into())
            }
            Behaviour::Fail => Err(format!(
                "the demo failed on purpose (api key {} is fine)",
                p.api_key.as_deref().unwrap_or("none")
            )
            .into()),
            Behaviour::Panic => panic!("demo panic with key {:?}", p.api_key),
            Behaviour::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(Output::keep().into())
            }
            Behaviour::LongReason => Err("x".repeat(p.size.unwrap_or(20_000)).into()),
            Behaviour::EchoKey => Ok(Output::new("demo-echo")
                .with(
                    "Echo",
                    format!("key={}", p.api_key.as_deref().unwrap_or("")),
                )
                .into()),
            Behaviour::KeepContinuing => {
                let step = req
                    .continuation
                    .as_ref()
                    .and_then(|c| c["Step"].as_u64())
                    .unwrap_or(0);
                Ok(Outcome::Continue(serde_json::json!({ "Step": step + 1 })))
            }
            Behaviour::BigData => {
                let mut out = Output::new("demo-big");
                for i in 0..p.size.unwrap_or(100) {
                    out = out.with(format!("Key{i}"), "v".repeat(100));
                }
                Ok(out.into())
            }
        }
    }
}

impl CustomResource for Demo {
    type Properties = DemoProps;
    async fn create(&self, _: &Context, req: &Request<DemoProps>) -> HandlerResult<Outcome> {
        self.act(req).await
    }
    async fn update(&self, _: &Context, req: &Request<DemoProps>) -> HandlerResult<Outcome> {
        self.act(req).await
    }
    async fn delete(&self, _: &Context, req: &Request<DemoProps>) -> HandlerResult<Outcome> {
        self.act(req).await
    }
    /// A named demo knows its ID before it starts, as a resource that makes things step by
    /// step does: its failed Create answers with it.
    fn create_physical_id(&self, req: &Request<DemoProps>) -> Option<String> {
        req.properties
            .name
            .as_ref()
            .map(|name| format!("demo-{name}"))
    }

    /// `{"DemoTick": {"Steps": n}}`: one step per invocation, handing on the count; `"Panic":
    /// true` panics instead.
    const OWN_EVENT_KEYS: &'static [&'static str] = &["DemoTick"];

    async fn own_event(
        &self,
        _: &Context,
        _: &'static str,
        input: &serde_json::Value,
        continuation: Option<serde_json::Value>,
    ) -> HandlerResult<Option<serde_json::Value>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if input["Panic"] == true {
            panic!("demo tick panicked");
        }
        let done = continuation.and_then(|c| c.as_u64()).unwrap_or(0) + 1;
        let steps = input["Steps"].as_u64().ok_or("Steps is required")?;
        Ok((done < steps).then(|| done.into()))
    }
}
