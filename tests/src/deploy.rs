//! CloudFormation's deploy loop, modelled: the transformed template's resources are created,
//! updated and deleted in the order and with the parallelism CloudFormation uses, and a failure
//! rolls back what was done. What each resource *does* is up to a [`Provider`] (the local run's
//! emulated cloud); this module only decides when.
//!
//! Over 400 lines on purpose: create, update, delete and their rollbacks are one state machine
//! over the same stack state, and read best in one place.
//!
//! - Create: rules first (a failed assertion stops the stack before anything exists); then
//!   every resource whose dependencies are complete starts, in an order shuffled by the seed,
//!   all of them in parallel. The first failure stops new starts, waits for the running ones,
//!   then deletes everything that was created (and the failed resource, with the physical ID its
//!   failure carried), in reverse dependency order.
//! - Update: in dependency order, a resource whose properties changed gets an update, a new one
//!   a create, an unchanged one nothing; resources gone from the template, and the old physical
//!   ID of a replaced resource, are deleted last. A failure rolls the updated ones back to their
//!   old properties.
//! - Delete: a resource is deleted once everything that depends on it is, in parallel.

use crate::cfn::{check_rules, Graph};
use crate::template::{substitute, Rendering};
use futures::future::LocalBoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// What a resource reports once its create or update is complete.
#[derive(Debug, Clone, Default)]
pub struct Complete {
    pub physical_id: String,
    /// `Fn::GetAtt` values by attribute name.
    pub attributes: BTreeMap<String, String>,
}

/// A failed create or update: the reason, and the physical ID the failure carried (a custom
/// resource's FAILED answer has one; CloudFormation deletes it in the rollback).
#[derive(Debug, Clone)]
pub struct Failure {
    pub physical_id: Option<String>,
    pub reason: String,
}

/// Carries out the work for each resource type.
pub trait Provider {
    fn create<'a>(
        &'a self,
        logical_id: &'a str,
        resource_type: &'a str,
        properties: Value,
    ) -> LocalBoxFuture<'a, Result<Complete, Failure>>;
    fn update<'a>(
        &'a self,
        logical_id: &'a str,
        resource_type: &'a str,
        physical_id: &'a str,
        properties: Value,
        old_properties: Value,
    ) -> LocalBoxFuture<'a, Result<Complete, Failure>>;
    fn delete<'a>(
        &'a self,
        logical_id: &'a str,
        resource_type: &'a str,
        physical_id: &'a str,
        properties: Value,
    ) -> LocalBoxFuture<'a, Result<(), String>>;
    /// The stack's status changed (what `DescribeStacks` reports from now on).
    fn stack_status(&self, _status: &str) {}
}

/// One resource operation as it happened: its start and end positions in the stack's event
/// sequence make a race visible.
#[derive(Debug, Clone)]
pub struct Operation {
    pub resource: String,
    pub action: &'static str,
    pub started: usize,
    pub ended: usize,
    pub outcome: Result<(), String>,
}

#[derive(Debug, Clone)]
struct Deployed {
    resource_type: String,
    physical_id: String,
    properties: Value,
}

/// A stack: what is deployed, and every operation so far.
pub struct Stack {
    template: Value,
    rendering: Option<Rendering>,
    graph: Option<Graph>,
    deployed: BTreeMap<String, Deployed>,
    clock: usize,
    account_id: Option<String>,
    pub operations: Vec<Operation>,
}

/// How a stack operation ended, in CloudFormation's words.
#[derive(Debug, Clone, PartialEq)]
pub enum StackStatus {
    CreateComplete,
    /// Refused before anything was created (template or rule error).
    Refused(String),
    RollbackComplete(String),
    RollbackFailed(String),
    UpdateComplete,
    UpdateRollbackComplete(String),
    DeleteComplete,
    DeleteFailed(String),
}

type Running<'a> = FuturesUnordered<LocalBoxFuture<'a, (String, usize, Outcome)>>;

enum Outcome {
    Done(Result<Complete, Failure>),
    Deleted(Result<(), String>),
}

impl Stack {
    pub fn new(template: Value) -> Stack {
        Stack {
            template,
            rendering: None,
            graph: None,
            deployed: BTreeMap::new(),
            clock: 0,
            account_id: None,
            operations: Vec::new(),
        }
    }

    /// The account the stack is deployed in (`AWS::AccountId`).
    pub fn set_account(&mut self, account_id: &str) {
        self.account_id = Some(account_id.to_string());
    }

    /// A `Fn::GetAtt` value of a deployed resource.
    pub fn attribute(&self, logical_id: &str, key: &str) -> Option<String> {
        self.rendering
            .as_ref()?
            .attributes
            .get(&(logical_id.to_string(), key.to_string()))
            .cloned()
    }

    /// The parameters as CloudFormation takes them: the given ones, the rest their defaults.
    fn rendering_for(&self, overrides: &[(&str, &str)]) -> Result<Rendering, String> {
        let account = self.account_id.as_deref().unwrap_or("111111111111");
        Rendering::deployed(&self.template, overrides, account)
    }

    pub fn template(&self) -> &Value {
        &self.template
    }

    /// Physical IDs of what is deployed now.
    pub fn physical_ids(&self) -> BTreeMap<String, String> {
        self.deployed
            .iter()
            .map(|(k, v)| (k.clone(), v.physical_id.clone()))
            .collect()
    }

    fn tick(&mut self) -> usize {
        self.clock += 1;
        self.clock
    }

    fn resource_type(&self, logical_id: &str) -> String {
        self.template["Resources"][logical_id]["Type"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn properties(&self, rendering: &Rendering, logical_id: &str) -> Value {
        substitute(
            &self.template["Resources"][logical_id]["Properties"],
            rendering,
        )
        .unwrap_or(Value::Null)
    }

    fn record(
        &mut self,
        resource: &str,
        action: &'static str,
        started: usize,
        outcome: Result<(), String>,
    ) {
        let ended = self.tick();
        self.operations.push(Operation {
            resource: resource.to_string(),
            action,
            started,
            ended,
            outcome,
        });
    }

    fn learn(rendering: &mut Rendering, logical_id: &str, complete: &Complete) {
        rendering.attributes.insert(
            (logical_id.to_string(), "Ref".to_string()),
            complete.physical_id.clone(),
        );
        for (k, v) in &complete.attributes {
            rendering
                .attributes
                .insert((logical_id.to_string(), k.clone()), v.clone());
        }
    }

    /// Creates the stack with these parameters.
    pub async fn create(
        &mut self,
        provider: &dyn Provider,
        overrides: &[(&str, &str)],
        seed: u64,
    ) -> StackStatus {
        assert!(self.deployed.is_empty(), "the stack exists already");
        let mut rendering = match self.rendering_for(overrides) {
            Ok(rendering) => rendering,
            Err(why) => return StackStatus::Refused(why),
        };
        if let Err(why) = check_rules(&self.template, &rendering.params) {
            return StackStatus::Refused(why);
        }
        let graph = Graph::new(&self.template, &rendering);
        graph.assert_acyclic();
        provider.stack_status("CREATE_IN_PROGRESS");
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut pending: BTreeSet<String> = graph.deps.keys().cloned().collect();
        let mut complete: BTreeSet<String> = BTreeSet::new();
        let mut failure: Option<String> = None;
        let mut running: Running = FuturesUnordered::new();
        loop {
            if failure.is_none() {
                for name in ready(&graph, &pending, &complete, &mut rng) {
                    pending.remove(&name);
                    let props = self.properties(&rendering, &name);
                    let kind = self.resource_type(&name);
                    let started = self.tick();
                    self.deployed.insert(
                        name.clone(),
                        Deployed {
                            resource_type: kind.clone(),
                            physical_id: String::new(),
                            properties: props.clone(),
                        },
                    );
                    running.push(Box::pin(async move {
                        let result = provider.create(&name, &kind, props).await;
                        (name, started, Outcome::Done(result))
                    }));
                }
            }
            let Some((name, started, Outcome::Done(result))) = running.next().await else {
                break;
            };
            match result {
                Ok(done) => {
                    Self::learn(&mut rendering, &name, &done);
                    self.deployed.get_mut(&name).expect("started").physical_id = done.physical_id;
                    complete.insert(name.clone());
                    self.record(&name, "CREATE", started, Ok(()));
                }
                Err(f) => {
                    match f.physical_id {
                        Some(id) => self.deployed.get_mut(&name).expect("started").physical_id = id,
                        None => {
                            self.deployed.remove(&name);
                        }
                    }
                    failure.get_or_insert(format!("{name}: {}", f.reason));
                    self.record(&name, "CREATE", started, Err(f.reason));
                }
            }
        }
        self.rendering = Some(rendering);
        self.graph = Some(graph);
        match failure {
            None => {
                provider.stack_status("CREATE_COMPLETE");
                StackStatus::CreateComplete
            }
            Some(why) => {
                provider.stack_status("ROLLBACK_IN_PROGRESS");
                let status = match self.delete_all(provider, seed, "ROLLBACK-DELETE").await {
                    Ok(()) => StackStatus::RollbackComplete(why),
                    Err(e) => StackStatus::RollbackFailed(format!("{why}; then {e}")),
                };
                provider.stack_status("ROLLBACK_COMPLETE");
                status
            }
        }
    }

    /// Updates the stack to these parameters.
    pub async fn update(
        &mut self,
        provider: &dyn Provider,
        overrides: &[(&str, &str)],
        seed: u64,
    ) -> StackStatus {
        let mut rendering = match self.rendering_for(overrides) {
            Ok(rendering) => rendering,
            Err(why) => return StackStatus::Refused(why),
        };
        if let Err(why) = check_rules(&self.template, &rendering.params) {
            return StackStatus::Refused(why);
        }
        let graph = Graph::new(&self.template, &rendering);
        graph.assert_acyclic();
        let before = self.deployed.clone();
        provider.stack_status("UPDATE_IN_PROGRESS");
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut pending: BTreeSet<String> = graph.deps.keys().cloned().collect();
        let mut complete: BTreeSet<String> = BTreeSet::new();
        let mut updated: Vec<String> = Vec::new();
        let mut replaced: Vec<(String, Deployed)> = Vec::new();
        let mut failure: Option<String> = None;
        // Known attributes carry over: unchanged resources keep theirs.
        if let Some(old) = &self.rendering {
            rendering.attributes = old.attributes.clone();
        }
        let mut running: Running = FuturesUnordered::new();
        loop {
            if failure.is_none() {
                for name in ready(&graph, &pending, &complete, &mut rng) {
                    pending.remove(&name);
                    let props = self.properties(&rendering, &name);
                    let kind = self.resource_type(&name);
                    match before.get(&name).cloned() {
                        Some(old) if old.properties == props => {
                            complete.insert(name.clone());
                        }
                        Some(old) => {
                            let started = self.tick();
                            updated.push(name.clone());
                            running.push(Box::pin(async move {
                                let result = provider
                                    .update(&name, &kind, &old.physical_id, props, old.properties)
                                    .await;
                                (name, started, Outcome::Done(result))
                            }));
                        }
                        None => {
                            let started = self.tick();
                            running.push(Box::pin(async move {
                                let result = provider.create(&name, &kind, props).await;
                                (name, started, Outcome::Done(result))
                            }));
                        }
                    }
                }
                if running.is_empty() && !pending.is_empty() {
                    // Unchanged resources completed at once: look again.
                    continue;
                }
            }
            let Some((name, started, Outcome::Done(result))) = running.next().await else {
                break;
            };
            let action = if before.contains_key(&name) {
                "UPDATE"
            } else {
                "CREATE"
            };
            match result {
                Ok(done) => {
                    Self::learn(&mut rendering, &name, &done);
                    let props = self.properties(&rendering, &name);
                    if let Some(old) = before.get(&name) {
                        if old.physical_id != done.physical_id {
                            replaced.push((name.clone(), old.clone()));
                        }
                    }
                    self.deployed.insert(
                        name.clone(),
                        Deployed {
                            resource_type: self.resource_type(&name),
                            physical_id: done.physical_id,
                            properties: props,
                        },
                    );
                    complete.insert(name.clone());
                    self.record(&name, action, started, Ok(()));
                }
                Err(f) => {
                    failure.get_or_insert(format!("{name}: {}", f.reason));
                    self.record(&name, action, started, Err(f.reason));
                }
            }
        }
        if let Some(why) = failure {
            provider.stack_status("UPDATE_ROLLBACK_IN_PROGRESS");
            self.roll_back_update(provider, &before, &updated).await;
            provider.stack_status("UPDATE_ROLLBACK_COMPLETE");
            return StackStatus::UpdateRollbackComplete(why);
        }
        provider.stack_status("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS");
        self.clean_up_update(provider, &before, replaced, &graph)
            .await;
        self.rendering = Some(rendering);
        self.graph = Some(graph);
        provider.stack_status("UPDATE_COMPLETE");
        StackStatus::UpdateComplete
    }

    /// UPDATE_ROLLBACK: what was updated goes back to its old properties, in reverse order.
    async fn roll_back_update(
        &mut self,
        provider: &dyn Provider,
        before: &BTreeMap<String, Deployed>,
        updated: &[String],
    ) {
        for name in updated.iter().rev() {
            let Some(old) = before.get(name) else {
                continue;
            };
            let now = self.deployed[name].clone();
            if now.properties == old.properties {
                continue;
            }
            let started = self.tick();
            let result = provider
                .update(
                    name,
                    &old.resource_type,
                    &now.physical_id,
                    old.properties.clone(),
                    now.properties,
                )
                .await;
            self.record(
                name,
                "ROLLBACK-UPDATE",
                started,
                result.map(|_| ()).map_err(|f| f.reason),
            );
            self.deployed.insert(name.clone(), old.clone());
        }
    }

    /// Cleanup after a successful Update: old physical IDs of replaced resources, and
    /// resources no longer in the stack.
    async fn clean_up_update(
        &mut self,
        provider: &dyn Provider,
        before: &BTreeMap<String, Deployed>,
        replaced: Vec<(String, Deployed)>,
        graph: &Graph,
    ) {
        for (name, old) in replaced {
            let started = self.tick();
            let result = provider
                .delete(&name, &old.resource_type, &old.physical_id, old.properties)
                .await;
            self.record(&name, "DELETE-REPLACED", started, result);
        }
        let gone: Vec<String> = before.keys().filter(|n| !graph.has(n)).cloned().collect();
        for name in gone {
            if let Some(old) = self.deployed.remove(&name) {
                let started = self.tick();
                let result = provider
                    .delete(&name, &old.resource_type, &old.physical_id, old.properties)
                    .await;
                self.record(&name, "DELETE", started, result);
            }
        }
    }

    /// Deletes the stack.
    pub async fn delete(&mut self, provider: &dyn Provider, seed: u64) -> StackStatus {
        provider.stack_status("DELETE_IN_PROGRESS");
        let status = match self.delete_all(provider, seed, "DELETE").await {
            Ok(()) => StackStatus::DeleteComplete,
            Err(e) => StackStatus::DeleteFailed(e),
        };
        provider.stack_status(match status {
            StackStatus::DeleteComplete => "DELETE_COMPLETE",
            _ => "DELETE_FAILED",
        });
        status
    }

    /// Deletes every deployed resource once everything depending on it is deleted.
    async fn delete_all(
        &mut self,
        provider: &dyn Provider,
        seed: u64,
        action: &'static str,
    ) -> Result<(), String> {
        let graph = self.graph.clone().expect("a deployed stack has a graph");
        let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(1));
        let mut left: BTreeSet<String> = self.deployed.keys().cloned().collect();
        let mut deleting: BTreeSet<String> = BTreeSet::new();
        let mut errors = Vec::new();
        let mut running: Running = FuturesUnordered::new();
        loop {
            let mut ready: Vec<String> = left
                .iter()
                .filter(|r| !deleting.contains(*r))
                .filter(|r| graph.dependents(r).iter().all(|d| !left.contains(d)))
                .cloned()
                .collect();
            if !errors.is_empty() {
                ready.clear(); // DELETE_FAILED: what depends on a failure stays
            }
            rng.shuffle(&mut ready);
            for name in ready {
                deleting.insert(name.clone());
                let d = self.deployed[&name].clone();
                let started = self.tick();
                running.push(Box::pin(async move {
                    let result = provider
                        .delete(&name, &d.resource_type, &d.physical_id, d.properties)
                        .await;
                    (name, started, Outcome::Deleted(result))
                }));
            }
            let Some((name, started, Outcome::Deleted(result))) = running.next().await else {
                break;
            };
            if let Err(e) = &result {
                errors.push(format!("{name}: {e}"));
            } else {
                left.remove(&name);
                self.deployed.remove(&name);
            }
            self.record(&name, action, started, result);
        }
        match errors.is_empty() {
            true => Ok(()),
            false => Err(errors.join("; ")),
        }
    }

    /// "start..end resource ACTION" lines, in start order: the report that shows a race.
    pub fn timeline(&self, since: usize) -> Vec<String> {
        let mut ops: Vec<&Operation> = self.operations[since..].iter().collect();
        ops.sort_by_key(|o| o.started);
        ops.iter()
            .map(|o| {
                format!(
                    "{:>3}..{:<3} {:<16} {}{}",
                    o.started,
                    o.ended,
                    o.action,
                    o.resource,
                    match &o.outcome {
                        Ok(()) => String::new(),
                        Err(e) => format!(
                            "  FAILED: {}",
                            custom_resource::response::truncate_utf8(e, 160)
                        ),
                    }
                )
            })
            .collect()
    }
}

/// The pending resources whose dependencies are all complete, in an order shuffled by the
/// seed: CloudFormation starts them together, in no documented order.
fn ready(
    graph: &Graph,
    pending: &BTreeSet<String>,
    complete: &BTreeSet<String>,
    rng: &mut fastrand::Rng,
) -> Vec<String> {
    let mut ready: Vec<String> = pending
        .iter()
        .filter(|r| graph.deps[*r].iter().all(|d| complete.contains(d)))
        .cloned()
        .collect();
    rng.shuffle(&mut ready);
    ready
}
