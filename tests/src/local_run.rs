//! The local run behind `scripts/local-run.sh`: an emulated organization in moto, and the
//! custom resources driven through a stack's lifecycle with a readable report.

use crate::events::Event;
use crate::invoke::Invoker;
use crate::moto::Moto;
use crate::org::{seed_organization, MotoOrgApi};
use crate::receiver::Receiver;
use org_info::OrgInfo;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct Options {
    pub member_accounts: usize,
    pub organizational_units: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            member_accounts: 12,
            organizational_units: 2,
        }
    }
}

/// One step of the lifecycle and whether it behaved as it must.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub steps: Vec<Step>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.steps.iter().all(|s| s.ok)
    }

    fn check(&mut self, name: &str, ok: bool, detail: impl Into<String>) {
        let step = Step {
            name: name.into(),
            ok,
            detail: detail.into(),
        };
        println!(
            "  [{}] {:<46} {}",
            if ok { " ok " } else { "FAIL" },
            step.name,
            step.detail
        );
        self.steps.push(step);
    }
}

fn summary(body: &Value) -> String {
    let mut text = format!(
        "{} id={}",
        body["Status"].as_str().unwrap_or("?"),
        body["PhysicalResourceId"].as_str().unwrap_or("?")
    );
    if let Some(reason) = body["Reason"].as_str() {
        let _ = write!(text, " reason=\"{reason}\"");
    }
    text
}

/// Runs the lifecycle; the report says whether every step behaved.
pub async fn run(options: &Options) -> Report {
    let started = Instant::now();
    let mut report = Report::default();
    println!("local run: starting moto and the response receiver on 127.0.0.1");
    let moto = Moto::start().await;
    let config = moto.sdk_config();
    let org = seed_organization(
        &config,
        options.member_accounts,
        options.organizational_units,
    )
    .await;
    println!(
        "emulated organization {} (root {}, management account {}): {} member accounts in {} OUs\n",
        org.organization_id,
        org.root_id,
        org.management_account_id,
        org.member_account_ids.len(),
        org.ou_ids.len()
    );
    let rx = Receiver::start().await;
    let invoker = Invoker::new(OrgInfo::new(MotoOrgApi::new(&config)));
    let send = |event: Event| {
        let rx = &rx;
        let invoker = &invoker;
        async move {
            let before = rx.accepted().len();
            let result = invoker.invoke(event).await;
            let sent = rx.accepted();
            let exactly_one = result.is_ok() && sent.len() == before + 1;
            (
                exactly_one,
                sent.last().map(|r| r.json()).unwrap_or(Value::Null),
            )
        }
    };

    println!("Custom::OrganizationInfo (OrganizationInfo)");
    let (one, created) = send(
        Event::create("Custom::OrganizationInfo", &rx.url("create")).logical_id("OrganizationInfo"),
    )
    .await;
    let data = &created["Data"];
    report.check(
        "Create resolves the organization",
        one && created["Status"] == "SUCCESS"
            && data["OrganizationId"] == org.organization_id.as_str()
            && data["RootId"] == org.root_id.as_str()
            && data["ActiveAccountCount"]
                == (org.member_account_ids.len() + 1).to_string().as_str(),
        summary(&created),
    );
    if let Some(map) = data.as_object() {
        for (key, value) in map {
            println!("         {key:<26} {}", value.as_str().unwrap_or(""));
        }
    }
    let physical_id = created["PhysicalResourceId"]
        .as_str()
        .unwrap_or("")
        .to_string();

    let overrides = json!({"OrganizationId": org.organization_id, "RootId": org.root_id});
    let (one, updated) = send(
        Event::update("Custom::OrganizationInfo", &rx.url("update"), &physical_id)
            .logical_id("OrganizationInfo")
            .properties(overrides.clone()),
    )
    .await;
    report.check(
        "Update with overrides keeps the physical ID",
        one && updated["Status"] == "SUCCESS"
            && updated["PhysicalResourceId"] == physical_id.as_str(),
        summary(&updated),
    );

    let (one, noop) = send(
        Event::update("Custom::OrganizationInfo", &rx.url("noop"), &physical_id)
            .logical_id("OrganizationInfo")
            .properties(overrides.clone())
            .old_properties(overrides),
    )
    .await;
    report.check(
        "No-op Update answers the same",
        one && noop["Status"] == "SUCCESS" && noop["Data"] == updated["Data"],
        summary(&noop),
    );

    let (one, deleted) = send(
        Event::delete("Custom::OrganizationInfo", &rx.url("delete"), &physical_id)
            .logical_id("OrganizationInfo"),
    )
    .await;
    let org_left = aws_sdk_organizations::Client::new(&config)
        .describe_organization()
        .send()
        .await
        .ok()
        .and_then(|o| o.organization().and_then(|o| o.id()).map(str::to_string));
    report.check(
        "Delete succeeds and leaves the organization",
        one && deleted["Status"] == "SUCCESS"
            && org_left.as_deref() == Some(org.organization_id.as_str()),
        summary(&deleted),
    );

    let (one, failed) = send(
        Event::create("Custom::OrganizationInfo", &rx.url("bad-create"))
            .logical_id("OrganizationInfo")
            .property("OrganizationId", "o-zzzzzzzzzz"),
    )
    .await;
    report.check(
        "Create with a wrong override fails clearly",
        one && failed["Status"] == "FAILED"
            && failed["Reason"]
                .as_str()
                .is_some_and(|r| r.contains("o-zzzzzzzzzz")),
        summary(&failed),
    );
    let marker = failed["PhysicalResourceId"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let (one, rollback) = send(
        Event::delete("Custom::OrganizationInfo", &rx.url("rollback"), &marker)
            .logical_id("OrganizationInfo"),
    )
    .await;
    report.check(
        "Rollback Delete of the failed Create succeeds",
        one && rollback["Status"] == "SUCCESS",
        summary(&rollback),
    );

    let over_limit = rx.accepted().iter().filter(|r| r.body.len() > 4096).count();
    report.check(
        "Every response fits CloudFormation's 4 KB",
        over_limit == 0,
        format!(
            "{} responses, largest {} bytes",
            rx.accepted().len(),
            rx.accepted()
                .iter()
                .map(|r| r.body.len())
                .max()
                .unwrap_or(0)
        ),
    );
    println!(
        "\n{} in {:.1} s: {} of {} steps behaved",
        if report.ok() { "PASSED" } else { "FAILED" },
        started.elapsed().as_secs_f64(),
        report.steps.iter().filter(|s| s.ok).count(),
        report.steps.len()
    );
    report
}
