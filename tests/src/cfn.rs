//! What CloudFormation does with a template before and while it deploys it, modelled where
//! cfn-lint and moto do not: the SAM transform, the closed list of rule functions in `Rules`,
//! rule assertions against the given parameters, and the dependency graph that decides what may
//! run in parallel and what must wait.
//!
//! CloudFormation's documented behaviour, in its own words:
//! - Rules: "Rule-specific intrinsic functions" lists the only functions allowed in `Rules`
//!   (<https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/rules-section-structure.html>);
//!   anything else fails the whole template with "Template format error: Following functions
//!   are not supported in the Rules block of the template".
//! - Order: `DependsOn`, `Ref`, `Fn::GetAtt` and `Fn::Sub` references make dependencies; every
//!   resource whose dependencies are complete is created in parallel with the others, and a
//!   Delete runs in reverse order (`DependsOn` attribute documentation).
//! - Where AWS does not document the behaviour (a reference inside the untaken branch of
//!   `Fn::If`) the model takes the strict reading: only the taken branch orders anything.

use crate::template::Rendering;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The functions CloudFormation accepts inside `Rules`; anything else is a template format error.
pub const RULE_FUNCTIONS: &[&str] = &[
    "Fn::And",
    "Fn::Contains",
    "Fn::EachMemberEquals",
    "Fn::EachMemberIn",
    "Fn::Equals",
    "Fn::If",
    "Fn::Not",
    "Fn::Or",
    "Fn::RefAll",
    "Fn::ValueOf",
    "Fn::ValueOfAll",
    "Ref",
];

/// `file` as CloudFormation receives it from `sam deploy`: after the SAM transform (the pinned
/// samtranslator, offline), as JSON.
pub fn transformed_template(file: &str) -> Value {
    transformed_template_in(file, "us-east-1")
}

/// As [`transformed_template`], transformed in `region`: CloudFormation runs the SAM transform
/// in the stack's region, and its ARNs name that region's partition.
pub fn transformed_template_in(file: &str, region: &str) -> Value {
    crate::template::python_json_in(
        "scripts/sam_transform.py",
        &crate::workspace_root().join(file),
        region,
    )
}

/// The functions used in `Rules` that CloudFormation refuses, with where they are.
pub fn unsupported_rule_functions(template: &Value) -> Vec<String> {
    fn walk(value: &Value, at: &str, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    let is_function = key.starts_with("Fn::") || key == "Ref" || key == "Condition";
                    if is_function && !RULE_FUNCTIONS.contains(&key.as_str()) {
                        out.push(format!("{key} at {at}"));
                    }
                    walk(inner, &format!("{at}/{key}"), out);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, &format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&template["Rules"], "Rules", &mut out);
    out
}

/// A parameter's value as rule functions see it: list types as lists (an empty
/// `CommaDelimitedList` is `[""]`), others as strings.
fn parameter(template: &Value, params: &BTreeMap<String, Value>, name: &str) -> RuleValue {
    let raw = match params.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
        None => panic!("rule refers to {name}, which is not a parameter"),
    };
    let kind = template["Parameters"][name]["Type"].as_str().unwrap_or("");
    if kind == "CommaDelimitedList" || kind.starts_with("List<") {
        RuleValue::List(raw.split(',').map(|s| s.trim().to_string()).collect())
    } else {
        RuleValue::Text(raw)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum RuleValue {
    Text(String),
    List(Vec<String>),
    Bool(bool),
}

fn rule_eval(template: &Value, params: &BTreeMap<String, Value>, expr: &Value) -> RuleValue {
    let eval = |e: &Value| rule_eval(template, params, e);
    let truth = |e: &Value| match eval(e) {
        RuleValue::Bool(b) => b,
        other => panic!("a rule condition gave {other:?}, not a boolean"),
    };
    let list = |e: &Value| match eval(e) {
        RuleValue::List(items) => items,
        RuleValue::Text(s) => vec![s],
        RuleValue::Bool(b) => vec![b.to_string()],
    };
    let text = |e: &Value| match eval(e) {
        RuleValue::Text(s) => s,
        other => panic!("a rule function wanted a string, got {other:?}"),
    };
    let Some((key, arg)) = expr.as_object().and_then(|m| m.iter().next()) else {
        return match expr {
            Value::String(s) => RuleValue::Text(s.clone()),
            Value::Array(items) => RuleValue::List(
                items
                    .iter()
                    .map(|i| i.as_str().unwrap_or_default().to_string())
                    .collect(),
            ),
            Value::Bool(b) => RuleValue::Bool(*b),
            other => RuleValue::Text(other.to_string()),
        };
    };
    RuleValue::Bool(match key.as_str() {
        "Ref" => return parameter(template, params, arg.as_str().unwrap_or_default()),
        "Fn::Equals" => eval(&arg[0]) == eval(&arg[1]),
        "Fn::Not" => !truth(&arg[0]),
        "Fn::And" => arg.as_array().into_iter().flatten().all(truth),
        "Fn::Or" => arg.as_array().into_iter().flatten().any(truth),
        "Fn::Contains" => list(&arg[0]).contains(&text(&arg[1])),
        "Fn::EachMemberEquals" => {
            let wanted = text(&arg[1]);
            list(&arg[0]).iter().all(|m| *m == wanted)
        }
        "Fn::EachMemberIn" => {
            let allowed = list(&arg[1]);
            list(&arg[0]).iter().all(|m| allowed.contains(m))
        }
        other => panic!("{other} in Rules needs AWS to evaluate (or is refused): not modelled"),
    })
}

/// Evaluates every rule as CloudFormation does before it creates anything: `Err` carries the
/// first failed assertion's `AssertDescription`.
pub fn check_rules(template: &Value, params: &BTreeMap<String, Value>) -> Result<(), String> {
    for (name, rule) in template["Rules"].as_object().into_iter().flatten() {
        let applies = rule
            .get("RuleCondition")
            .is_none_or(|c| rule_eval(template, params, c) == RuleValue::Bool(true));
        if !applies {
            continue;
        }
        for assertion in rule["Assertions"].as_array().into_iter().flatten() {
            if rule_eval(template, params, &assertion["Assert"]) != RuleValue::Bool(true) {
                let why = assertion["AssertDescription"]
                    .as_str()
                    .unwrap_or("(no AssertDescription)");
                return Err(format!("rule {name} failed: {why}"));
            }
        }
    }
    Ok(())
}

/// Which resources a stack with these parameters has, and what each waits for.
#[derive(Debug, Clone)]
pub struct Graph {
    /// Resource -> the resources it depends on directly (all of them in this stack).
    pub deps: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    /// The graph of `template` under `rendering`'s conditions. Panics on a reference to a
    /// resource the stack does not have, as CloudFormation refuses such a template.
    pub fn new(template: &Value, rendering: &Rendering) -> Graph {
        let resources = template["Resources"].as_object().expect("Resources");
        let present: BTreeSet<String> = resources
            .iter()
            .filter(|(_, r)| rendering.included(r))
            .map(|(name, _)| name.clone())
            .collect();
        let mut deps = BTreeMap::new();
        for name in &present {
            let resource = &resources[name];
            let mut found = BTreeSet::new();
            match &resource["DependsOn"] {
                Value::String(d) => {
                    found.insert(d.clone());
                }
                Value::Array(items) => {
                    found.extend(items.iter().filter_map(|d| d.as_str().map(str::to_string)));
                }
                _ => {}
            }
            references(&resource["Properties"], rendering, &mut found);
            found.retain(|d| template["Parameters"].get(d).is_none());
            for d in &found {
                assert!(
                    present.contains(d),
                    "{name} refers to {d}, which this stack does not have: CloudFormation \
                     refuses the template"
                );
            }
            deps.insert(name.clone(), found);
        }
        Graph { deps }
    }

    pub fn has(&self, resource: &str) -> bool {
        self.deps.contains_key(resource)
    }

    /// Whether `later` waits, directly or not, for `earlier` to complete.
    pub fn waits_for(&self, later: &str, earlier: &str) -> bool {
        let mut stack = vec![later.to_string()];
        let mut seen = BTreeSet::new();
        while let Some(next) = stack.pop() {
            for d in self.deps.get(&next).into_iter().flatten() {
                if d == earlier {
                    return true;
                }
                if seen.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }
        false
    }

    /// The resources that depend directly on `resource`.
    pub fn dependents(&self, resource: &str) -> Vec<String> {
        self.deps
            .iter()
            .filter(|(_, d)| d.contains(resource))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Panics with the cycle if the graph has one (CloudFormation: "Circular dependency").
    pub fn assert_acyclic(&self) {
        let mut left = self.deps.clone();
        while !left.is_empty() {
            let ready: Vec<String> = left
                .iter()
                .filter(|(_, d)| d.iter().all(|x| !left.contains_key(x)))
                .map(|(n, _)| n.clone())
                .collect();
            assert!(
                !ready.is_empty(),
                "circular dependency among {:?}",
                left.keys()
            );
            for n in ready {
                left.remove(&n);
            }
        }
    }
}

/// Resources referred to by `value` (Ref, GetAtt, Sub), following only the taken branch of
/// each `Fn::If`.
fn references(value: &Value, rendering: &Rendering, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) if map.len() == 1 => {
            let (key, arg) = map.iter().next().expect("one key");
            match key.as_str() {
                "Ref" => {
                    if let Some(name) = arg.as_str().filter(|n| !n.starts_with("AWS::")) {
                        out.insert(name.to_string());
                    }
                }
                "Fn::GetAtt" => {
                    let name = match arg {
                        Value::Array(a) => a[0].as_str().unwrap_or_default().to_string(),
                        Value::String(s) => s.split('.').next().unwrap_or_default().to_string(),
                        _ => String::new(),
                    };
                    out.insert(name);
                }
                "Fn::Sub" => {
                    let (text, vars) = match arg {
                        Value::String(s) => (s.as_str(), None),
                        Value::Array(a) => (a[0].as_str().unwrap_or_default(), a.get(1)),
                        _ => ("", None),
                    };
                    let locals: BTreeSet<&String> = vars
                        .and_then(Value::as_object)
                        .map(|m| m.keys().collect())
                        .unwrap_or_default();
                    for name in sub_names(text) {
                        if !name.starts_with("AWS::") && !locals.contains(&name) {
                            out.insert(name.split('.').next().unwrap_or_default().to_string());
                        }
                    }
                    if let Some(vars) = vars {
                        references(vars, rendering, out);
                    }
                }
                "Fn::If" => {
                    let condition = arg[0].as_str().unwrap_or_default();
                    let taken = rendering.conditions.get(condition).unwrap_or_else(|| {
                        panic!("Fn::If names condition {condition}, which does not exist")
                    });
                    references(&arg[if *taken { 1 } else { 2 }], rendering, out);
                }
                _ => references(arg, rendering, out),
            }
        }
        Value::Object(map) => map.values().for_each(|v| references(v, rendering, out)),
        Value::Array(items) => items.iter().for_each(|v| references(v, rendering, out)),
        _ => {}
    }
}

/// The `${Name}` and `${Resource.Attribute}` placeholders of a `Fn::Sub` string (not `${!Literal}`).
fn sub_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let name = &after[..end];
        if !name.starts_with('!') {
            names.push(name.trim().to_string());
        }
        rest = &after[end + 1..];
    }
    names
}

/// The IAM policy resources attached to `role` (a logical ID) in this stack.
pub fn policies_on_role(template: &Value, graph: &Graph, role: &str) -> Vec<String> {
    graph
        .deps
        .keys()
        .filter(|name| {
            let r = &template["Resources"][name.as_str()];
            r["Type"] == "AWS::IAM::Policy"
                && r["Properties"]["Roles"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|x| x.get("Ref").and_then(Value::as_str) == Some(role))
        })
        .cloned()
        .collect()
}

/// The role (logical ID) a Lambda function of this stack runs as.
pub fn function_role(template: &Value, function: &str) -> Option<String> {
    let role = &template["Resources"][function]["Properties"]["Role"]["Fn::GetAtt"];
    match role {
        Value::Array(a) => a[0].as_str().map(str::to_string),
        Value::String(s) => s.split('.').next().map(str::to_string),
        _ => None,
    }
}

/// The function (logical ID) behind a custom resource's `ServiceToken`.
pub fn service_token_function(resource: &Value) -> Option<String> {
    match &resource["Properties"]["ServiceToken"]["Fn::GetAtt"] {
        Value::Array(a) => a[0].as_str().map(str::to_string),
        Value::String(s) => s.split('.').next().map(str::to_string),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_names_skip_literals_and_keep_attributes() {
        assert_eq!(
            sub_names("arn:${AWS::Partition}:x:${Fn.Arn}/${!Literal}/${Name}"),
            ["AWS::Partition", "Fn.Arn", "Name"]
        );
    }
}
