//! template.yaml against the functions' own parsers: every `Custom::` resource's properties
//! (parameters substituted the way CloudFormation does) parse, and every `!GetAtt` of a custom
//! resource names a key that function returns.

use custom_resource::props::parse;
use custom_resource::Properties;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::process::Command;

type Check = fn(Value) -> Result<(), String>;

fn check<P: Properties>(value: Value) -> Result<(), String> {
    parse::<P>(value, P::SECRETS)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Each custom resource type, its parser and the `Data` keys it returns.
fn contract(resource_type: &str) -> Option<(Check, &'static [&'static str])> {
    match resource_type {
        "Custom::OrganizationInfo" => Some((check::<org_info::OrgInfoProps>, org_info::DATA_KEYS)),
        "Custom::AponoIntegration" => Some((
            check::<apono_integration::AponoProps>,
            apono_integration::DATA_KEYS,
        )),
        _ => None,
    }
}

fn template_json(file: &str) -> Value {
    let root = bench::workspace_root();
    let out = Command::new(bench::venv_tool("python"))
        .arg(root.join("scripts/template_json.py"))
        .arg(root.join(file))
        .output()
        .expect("run scripts/template_json.py (scripts/bootstrap.sh creates .venv)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Values a user would give, where the default is not what a typical install uses.
const SAMPLES: &[(&str, &str)] = &[("AponoConnectorId", "apono-connector-prod")];

/// What CloudFormation would pass for each parameter: a sample, its default, else its first
/// allowed value.
fn parameter_values(template: &Value) -> BTreeMap<String, Value> {
    let mut values = BTreeMap::new();
    for (name, spec) in template["Parameters"].as_object().into_iter().flatten() {
        let sample = SAMPLES
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| json!(v));
        let value = sample
            .as_ref()
            .or_else(|| spec.get("Default"))
            .or_else(|| spec["AllowedValues"].get(0))
            .unwrap_or_else(|| panic!("parameter {name} has no default: add a sample here"));
        values.insert(name.clone(), value.clone());
    }
    values
}

/// Resolves intrinsics; scalars become strings, as CloudFormation sends them to a custom resource.
fn substitute(value: &Value, params: &BTreeMap<String, Value>) -> Option<Value> {
    match value {
        Value::Object(map) if map.len() == 1 => {
            let (key, arg) = map.iter().next().unwrap();
            match key.as_str() {
                "Ref" => match arg.as_str().unwrap() {
                    "AWS::NoValue" => None,
                    "AWS::AccountId" => Some(json!("111111111111")),
                    "AWS::Region" => Some(json!("us-east-1")),
                    "AWS::Partition" => Some(json!("aws")),
                    "AWS::StackName" => Some(json!("apono-onboarding")),
                    name => Some(substitute(&params[name], params).unwrap()),
                },
                "Fn::GetAtt" => Some(json!(match arg[1].as_str().unwrap() {
                    "OrganizationId" => "o-abcdefghij".to_string(),
                    "Arn" => "arn:aws:lambda:us-east-1:111111111111:function:f".to_string(),
                    key => format!("getatt-{key}"),
                })),
                "Fn::Sub" => Some(json!(arg
                    .as_str()
                    .or(arg[0].as_str())
                    .unwrap()
                    .replace("${OrganizationInfo.OrganizationId}", "o-abcdefghij"))),
                "Fn::If" => substitute(&arg[1], params),
                "Fn::Join" => {
                    let items: Vec<String> = arg[1]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter_map(|v| substitute(v, params))
                        .map(|v| v.as_str().unwrap_or_default().to_string())
                        .collect();
                    Some(json!(items.join(arg[0].as_str().unwrap())))
                }
                _ => Some(Value::Object(
                    map.iter()
                        .filter_map(|(k, v)| substitute(v, params).map(|v| (k.clone(), v)))
                        .collect(),
                )),
            }
        }
        Value::Object(map) => Some(Value::Object(
            map.iter()
                .filter_map(|(k, v)| substitute(v, params).map(|v| (k.clone(), v)))
                .collect::<Map<_, _>>(),
        )),
        Value::Array(items) => Some(Value::Array(
            items.iter().filter_map(|v| substitute(v, params)).collect(),
        )),
        Value::Number(n) => Some(json!(n.to_string())),
        Value::Bool(b) => Some(json!(b.to_string())),
        other => Some(other.clone()),
    }
}

/// Every `Fn::GetAtt` in the template as (resource, key).
fn get_atts(value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            if let Some(arg) = map.get("Fn::GetAtt") {
                let (res, key) = match arg {
                    Value::Array(a) => (
                        a[0].as_str().unwrap().to_string(),
                        a[1].as_str().unwrap().to_string(),
                    ),
                    Value::String(s) => {
                        let (r, k) = s.split_once('.').unwrap();
                        (r.to_string(), k.to_string())
                    }
                    _ => unreachable!(),
                };
                out.push((res, key));
            }
            map.values().for_each(|v| get_atts(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| get_atts(v, out)),
        _ => {}
    }
}

#[test]
fn every_custom_resource_in_the_template_parses_and_every_get_att_key_exists() {
    let template = template_json("template.yaml");
    let params = parameter_values(&template);
    let resources = template["Resources"].as_object().unwrap();
    let mut custom = BTreeMap::new();
    for (logical_id, resource) in resources {
        let resource_type = resource["Type"].as_str().unwrap();
        if !resource_type.starts_with("Custom::") {
            continue;
        }
        let (check, keys) = contract(resource_type)
            .unwrap_or_else(|| panic!("{logical_id}: no contract for {resource_type}"));
        let props = substitute(&resource["Properties"], &params).unwrap();
        check(props).unwrap_or_else(|e| panic!("{logical_id} ({resource_type}): {e}"));
        custom.insert(logical_id.clone(), keys);
    }
    assert!(!custom.is_empty(), "the template has custom resources");
    let mut atts = Vec::new();
    get_atts(&template, &mut atts);
    for (res, key) in atts {
        if let Some(keys) = custom.get(&res) {
            assert!(
                keys.contains(&key.as_str()),
                "!GetAtt {res}.{key}: the function returns {keys:?}"
            );
        }
    }
}
