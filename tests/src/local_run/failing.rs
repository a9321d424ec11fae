//! Stacks that must fail and leave nothing.

use super::scenario::Scenario;
use super::*;
use crate::deploy::{Stack, StackStatus};
use serde_json::Value;

/// Stacks that must fail, and leave nothing: one its rules refuse, one whose Create fails
/// half-way (a connector Apono never sees), one without a grant its function needs.
#[allow(clippy::too_many_arguments)]
pub(super) async fn failing_stacks(
    report: &mut Report,
    w: &World,
    cloud: &LocalCloud<'_>,
    template: &Value,
    scenario: &Scenario,
    tag: &str,
    v1: &str,
    seed: u64,
) {
    // The account the stacks are deployed in: the management account or a delegated
    // administrator.
    let mgmt = cloud.account().to_string();
    // A stack whose rules refuse it: nothing may be created.
    let mut refused = Stack::new(template.clone());
    let mut p = Scenario {
        scope: scenario.scope,
        mode: "Deploy",
        ..Default::default()
    }
    .parameters(v1, "");
    p.retain(|(k, _)| k != "SubnetIds");
    let status = refused.create(cloud, &borrowed(&p), seed).await;
    report.check(
        &format!("{tag}: rules refuse Deploy mode without SubnetIds"),
        matches!(&status, StackStatus::Refused(why) if why.contains("needs SubnetIds"))
            && refused.operations.is_empty(),
        status_line(&status),
    );

    // A create that fails in the middle, and its rollback.
    let mut failing = Stack::new(template.clone());
    failing.set_account(&mgmt);
    let mut p = Scenario {
        scope: scenario.scope,
        mode: "Existing",
        ..Default::default()
    }
    .parameters(v1, "");
    for (k, v) in p.iter_mut() {
        match k.as_str() {
            "AponoConnectorId" => *v = "not-installed".into(),
            "ConnectorWaitSeconds" => *v = "3".into(),
            _ => {}
        }
    }
    let status = failing.create(cloud, &borrowed(&p), seed).await;
    show_timeline(&failing, 0);
    let clear = matches!(&status, StackStatus::RollbackComplete(why)
        if why.contains("not-installed is not known to Apono after waiting"));
    report.check(
        &format!("{tag}: failing Create rolls back cleanly"),
        clear && failing.physical_ids().is_empty(),
        status_line(&status),
    );
    let left = w.ours(v1);
    let integrations = w.apono.integrations().len();
    report.check(
        &format!("{tag}: the rollback left nothing behind"),
        left == 0 && integrations == 1 && w.someone_elses_entry_kept(),
        format!("{left} tagged entries, {integrations} integrations (1 was there before)"),
    );

    // A grant taken out of the template: the function is refused as AWS would refuse it,
    // and the stack rolls back.
    let mut ungranted = template.clone();
    let removed = remove_statement(&mut ungranted, "ReadAponoToken");
    let mut denied = Stack::new(ungranted);
    denied.set_account(&mgmt);
    let p = Scenario {
        scope: scenario.scope,
        mode: "Existing",
        ..Default::default()
    }
    .parameters(v1, "");
    let status = denied.create(cloud, &borrowed(&p), seed).await;
    show_timeline(&denied, 0);
    let refused = matches!(&status, StackStatus::RollbackComplete(why)
        if why.contains("access denied calling ssm:GetParameter"));
    report.check(
        &format!("{tag}: without its ssm:GetParameter grant, AccessDenied"),
        removed && refused && denied.physical_ids().is_empty(),
        status_line(&status),
    );
}

/// Removes the policy statement `sid` from every role of `template` (also as a branch of an
/// `Fn::If`); true if one was there.
fn remove_statement(template: &mut Value, sid: &str) -> bool {
    let mut removed = false;
    for (_, resource) in template["Resources"].as_object_mut().into_iter().flatten() {
        let policies = resource
            .get_mut("Properties")
            .and_then(|p| p.get_mut("Policies"))
            .and_then(Value::as_array_mut);
        for policy in policies.into_iter().flatten() {
            if let Some(statements) = policy["PolicyDocument"]["Statement"].as_array_mut() {
                let before = statements.len();
                statements.retain(|s| s["Sid"] != sid);
                removed |= statements.len() < before;
                for branches in statements
                    .iter_mut()
                    .filter_map(|s| s.get_mut("Fn::If").and_then(Value::as_array_mut))
                {
                    for branch in branches.iter_mut().skip(1).filter(|b| b["Sid"] == sid) {
                        *branch = serde_json::json!({"Ref": "AWS::NoValue"});
                        removed = true;
                    }
                }
            }
        }
    }
    removed
}
