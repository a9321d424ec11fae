//! Roles and inline policies put into moto when their resource completes, as IAM would.

use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The role in moto, as CloudFormation creates or updates it: trust, inline policies. AWS
/// managed policies are not attached (moto does not hold them; nothing the functions call
/// relies on them). moto cannot act as the Lambda service, so a role Lambda assumes trusts the
/// kit's administrator instead, who assumes it on Lambda's behalf.
pub(super) async fn put_role(
    iam: &aws_sdk_iam::Client,
    name: &str,
    props: &Value,
    create: bool,
) -> Result<(), String> {
    let mut trust = props["AssumeRolePolicyDocument"].clone();
    if trust.to_string().contains("lambda.amazonaws.com") {
        let admin = format!(
            "arn:aws:iam::{}:user/{}",
            crate::moto::DEFAULT_ACCOUNT,
            crate::moto::ADMIN_USER
        );
        trust = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": admin}, "Action": "sts:AssumeRole"}]});
    }
    if create {
        iam.create_role()
            .role_name(name)
            .assume_role_policy_document(trust.to_string())
            .send()
            .await
            .map_err(|e| format!("CreateRole {name}: {}", reason(e)))?;
    }
    let wanted: BTreeMap<String, String> = props["Policies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                p["PolicyName"].as_str()?.to_string(),
                p["PolicyDocument"].to_string(),
            ))
        })
        .collect();
    if !create {
        let existing = iam
            .list_role_policies()
            .role_name(name)
            .send()
            .await
            .map_err(|e| format!("ListRolePolicies {name}: {}", reason(e)))?
            .policy_names;
        for gone in existing.iter().filter(|p| !wanted.contains_key(*p)) {
            delete_role_policy(iam, name, gone).await?;
        }
    }
    for (policy, document) in wanted {
        put_role_policy(iam, name, &policy, &document).await?;
    }
    Ok(())
}

pub(super) async fn put_role_policy(
    iam: &aws_sdk_iam::Client,
    role: &str,
    policy: &str,
    document: &str,
) -> Result<(), String> {
    iam.put_role_policy()
        .role_name(role)
        .policy_name(policy)
        .policy_document(document)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("PutRolePolicy {role}/{policy}: {}", reason(e)))
}

pub(super) async fn delete_role_policy(
    iam: &aws_sdk_iam::Client,
    role: &str,
    policy: &str,
) -> Result<(), String> {
    iam.delete_role_policy()
        .role_name(role)
        .policy_name(policy)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("DeleteRolePolicy {role}/{policy}: {}", reason(e)))
}

/// Deletes a role and its inline policies.
pub(super) async fn delete_role(iam: &aws_sdk_iam::Client, name: &str) -> Result<(), String> {
    let policies = iam
        .list_role_policies()
        .role_name(name)
        .send()
        .await
        .map_err(|e| format!("ListRolePolicies {name}: {}", reason(e)))?
        .policy_names;
    for policy in policies {
        delete_role_policy(iam, name, &policy).await?;
    }
    iam.delete_role()
        .role_name(name)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("DeleteRole {name}: {}", reason(e)))
}

/// An IAM error as a user reads it: its code and message.
fn reason<E, R>(err: aws_sdk_iam::error::SdkError<E, R>) -> String
where
    E: aws_sdk_iam::error::ProvideErrorMetadata,
{
    use aws_sdk_iam::error::ProvideErrorMetadata;
    match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => "no answer from IAM".to_string(),
    }
}
