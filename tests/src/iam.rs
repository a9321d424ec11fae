//! IAM for the fakes, when moto enforces it: who is calling (moto's own record of the SigV4
//! access key) and whether that caller's policies allow the action on the resource. The fakes
//! serve what moto lacks (EKS access entries, account:ListRegions, CloudFormation's
//! organization calls and DescribeStacks, Lambda's Invoke API); with an [`Authorizer`] they
//! refuse a call the caller's role does not grant, as AWS would.
//!
//! The evaluation follows AWS's policy evaluation logic for identity policies
//! (<https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html>):
//! an explicit Deny wins, otherwise some Allow must match the action, the resource and every
//! condition. Inline role policies are read; AWS managed policies are not attached locally.

use axum::http::HeaderMap;
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Caller {
    pub account: String,
    /// The role (or the kit's admin user) behind the access key.
    pub arn: String,
    policies: Vec<Value>,
    admin: bool,
}

#[derive(Clone)]
pub struct Authorizer {
    moto: String,
    admin_key: String,
    http: reqwest::Client,
}

impl Authorizer {
    /// `admin_key`: the test kit's own access key, which may do anything.
    pub fn new(moto_endpoint: &str, admin_key: &str) -> Authorizer {
        Authorizer {
            moto: moto_endpoint.to_string(),
            admin_key: admin_key.to_string(),
            http: reqwest::Client::new(),
        }
    }

    /// The caller behind a SigV4-signed request, as moto knows it (policies read now, so a
    /// policy attached a moment ago counts and one not attached yet does not).
    pub async fn caller(&self, headers: &HeaderMap) -> Result<Caller, String> {
        let key = access_key(headers).ok_or("missing SigV4 authorization")?;
        if key == self.admin_key {
            return Ok(Caller {
                account: crate::moto::DEFAULT_ACCOUNT.to_string(),
                arn: format!(
                    "arn:aws:iam::{}:user/{}",
                    crate::moto::DEFAULT_ACCOUNT,
                    crate::moto::ADMIN_USER
                ),
                policies: Vec::new(),
                admin: true,
            });
        }
        let data: Value = self
            .http
            .get(format!(
                "{}/moto-api/data.json?service=iam&service=sts",
                self.moto
            ))
            .send()
            .await
            .map_err(|e| format!("moto: {e}"))?
            .json()
            .await
            .map_err(|e| format!("moto: {e}"))?;
        let session = data["sts"]["AssumedRole"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["access_key_id"] == key.as_str())
            .ok_or_else(|| format!("the access key {key} is not one moto issued"))?;
        let token = headers
            .get("x-amz-security-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if session["session_token"] != token {
            return Err("the security token does not belong to the access key".into());
        }
        let role_arn = session["role_arn"].as_str().unwrap_or_default();
        let policies = data["iam"]["Role"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["arn"] == role_arn)
            .map(|role| {
                role["policies"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    // A JSON string when put through the API, an object when CloudFormation
                    // (a StackSet's member stack) created the role.
                    .filter_map(|(_, doc)| match doc {
                        Value::String(text) => serde_json::from_str(text).ok(),
                        object => Some(object.clone()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Caller {
            account: session["account_id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            arn: role_arn.to_string(),
            policies,
            admin: false,
        })
    }

    /// Ok(caller) when the caller may perform `action` on `resource`; Err(AWS's AccessDenied
    /// message) otherwise.
    pub async fn check(
        &self,
        headers: &HeaderMap,
        action: &str,
        resource: &str,
    ) -> Result<Caller, String> {
        let caller = self.caller(headers).await?;
        caller.may(action, resource, &[])?;
        Ok(caller)
    }
}

impl Caller {
    /// Ok when this caller's policies allow `action` on `resource` given the request's
    /// condition keys; Err(AWS's AccessDenied message) otherwise.
    pub fn may(
        &self,
        action: &str,
        resource: &str,
        context: &[(&str, &str)],
    ) -> Result<(), String> {
        match self.admin || allows(&self.policies, action, resource, context) {
            true => Ok(()),
            false => Err(format!(
                "User: {} is not authorized to perform: {action} on resource: {resource}",
                self.arn
            )),
        }
    }
}

/// The access key of `Credential=AKID/date/region/service/aws4_request`.
pub fn access_key(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let credential = auth.split("Credential=").nth(1)?.split(',').next()?;
    Some(credential.split('/').next()?.to_string())
}

/// Identity-policy evaluation: explicit Deny wins, else some Allow must match.
pub fn allows(policies: &[Value], action: &str, resource: &str, context: &[(&str, &str)]) -> bool {
    let statements: Vec<&Value> = policies
        .iter()
        .flat_map(statements)
        .filter(|s| applies(s, action, resource, context))
        .collect();
    !statements.iter().any(|s| s["Effect"] == "Deny")
        && statements.iter().any(|s| s["Effect"] == "Allow")
}

/// Whether a trust policy lets `service` (`events.amazonaws.com`, ...) assume the role, given
/// the request's condition keys (`aws:SourceAccount`, ...).
pub fn trusts_service(trust: &Value, service: &str, context: &[(&str, &str)]) -> bool {
    statements(trust).into_iter().any(|s| {
        s["Effect"] == "Allow"
            && listed(&s["Principal"]["Service"], service)
            && any_matches(&s["Action"], "sts:AssumeRole", true)
            && conditions_hold(&s["Condition"], context)
    })
}

/// Resource-policy evaluation for a caller from another account: some statement naming the
/// caller (`*`, its ARN, its account or the account's root) must allow the action on the
/// resource under its conditions, and none may deny it.
pub fn resource_policy_allows(
    statements: &[Value],
    principal_arn: &str,
    principal_account: &str,
    action: &str,
    resource: &str,
    context: &[(&str, &str)],
) -> bool {
    let root = format!("arn:aws:iam::{principal_account}:root");
    let names_caller = |p: &Value| {
        p == "*"
            || [principal_arn, principal_account, root.as_str(), "*"]
                .iter()
                .any(|name| listed(&p["AWS"], name))
    };
    let applying: Vec<&Value> = statements
        .iter()
        .filter(|s| names_caller(&s["Principal"]) && applies(s, action, resource, context))
        .collect();
    !applying.iter().any(|s| s["Effect"] == "Deny")
        && applying.iter().any(|s| s["Effect"] == "Allow")
}

fn statements(policy: &Value) -> Vec<&Value> {
    match &policy["Statement"] {
        Value::Array(list) => list.iter().collect(),
        Value::Null => vec![],
        one => vec![one],
    }
}

/// `value` is `wanted` or a list holding it.
fn listed(value: &Value, wanted: &str) -> bool {
    match value {
        Value::Array(items) => items.iter().any(|i| i == wanted),
        one => one == wanted,
    }
}

fn applies(statement: &Value, action: &str, resource: &str, context: &[(&str, &str)]) -> bool {
    let action_ok = match (&statement["Action"], &statement["NotAction"]) {
        (Value::Null, not) => !any_matches(not, action, true),
        (listed, _) => any_matches(listed, action, true),
    };
    let resource_ok = match (&statement["Resource"], &statement["NotResource"]) {
        (Value::Null, Value::Null) => false,
        (Value::Null, not) => !any_matches(not, resource, false),
        (listed, _) => any_matches(listed, resource, false),
    };
    action_ok && resource_ok && conditions_hold(&statement["Condition"], context)
}

fn any_matches(patterns: &Value, value: &str, ignore_case: bool) -> bool {
    let one = |p: &Value| {
        p.as_str().is_some_and(|p| match ignore_case {
            true => glob(&p.to_ascii_lowercase(), &value.to_ascii_lowercase()),
            false => glob(p, value),
        })
    };
    match patterns {
        Value::Array(list) => list.iter().any(one),
        p => one(p),
    }
}

/// IAM's wildcards: `*` any run of characters (slashes included), `?` one character.
pub fn glob(pattern: &str, value: &str) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    let (mut pi, mut vi, mut star, mut mark) = (0, 0, None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Every operator must hold. A key the request does not carry fails a positive operator and
/// satisfies a negated one, as in AWS; `...IfExists` holds for a missing key. An operator
/// this evaluator does not know fails, so a policy never passes here by being misunderstood.
fn conditions_hold(conditions: &Value, context: &[(&str, &str)]) -> bool {
    let Some(operators) = conditions.as_object() else {
        return true;
    };
    operators.iter().all(|(operator, keys)| {
        let (operator, if_exists) = match operator.strip_suffix("IfExists") {
            Some(base) => (base, true),
            None => (operator.as_str(), false),
        };
        keys.as_object()
            .into_iter()
            .flatten()
            .all(|(key, expected)| {
                let actual = context
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(key))
                    .map(|(_, v)| *v);
                let Some(actual) = actual else {
                    return if_exists || operator.contains("Not");
                };
                let expected: Vec<&str> = match expected {
                    Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
                    v => v.as_str().into_iter().collect(),
                };
                match operator {
                    "StringEquals" | "ArnEquals" => expected.contains(&actual),
                    "StringNotEquals" | "ArnNotEquals" => !expected.contains(&actual),
                    "StringLike" | "ArnLike" => expected.iter().any(|e| glob(e, actual)),
                    "StringNotLike" | "ArnNotLike" => !expected.iter().any(|e| glob(e, actual)),
                    _ => false,
                }
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(statement: Value) -> Vec<Value> {
        vec![json!({"Version": "2012-10-17", "Statement": statement})]
    }

    #[test]
    fn wildcards_span_slashes_and_actions_ignore_case() {
        let p = policy(
            json!([{"Effect": "Allow", "Action": "eks:CreateAccessEntry",
            "Resource": "arn:aws:eks:*:111:access-entry/*/*/*/*"}]),
        );
        assert!(allows(
            &p,
            "EKS:createaccessentry",
            "arn:aws:eks:eu-west-1:111:access-entry/c/role/111/r/uuid",
            &[]
        ));
        assert!(!allows(
            &p,
            "eks:CreateAccessEntry",
            "arn:aws:eks:eu-west-1:222:access-entry/c/role/222/r/uuid",
            &[]
        ));
        assert!(!allows(&p, "eks:DeleteAccessEntry", "*", &[]));
    }

    #[test]
    fn an_explicit_deny_wins_and_nothing_is_allowed_by_default() {
        let p = policy(json!([
            {"Effect": "Allow", "Action": "eks:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "eks:DeleteAccessEntry", "Resource": "*"}
        ]));
        assert!(allows(&p, "eks:ListClusters", "*", &[]));
        assert!(!allows(&p, "eks:DeleteAccessEntry", "x", &[]));
        assert!(!allows(&[], "eks:ListClusters", "*", &[]));
    }

    #[test]
    fn conditions_need_their_key_unless_negated_or_if_exists() {
        let p = policy(
            json!([{"Effect": "Allow", "Action": "eks:CreateAccessEntry",
            "Resource": "*", "Condition": {"ArnEquals": {"eks:principalArn": "arn:aws:iam::1:role/a"}}}]),
        );
        let ok = [("eks:principalArn", "arn:aws:iam::1:role/a")];
        let other = [("eks:principalArn", "arn:aws:iam::1:role/admin")];
        assert!(allows(&p, "eks:CreateAccessEntry", "c", &ok));
        assert!(!allows(&p, "eks:CreateAccessEntry", "c", &other));
        assert!(!allows(&p, "eks:CreateAccessEntry", "c", &[]));
        let p = policy(json!([{"Effect": "Allow", "Action": "x:Y", "Resource": "*",
            "Condition": {"StringEqualsIfExists": {"k": "v"}, "StringNotEquals": {"j": "v"}}}]));
        assert!(allows(&p, "x:Y", "r", &[]));
        assert!(!allows(&p, "x:Y", "r", &[("j", "v")]));
    }

    #[test]
    fn a_resource_policy_admits_the_organization_only_under_its_conditions() {
        let bus = "arn:aws:events:us-east-1:111111111111:event-bus/b";
        let statement = json!({"Effect": "Allow", "Principal": "*", "Action": "events:PutEvents",
            "Resource": bus, "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-1"},
            "ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/fwd"}}});
        let role = "arn:aws:iam::222222222222:role/fwd";
        let member = [("aws:PrincipalOrgID", "o-1"), ("aws:PrincipalArn", role)];
        let outsider = [("aws:PrincipalArn", role)];
        let p = [statement];
        assert!(resource_policy_allows(
            &p,
            role,
            "222222222222",
            "events:PutEvents",
            bus,
            &member
        ));
        assert!(!resource_policy_allows(
            &p,
            role,
            "222222222222",
            "events:PutEvents",
            bus,
            &outsider
        ));
        let other_role = "arn:aws:iam::222222222222:role/admin";
        let other = [
            ("aws:PrincipalOrgID", "o-1"),
            ("aws:PrincipalArn", other_role),
        ];
        assert!(!resource_policy_allows(
            &p,
            other_role,
            "222222222222",
            "events:PutEvents",
            bus,
            &other
        ));
        assert!(!resource_policy_allows(
            &[],
            role,
            "222222222222",
            "events:PutEvents",
            bus,
            &member
        ));
    }

    #[test]
    fn a_trust_policy_names_the_service_and_its_conditions_hold() {
        let trust = json!({"Statement": [{"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"aws:SourceAccount": "222"}}}]});
        assert!(trusts_service(
            &trust,
            "events.amazonaws.com",
            &[("aws:SourceAccount", "222")]
        ));
        assert!(!trusts_service(
            &trust,
            "events.amazonaws.com",
            &[("aws:SourceAccount", "333")]
        ));
        assert!(!trusts_service(
            &trust,
            "lambda.amazonaws.com",
            &[("aws:SourceAccount", "222")]
        ));
    }

    #[test]
    fn not_action_and_not_resource_exclude() {
        let p =
            policy(json!([{"Effect": "Allow", "NotAction": "iam:*", "NotResource": "arn:secret"}]));
        assert!(allows(&p, "eks:ListClusters", "arn:other", &[]));
        assert!(!allows(&p, "iam:PutRolePolicy", "arn:other", &[]));
        assert!(!allows(&p, "eks:ListClusters", "arn:secret", &[]));
    }
}
