//! template.yaml as CloudFormation would render it: parameters substituted, conditions
//! evaluated, intrinsics resolved. Shared by the contract test and the local run.

use org_info::api::regions::Partition;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::process::Command;

/// The template decoded by cfn-lint's own decoder (short-form tags expanded).
pub fn template_json(file: &str) -> Value {
    template_json_at(&crate::workspace_root().join(file))
}

/// [`template_json`] of a file anywhere (a StackSet's template body written out).
pub fn template_json_at(path: &std::path::Path) -> Value {
    python_json("scripts/template_json.py", path)
}

/// Runs one of the project's Python scripts (in .venv) on `file` and reads the JSON it prints.
pub fn python_json(script: &str, file: &std::path::Path) -> Value {
    python_json_in(script, file, "us-east-1")
}

/// As [`python_json`], with the script run as in `region` (`AWS_DEFAULT_REGION`).
pub fn python_json_in(script: &str, file: &std::path::Path, region: &str) -> Value {
    let root = crate::workspace_root();
    let out = Command::new(crate::venv_tool("python"))
        .arg(root.join(script))
        .arg(file)
        .env("AWS_DEFAULT_REGION", region)
        .output()
        .unwrap_or_else(|e| panic!("run {script} ({e}): scripts/bootstrap.sh creates .venv"));
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{script} did not print JSON: {e}"))
}

/// Values a user would give, where the default is not what a typical install uses.
pub const SAMPLES: &[(&str, &str)] = &[("AponoConnectorId", "apono-connector-prod")];

/// What CloudFormation would pass for each parameter: a sample, its default, else its first
/// allowed value.
pub fn parameter_values(template: &Value) -> BTreeMap<String, Value> {
    parameter_values_given(template, &[])
}

/// As [`parameter_values`], with the `given` values taking precedence (a parameter with no
/// default must be given).
fn parameter_values_given(template: &Value, given: &[(&str, &str)]) -> BTreeMap<String, Value> {
    let mut values = BTreeMap::new();
    for (name, spec) in template["Parameters"].as_object().into_iter().flatten() {
        if let Some((_, value)) = given.iter().find(|(n, _)| n == name) {
            values.insert(name.clone(), json!(value));
            continue;
        }
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

/// Parameter values and evaluated conditions: one rendering of the template.
pub struct Rendering {
    pub params: BTreeMap<String, Value>,
    pub conditions: BTreeMap<String, bool>,
    /// Known `!GetAtt` values (resource, key), and `Ref`s of resources as (resource, "Ref");
    /// others get a sample.
    pub attributes: BTreeMap<(String, String), String>,
    /// The stack's account (`AWS::AccountId`).
    pub account_id: String,
    /// The stack's region (`AWS::Region`); its partition is `AWS::Partition`.
    pub region: String,
}

const PSEUDO_PARAMETERS: &[&str] = &[
    "AWS::AccountId",
    "AWS::Region",
    "AWS::Partition",
    "AWS::StackName",
    "AWS::StackId",
    "AWS::URLSuffix",
];

impl Rendering {
    pub fn new(template: &Value, overrides: &[(&str, &str)]) -> Rendering {
        Rendering::in_account(template, overrides, "111111111111")
    }

    /// The rendering in `account_id` (a StackSet's member stack).
    pub fn in_account(template: &Value, overrides: &[(&str, &str)], account_id: &str) -> Rendering {
        let params = parameter_values_given(template, overrides);
        Rendering::with_params(template, params, account_id)
    }

    /// What CloudFormation renders for a stack created with `given` parameters: every other
    /// parameter takes its `Default`, and one without a default must be given (no sample value
    /// stands in, as in [`Rendering::new`]).
    pub fn deployed(
        template: &Value,
        given: &[(&str, &str)],
        account_id: &str,
    ) -> Result<Rendering, String> {
        let mut params = BTreeMap::new();
        for (name, spec) in template["Parameters"].as_object().into_iter().flatten() {
            let value = match given.iter().find(|(n, _)| n == name) {
                Some((_, value)) => json!(value),
                None => spec
                    .get("Default")
                    .cloned()
                    .ok_or_else(|| format!("Parameters: [{name}] must have values"))?,
            };
            params.insert(name.clone(), value);
        }
        Ok(Rendering::with_params(template, params, account_id))
    }

    fn with_params(
        template: &Value,
        mut params: BTreeMap<String, Value>,
        account_id: &str,
    ) -> Rendering {
        // CloudFormation hands list parameters to the template as lists ("" as [""]).
        for (name, value) in params.iter_mut() {
            let kind = template["Parameters"][name]["Type"].as_str().unwrap_or("");
            if let (true, Some(text)) = (
                kind == "CommaDelimitedList" || kind.starts_with("List<"),
                value.as_str(),
            ) {
                *value = json!(text.split(',').map(str::trim).collect::<Vec<_>>());
            }
        }
        let mut rendering = Rendering {
            params,
            conditions: BTreeMap::new(),
            attributes: BTreeMap::new(),
            account_id: account_id.into(),
            region: "us-east-1".into(),
        };
        let specs = template["Conditions"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        // Conditions may refer to each other: evaluate until all are known.
        while rendering.conditions.len() < specs.len() {
            let before = rendering.conditions.len();
            for (name, spec) in &specs {
                if !rendering.conditions.contains_key(name) {
                    if let Some(v) = rendering.condition(spec) {
                        rendering.conditions.insert(name.clone(), v);
                    }
                }
            }
            assert!(rendering.conditions.len() > before, "circular conditions");
        }
        rendering
    }

    /// The partition of the stack's region.
    pub fn partition(&self) -> Partition {
        Partition::of_region(&self.region)
    }

    /// The same rendering in another region (and so, perhaps, another partition).
    pub fn in_region(mut self, region: &str) -> Rendering {
        self.region = region.into();
        self
    }

    /// A pseudo parameter's value in this rendering.
    pub fn pseudo(&self, name: &str) -> String {
        match name {
            "AWS::AccountId" => self.account_id.clone(),
            "AWS::Region" => self.region.clone(),
            "AWS::Partition" => self.partition().name().into(),
            "AWS::StackName" => "apono-onboarding".into(),
            "AWS::StackId" => crate::events::STACK_ID
                .replace("123456789012", &self.account_id)
                .replacen("arn:aws:", &format!("arn:{}:", self.partition().name()), 1)
                .replacen(":us-east-1:", &format!(":{}:", self.region), 1),
            "AWS::URLSuffix" => match self.partition() {
                Partition::AwsCn => "amazonaws.com.cn".into(),
                _ => "amazonaws.com".into(),
            },
            other => panic!("pseudo parameter {other} is not modelled"),
        }
    }

    fn condition(&self, spec: &Value) -> Option<bool> {
        let (key, arg) = spec.as_object()?.iter().next()?;
        Some(match key.as_str() {
            "Fn::Equals" => self.scalar(&arg[0])? == self.scalar(&arg[1])?,
            "Fn::Not" => !self.condition(&arg[0])?,
            "Fn::And" => {
                let all: Option<Vec<bool>> =
                    arg.as_array()?.iter().map(|c| self.condition(c)).collect();
                all?.into_iter().all(|b| b)
            }
            "Fn::Or" => {
                let all: Option<Vec<bool>> =
                    arg.as_array()?.iter().map(|c| self.condition(c)).collect();
                all?.into_iter().any(|b| b)
            }
            "Condition" => *self.conditions.get(arg.as_str()?)?,
            other => panic!("unsupported condition function {other}"),
        })
    }

    fn scalar(&self, value: &Value) -> Option<String> {
        substitute(value, self).map(|v| match v {
            Value::String(s) => s,
            Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str())
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        })
    }

    pub fn included(&self, resource: &Value) -> bool {
        resource
            .get("Condition")
            .and_then(Value::as_str)
            .is_none_or(|c| self.conditions[c])
    }
}

/// Stand-ins for attributes that only exist at deploy time.
fn get_att_sample(r: &Rendering, resource: &str, key: &str) -> String {
    match key {
        "OrganizationId" => "o-abcdefghij".into(),
        "RootId" => "r-ab12".into(),
        "ManagementAccountId" => r.account_id.clone(),
        "Regions" | "DefaultRegions" => r.partition().eks_regions()[..2].join(","),
        "Arn" => r
            .partition()
            .arn(&format!("iam::{}:role/{resource}", r.account_id)),
        other => format!("getatt-{other}"),
    }
}

/// Resolves intrinsics; scalars become strings, as CloudFormation sends them to a custom resource.
pub fn substitute(value: &Value, r: &Rendering) -> Option<Value> {
    match value {
        Value::Object(map) if map.len() == 1 => {
            let (key, arg) = map.iter().next().unwrap();
            match key.as_str() {
                "Ref" => match arg.as_str().unwrap() {
                    "AWS::NoValue" => None,
                    pseudo if pseudo.starts_with("AWS::") => Some(json!(r.pseudo(pseudo))),
                    name => match r.params.get(name) {
                        Some(v) => substitute(v, r),
                        None => Some(json!(r
                            .attributes
                            .get(&(name.to_string(), "Ref".to_string()))
                            .cloned()
                            .unwrap_or_else(|| format!("ref-{name}")))),
                    },
                },
                "Fn::GetAtt" => {
                    let (res, key) = (arg[0].as_str().unwrap(), arg[1].as_str().unwrap());
                    Some(json!(r
                        .attributes
                        .get(&(res.to_string(), key.to_string()))
                        .cloned()
                        .unwrap_or_else(|| get_att_sample(r, res, key))))
                }
                "Fn::Sub" => {
                    let text = arg.as_str().or(arg[0].as_str()).unwrap();
                    let mut out = text.to_string();
                    for (name, v) in &r.params {
                        if let Some(v) =
                            substitute(v, r).and_then(|v| v.as_str().map(str::to_string))
                        {
                            out = out.replace(&format!("${{{name}}}"), &v);
                        }
                    }
                    for pseudo in PSEUDO_PARAMETERS {
                        out = out.replace(&format!("${{{pseudo}}}"), &r.pseudo(pseudo));
                    }
                    for ((res, key), v) in &r.attributes {
                        match key.as_str() {
                            "Ref" => out = out.replace(&format!("${{{res}}}"), v),
                            _ => out = out.replace(&format!("${{{res}.{key}}}"), v),
                        }
                    }
                    // Fn::Sub's own variables: [text, {name: value}].
                    if let Some(vars) = arg.get(1).and_then(Value::as_object) {
                        for (name, v) in vars {
                            if let Some(v) =
                                substitute(v, r).and_then(|v| v.as_str().map(str::to_string))
                            {
                                out = out.replace(&format!("${{{name}}}"), &v);
                            }
                        }
                    }
                    let out = out.replace("${OrganizationInfo.OrganizationId}", "o-abcdefghij");
                    Some(json!(out))
                }
                "Fn::If" => {
                    let cond = r.conditions[arg[0].as_str().unwrap()];
                    substitute(&arg[if cond { 1 } else { 2 }], r)
                }
                "Fn::Split" => {
                    let text = substitute(&arg[1], r)?;
                    let parts = text.as_str()?.split(arg[0].as_str()?).map(|p| json!(p));
                    Some(Value::Array(parts.collect()))
                }
                "Fn::Select" => {
                    let index: usize = substitute(&arg[0], r)?.as_str()?.parse().ok()?;
                    substitute(&arg[1], r)?.get(index).cloned()
                }
                "Fn::Join" => {
                    let items: Vec<String> = match substitute(&arg[1], r)? {
                        Value::Array(items) => items
                            .iter()
                            .map(|v| v.as_str().unwrap_or_default().to_string())
                            .collect(),
                        Value::String(s) => vec![s],
                        _ => vec![],
                    };
                    Some(json!(items.join(arg[0].as_str().unwrap())))
                }
                other if other.starts_with("Fn::") => {
                    panic!(
                        "{other} is not modelled by the test kit's renderer: add it to substitute"
                    )
                }
                _ => Some(Value::Object(
                    map.iter()
                        .filter_map(|(k, v)| substitute(v, r).map(|v| (k.clone(), v)))
                        .collect(),
                )),
            }
        }
        Value::Object(map) => Some(Value::Object(
            map.iter()
                .filter_map(|(k, v)| substitute(v, r).map(|v| (k.clone(), v)))
                .collect::<Map<_, _>>(),
        )),
        Value::Array(items) => Some(Value::Array(
            items.iter().filter_map(|v| substitute(v, r)).collect(),
        )),
        Value::Number(n) => Some(json!(n.to_string())),
        Value::Bool(b) => Some(json!(b.to_string())),
        other => Some(other.clone()),
    }
}

/// Every `Fn::GetAtt` in the template as (resource, key).
pub fn get_atts(value: &Value, out: &mut Vec<(String, String)>) {
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
