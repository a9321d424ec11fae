//! EventBridge as the local deploy needs it, for what moto does not do (its rules neither
//! invoke a Lambda function nor check a target's role or a bus's policy): event buses and their
//! resource policies, rules with event patterns and input transformers on the default bus of
//! any account and region or on a custom bus, Lambda permissions, and the delivery of the
//! CloudTrail events the fake EKS records, after a seeded delay, through every rule they match.
//!
//! Delivery follows EventBridge's documented rules
//! (<https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-cross-account.html>): a rule
//! that sends to an event bus needs a role, which EventBridge must be trusted to assume in the
//! rule's account and whose policies must allow `events:PutEvents` on that bus; another
//! account's bus must also admit that role by its resource policy (here with the condition keys
//! `aws:PrincipalOrgID`, `aws:PrincipalArn`, `aws:PrincipalAccount`); a rule may invoke a
//! function only where a Lambda permission names the rule as its source. Every attempt is
//! logged with its outcome, so a check can tell a refused event from one never sent.

use crate::fake_eks::CloudTrailEvent;
use crate::lambda::Function;
use serde_json::Value;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A rule on a bus of some account and region.
#[derive(Debug, Clone)]
pub(super) struct Rule {
    pub(super) bus_arn: String,
    pub(super) pattern: Value,
    pub(super) targets: Vec<Value>,
}

/// One delivery attempt: a rule's target given an event, or an event put on a bus.
#[derive(Debug, Clone)]
pub(super) struct Delivery {
    /// The cluster the event names (`detail.requestParameters.name`).
    pub(super) cluster: String,
    pub(super) event_name: String,
    /// Where the event came from: `account/region`.
    pub(super) from: String,
    /// The rule (or, for a direct put, the principal) and the target.
    pub(super) via: String,
    pub(super) to: String,
    pub(super) outcome: Result<(), String>,
}

impl Delivery {
    /// One line for the run's output.
    pub(super) fn line(&self) -> String {
        format!(
            "EventBridge: {} {} from {}: {} -> {}: {}",
            self.event_name,
            self.cluster,
            self.from,
            short(&self.via),
            short(&self.to),
            match &self.outcome {
                Ok(()) => "delivered".to_string(),
                Err(why) => format!("refused ({why})"),
            }
        )
    }
}

/// An ARN without its partition and service prefix (`events:us-east-1:1111:rule/x`).
fn short(arn: &str) -> &str {
    arn.splitn(3, ':').nth(2).unwrap_or(arn)
}

#[derive(Default)]
struct State {
    /// Custom buses by ARN, with their policy statements by statement ID.
    buses: BTreeMap<String, BTreeMap<String, Value>>,
    rules: BTreeMap<String, Rule>,
    /// (function ARN, principal, source ARN) by the permission's physical ID.
    permissions: BTreeMap<String, (String, String, String)>,
    log: Vec<Delivery>,
}

/// The model: cheap to clone (delivery runs in tasks of its own).
#[derive(Clone)]
pub(super) struct EventBridge {
    state: Arc<Mutex<State>>,
    functions: Arc<Mutex<BTreeMap<String, Arc<Function>>>>,
    moto: String,
    /// Account -> organization, for `aws:PrincipalOrgID`.
    organization_of: Arc<BTreeMap<String, String>>,
    /// How long CloudTrail takes to hand an event to EventBridge.
    delay: Range<Duration>,
}

/// The ARN of the default bus of an account and region.
pub(super) fn default_bus(account: &str, region: &str) -> String {
    format!("arn:aws:events:{region}:{account}:event-bus/default")
}

impl EventBridge {
    pub(super) fn new(
        moto: &str,
        functions: Arc<Mutex<BTreeMap<String, Arc<Function>>>>,
        organization_of: BTreeMap<String, String>,
        delay: Range<Duration>,
    ) -> EventBridge {
        EventBridge {
            state: Arc::default(),
            functions,
            moto: moto.to_string(),
            organization_of: Arc::new(organization_of),
            delay,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Delivers every event the fake EKS records, each after CloudTrail's delay, until the
    /// sender is dropped.
    pub(super) fn listen(&self, mut trail: tokio::sync::mpsc::UnboundedReceiver<CloudTrailEvent>) {
        let bridge = self.clone();
        tokio::spawn(async move {
            while let Some(recorded) = trail.recv().await {
                let bridge = bridge.clone();
                let delay = crate::fake_eks::within(&bridge.delay);
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let bus = default_bus(&recorded.account, &recorded.region);
                    bridge.deliver(bus, recorded.event, 0).await;
                });
            }
        });
    }

    pub(super) fn put_bus(&self, arn: &str) {
        self.with(|s| {
            s.buses.entry(arn.to_string()).or_default();
        });
    }

    pub(super) fn delete_bus(&self, arn: &str) {
        self.with(|s| s.buses.remove(arn));
    }

    /// A statement of a bus's resource policy (`AWS::Events::EventBusPolicy`).
    pub(super) fn put_bus_statement(
        &self,
        bus_arn: &str,
        id: &str,
        statement: Value,
    ) -> Result<(), String> {
        self.with(|s| match s.buses.get_mut(bus_arn) {
            Some(policy) => {
                policy.insert(id.to_string(), statement);
                Ok(())
            }
            None => Err(format!(
                "ResourceNotFoundException: event bus {bus_arn} does not exist"
            )),
        })
    }

    pub(super) fn delete_bus_statement(&self, bus_arn: &str, id: &str) {
        self.with(|s| s.buses.get_mut(bus_arn).map(|p| p.remove(id)));
    }

    /// A rule: its event pattern must be one this model can evaluate, as EventBridge refuses a
    /// pattern it cannot parse.
    pub(super) fn put_rule(&self, arn: &str, rule: Rule) -> Result<(), String> {
        matches(&rule.pattern, &Value::Null)
            .map_err(|e| format!("InvalidEventPatternException: {e}"))?;
        let bus_known = rule.bus_arn.ends_with("/default")
            || self.with(|s| s.buses.contains_key(&rule.bus_arn));
        if !bus_known {
            return Err(format!(
                "ResourceNotFoundException: event bus {} does not exist",
                rule.bus_arn
            ));
        }
        self.with(|s| s.rules.insert(arn.to_string(), rule));
        Ok(())
    }

    pub(super) fn delete_rule(&self, arn: &str) {
        self.with(|s| s.rules.remove(arn));
    }

    /// Rules whose ARN starts with `prefix`.
    pub(super) fn rules_like(&self, prefix: &str) -> Vec<String> {
        self.with(|s| {
            s.rules
                .keys()
                .filter(|arn| arn.starts_with(prefix))
                .cloned()
                .collect()
        })
    }

    pub(super) fn buses(&self) -> Vec<String> {
        self.with(|s| s.buses.keys().cloned().collect())
    }

    pub(super) fn put_permission(&self, id: &str, function: &str, principal: &str, source: &str) {
        self.with(|s| {
            s.permissions.insert(
                id.to_string(),
                (function.into(), principal.into(), source.into()),
            )
        });
    }

    pub(super) fn delete_permission(&self, id: &str) {
        self.with(|s| s.permissions.remove(id));
    }

    /// Whether `source` (a rule) may invoke `function`.
    pub(super) fn may_invoke(&self, function: &str, source: &str) -> bool {
        self.with(|s| {
            s.permissions.values().any(|(f, principal, from)| {
                f == function && principal == "events.amazonaws.com" && from == source
            })
        })
    }

    /// Every delivery attempt so far.
    pub(super) fn log(&self) -> Vec<Delivery> {
        self.with(|s| s.log.clone())
    }

    fn note(&self, event: &Value, via: &str, to: &str, outcome: Result<(), String>) {
        let delivery = Delivery {
            cluster: event["detail"]["requestParameters"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            event_name: event["detail"]["eventName"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            from: format!(
                "{}/{}",
                event["account"].as_str().unwrap_or_default(),
                event["region"].as_str().unwrap_or_default()
            ),
            via: via.to_string(),
            to: to.to_string(),
            outcome,
        };
        self.with(|s| s.log.push(delivery));
    }

    /// `principal` (a role of `account`) puts `event` on `bus_arn` itself, as PutEvents: the
    /// bus's policy decides, and EventBridge keeps `aws.` sources for AWS's own events.
    pub(super) async fn put_events_as(
        &self,
        principal: &str,
        account: &str,
        bus_arn: &str,
        event: Value,
    ) {
        if event["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("aws."))
        {
            let why = "NotAuthorizedForSourceException: sources starting with aws. are AWS's own";
            return self.note(&event, principal, bus_arn, Err(why.into()));
        }
        if let Err(why) = self.bus_admits(bus_arn, principal, account) {
            return self.note(&event, principal, bus_arn, Err(why));
        }
        self.note(&event, principal, bus_arn, Ok(()));
        Box::pin(self.deliver(bus_arn.to_string(), event, 1)).await;
    }

    /// An event arriving on a bus: every rule there whose pattern matches sends it to each of
    /// its targets (at most one bus-to-bus hop, as EventBridge allows).
    async fn deliver(&self, bus_arn: String, event: Value, hops: usize) {
        let rules: Vec<(String, Rule)> = self.with(|s| {
            s.rules
                .iter()
                .filter(|(_, r)| r.bus_arn == bus_arn)
                .map(|(arn, r)| (arn.clone(), r.clone()))
                .collect()
        });
        for (rule_arn, rule) in rules {
            if !matches(&rule.pattern, &event).unwrap_or(false) {
                continue;
            }
            for target in &rule.targets {
                let to = target["Arn"].as_str().unwrap_or_default().to_string();
                if to.contains(":lambda:") {
                    let outcome = self.invoke(&rule_arn, &to, target, &event);
                    self.note(&event, &rule_arn, &to, outcome);
                } else if to.contains(":event-bus/") {
                    let outcome = match hops {
                        0 => self.forward(&rule_arn, &to, target).await,
                        _ => Err("an event forwarded once is not forwarded again".into()),
                    };
                    let forwarded = outcome.is_ok();
                    self.note(&event, &rule_arn, &to, outcome);
                    if forwarded {
                        Box::pin(self.deliver(to, event.clone(), hops + 1)).await;
                    }
                } else {
                    self.note(
                        &event,
                        &rule_arn,
                        &to,
                        Err("target type not modelled".into()),
                    );
                }
            }
        }
    }

    /// A rule's Lambda target: permitted, its input transformed, invoked asynchronously.
    fn invoke(
        &self,
        rule_arn: &str,
        function_arn: &str,
        target: &Value,
        event: &Value,
    ) -> Result<(), String> {
        if !self.may_invoke(function_arn, rule_arn) {
            return Err(format!(
                "AccessDeniedException: no Lambda permission lets {rule_arn} invoke {function_arn}"
            ));
        }
        let input = transform(target, event)?;
        let function = self
            .functions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(function_arn)
            .cloned()
            .ok_or_else(|| format!("ResourceNotFoundException: function {function_arn}"))?;
        function.enqueue(input);
        Ok(())
    }

    /// A rule's event-bus target: its role, trusted by EventBridge in the rule's account and
    /// allowed PutEvents on the bus; another account's bus must admit the role too.
    async fn forward(&self, rule_arn: &str, bus_arn: &str, target: &Value) -> Result<(), String> {
        let rule_account = rule_arn.split(':').nth(4).unwrap_or_default().to_string();
        let role_arn = target["RoleArn"].as_str().ok_or(
            "a rule that sends to an event bus needs a RoleArn (EventBridge cross-account)",
        )?;
        if role_arn.split(':').nth(4) != Some(rule_account.as_str()) {
            return Err(format!(
                "the target's role {role_arn} is not in the rule's account"
            ));
        }
        let (trust, policies) = self.role(role_arn).await?;
        let context = [
            ("aws:SourceAccount", rule_account.as_str()),
            ("aws:SourceArn", rule_arn),
        ];
        if !crate::iam::trusts_service(&trust, "events.amazonaws.com", &context) {
            return Err(format!(
                "{role_arn} does not trust events.amazonaws.com for this rule"
            ));
        }
        if !crate::iam::allows(&policies, "events:PutEvents", bus_arn, &[]) {
            return Err(format!(
                "{role_arn} is not allowed events:PutEvents on {bus_arn}"
            ));
        }
        let bus_account = bus_arn.split(':').nth(4).unwrap_or_default();
        if !self.with(|s| s.buses.contains_key(bus_arn)) {
            return Err(format!(
                "ResourceNotFoundException: event bus {bus_arn} does not exist"
            ));
        }
        if bus_account != rule_account {
            self.bus_admits(bus_arn, role_arn, &rule_account)?;
        }
        Ok(())
    }

    /// Whether the bus's resource policy admits `principal` of `account` to PutEvents.
    fn bus_admits(&self, bus_arn: &str, principal: &str, account: &str) -> Result<(), String> {
        let statements: Vec<Value> = self.with(|s| {
            s.buses
                .get(bus_arn)
                .map(|p| p.values().cloned().collect())
                .unwrap_or_default()
        });
        let org = self
            .organization_of
            .get(account)
            .cloned()
            .unwrap_or_default();
        let mut context = vec![
            ("aws:PrincipalArn", principal),
            ("aws:PrincipalAccount", account),
        ];
        if !org.is_empty() {
            context.push(("aws:PrincipalOrgID", org.as_str()));
        }
        match crate::iam::resource_policy_allows(
            &statements,
            principal,
            account,
            "events:PutEvents",
            bus_arn,
            &context,
        ) {
            true => Ok(()),
            false => Err(format!(
                "AccessDeniedException: the policy of {bus_arn} does not admit {principal}"
            )),
        }
    }

    /// A role's trust policy and inline policies, as moto holds them.
    async fn role(&self, arn: &str) -> Result<(Value, Vec<Value>), String> {
        let data: Value = reqwest::get(format!(
            "{}/moto-api/data.json?service=iam&service=sts",
            self.moto
        ))
        .await
        .map_err(|e| format!("moto: {e}"))?
        .json()
        .await
        .map_err(|e| format!("moto: {e}"))?;
        let role = data["iam"]["Role"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["arn"] == arn)
            .ok_or_else(|| format!("NoSuchEntity: role {arn} does not exist"))?;
        let document = |doc: &Value| match doc {
            Value::String(text) => serde_json::from_str(text).ok(),
            object => Some(object.clone()),
        };
        let trust = document(&role["assume_role_policy_document"]).unwrap_or(Value::Null);
        let policies = role["policies"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, doc)| document(doc))
            .collect();
        Ok((trust, policies))
    }
}

/// Whether `event` matches an EventBridge event pattern. The matching this model knows: exact
/// values (of a field or any element of an array field), `exists` and `prefix`; any other
/// filter is an error rather than a silent match.
pub(super) fn matches(pattern: &Value, event: &Value) -> Result<bool, String> {
    let fields = pattern
        .as_object()
        .ok_or_else(|| format!("a pattern is an object, not {pattern}"))?;
    let mut all = true;
    for (key, filter) in fields {
        let value = event.get(key).unwrap_or(&Value::Null);
        let matched = match filter {
            Value::Object(_) => matches(filter, value)?,
            Value::Array(filters) => {
                let mut any = false;
                for f in filters {
                    any |= matches_filter(f, value)?;
                }
                any
            }
            other => {
                return Err(format!(
                    "{key}: a filter is an array or an object, not {other}"
                ))
            }
        };
        all &= matched;
    }
    Ok(all)
}

fn matches_filter(filter: &Value, value: &Value) -> Result<bool, String> {
    let values: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => vec![],
        one => vec![one],
    };
    match filter {
        Value::Object(named) => match named.iter().next() {
            Some((name, arg)) if name == "exists" && named.len() == 1 => {
                let exists = arg.as_bool().ok_or("exists takes true or false")?;
                let present = !values.is_empty();
                Ok(exists == present)
            }
            Some((name, arg)) if name == "prefix" && named.len() == 1 => {
                let prefix = arg.as_str().ok_or("prefix takes a string")?;
                Ok(values
                    .iter()
                    .any(|v| v.as_str().is_some_and(|s| s.starts_with(prefix))))
            }
            _ => Err(format!("the filter {filter} is not modelled")),
        },
        scalar => Ok(values.contains(&scalar)),
    }
}

/// A target's input: the event itself, or its `InputTransformer` applied.
pub(super) fn transform(target: &Value, event: &Value) -> Result<Value, String> {
    let transformer = &target["InputTransformer"];
    if transformer.is_null() {
        return Ok(event.clone());
    }
    let mut text = transformer["InputTemplate"]
        .as_str()
        .ok_or("an InputTransformer needs an InputTemplate")?
        .to_string();
    for (name, path) in transformer["InputPathsMap"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let path = path.as_str().unwrap_or_default();
        let value = path
            .strip_prefix("$.")
            .ok_or_else(|| format!("InputPathsMap {name}: {path} is not a JSON path"))?
            .split('.')
            .try_fold(event, |v, key| v.get(key))
            .cloned()
            .unwrap_or(Value::Null);
        // A string goes in as it is (the template quotes it), anything else as JSON.
        let inserted = match &value {
            Value::String(s) => {
                let quoted = serde_json::to_string(s).expect("a string serializes");
                quoted[1..quoted.len() - 1].to_string()
            }
            other => other.to_string(),
        };
        text = text.replace(&format!("<{name}>"), &inserted);
    }
    serde_json::from_str(&text).map_err(|e| format!("the InputTemplate does not make JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cluster_events() -> Value {
        json!({"source": ["aws.eks"], "detail-type": ["AWS API Call via CloudTrail"],
            "detail": {"eventSource": ["eks.amazonaws.com"],
                "eventName": ["CreateCluster", "UpdateClusterConfig"],
                "errorCode": [{"exists": false}]}})
    }

    fn event(name: &str, error: Option<&str>) -> Value {
        let mut e = json!({"source": "aws.eks", "detail-type": "AWS API Call via CloudTrail",
            "account": "111111111111", "region": "eu-west-1", "time": "2026-12-01T19:14:34Z",
            "detail": {"eventSource": "eks.amazonaws.com", "eventName": name,
                "requestParameters": {"name": "prod"}}});
        if let Some(code) = error {
            e["detail"]["errorCode"] = json!(code);
        }
        e
    }

    #[test]
    fn the_cluster_pattern_takes_successful_creates_and_updates_only() {
        let p = cluster_events();
        assert!(matches(&p, &event("CreateCluster", None)).unwrap());
        assert!(matches(&p, &event("UpdateClusterConfig", None)).unwrap());
        assert!(!matches(&p, &event("DeleteCluster", None)).unwrap());
        assert!(!matches(&p, &event("CreateCluster", Some("AccessDenied"))).unwrap());
        let mut other = event("CreateCluster", None);
        other["source"] = json!("aws.ec2");
        assert!(!matches(&p, &other).unwrap());
    }

    #[test]
    fn a_filter_the_model_does_not_know_is_an_error_not_a_match() {
        let p = json!({"detail": {"eventName": [{"anything-but": "x"}]}});
        assert!(matches(&p, &event("CreateCluster", None)).is_err());
    }

    #[test]
    fn the_input_transformer_fills_its_placeholders() {
        let target = json!({"InputTransformer": {
            "InputPathsMap": {"account": "$.account", "cluster": "$.detail.requestParameters.name"},
            "InputTemplate": "{\"ClusterEvent\": {\"Account\": \"<account>\", \"Cluster\": \"<cluster>\"}}"}});
        let input = transform(&target, &event("CreateCluster", None)).unwrap();
        assert_eq!(
            input,
            json!({"ClusterEvent": {"Account": "111111111111", "Cluster": "prod"}})
        );
    }
}
