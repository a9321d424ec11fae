//! The StackSet's member stacks, rendered from its own template in every target account.

use super::*;
use crate::template::{substitute, Rendering};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The connector ID the ECS service runs (its task definition's APONO_CONNECTOR_ID): the local
/// run always uses [`CONNECTOR_ID`].
pub(super) fn props_connector(_template: &Value) -> String {
    CONNECTOR_ID.to_string()
}

/// One member account's stack: its roles (with their inline policies), then its policy
/// resources, created in moto in that account. Each role made is recorded in `made`.
pub(super) async fn deploy_member_stack(
    iam: &aws_sdk_iam::Client,
    template: &Value,
    r: &mut Rendering,
    account: &str,
    made: &mut Vec<(String, String)>,
) -> Result<(), String> {
    let resources: Vec<(&String, &Value)> = template["Resources"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, resource)| r.included(resource))
        .collect();
    let mut roles = BTreeMap::new();
    for (logical_id, resource) in &resources {
        if resource["Type"] != "AWS::IAM::Role" {
            continue;
        }
        let props = substitute(&resource["Properties"], r).unwrap_or(Value::Null);
        let name = props["RoleName"]
            .as_str()
            .unwrap_or(logical_id.as_str())
            .to_string();
        put_role(iam, &name, &props, true)
            .await
            .map_err(|e| format!("{e} in {account}"))?;
        made.push((account.to_string(), name.clone()));
        roles.insert(logical_id.to_string(), name);
    }
    for (logical_id, name) in &roles {
        r.attributes
            .insert((logical_id.clone(), "Ref".into()), name.clone());
        r.attributes.insert(
            (logical_id.clone(), "Arn".into()),
            format!("arn:aws:iam::{account}:role/{name}"),
        );
    }
    for (_, resource) in &resources {
        if resource["Type"] != "AWS::IAM::Policy" {
            continue;
        }
        let props = substitute(&resource["Properties"], r).unwrap_or(Value::Null);
        let policy = props["PolicyName"].as_str().unwrap_or_default();
        for role in LocalCloud::policy_roles(&props) {
            put_role_policy(iam, &role, policy, &props["PolicyDocument"].to_string())
                .await
                .map_err(|e| format!("{e} in {account}"))?;
        }
    }
    Ok(())
}

/// A file holding `text`, removed when dropped.
pub(super) struct TempFile(PathBuf);

impl TempFile {
    pub(super) fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub(super) fn tempfile_with(text: &str) -> Result<TempFile, String> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "local-deploy-{}-{}.yaml",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(TempFile(path))
}
