//! The local run behind `scripts/local-run.sh`: an emulated organization (moto, and fakes for
//! what moto lacks), the real function binaries served through a local Lambda runtime API, and
//! every `Custom::` resource of template.yaml driven through a stack's lifecycle, with a report.

use crate::events::Event;
use crate::fake_apono::FakeApono;
use crate::fake_eks::FakeEks;
use crate::fake_platform::FakePlatform;
use crate::lambda::{Function, Outcome};
use crate::moto::Moto;
use crate::org::{seed_organization, SeededOrg};
use crate::receiver::{Receiver, FAKE_SIGNATURE};
use crate::template::{substitute, template_json, Rendering};
use eks_access_entries::eks::STACK_TAG;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Options {
    pub member_accounts: usize,
    pub organizational_units: usize,
    pub regions: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            member_accounts: 6,
            organizational_units: 2,
            regions: 3,
        }
    }
}

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
        !self.steps.is_empty() && self.steps.iter().all(|s| s.ok)
    }

    fn check(&mut self, name: &str, ok: bool, detail: impl Into<String>) {
        let detail = detail.into();
        println!(
            "  [{}] {name:<58} {detail}",
            if ok { " ok " } else { "FAIL" }
        );
        self.steps.push(Step {
            name: name.into(),
            ok,
            detail,
        });
    }
}

const TOKEN: &str = "apono-local-api-token-7c1d92e4";
const TOKEN_PARAMETER: &str = "/apono/api-token";
const CONNECTOR_ID: &str = "local-connector";
/// The custom resources of template.yaml in dependency order, and their binaries.
const RESOURCES: &[(&str, &str)] = &[
    ("OrganizationInfo", "org-info"),
    ("AponoIntegration", "apono-integration"),
    ("EksAccessEntries", "eks-access-entries"),
];

/// Builds the function binaries (workspace features, so the test build's artifacts are reused).
pub fn build_binaries() -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--workspace", "--bins", "--locked", "--quiet"])
        .current_dir(crate::workspace_root())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err("cargo build of the functions failed".into());
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| crate::workspace_root().join("target"));
    Ok(target.join("debug"))
}

struct World {
    moto: Moto,
    org: SeededOrg,
    accounts: Vec<String>,
    eks: FakeEks,
    apono: FakeApono,
    _platform: FakePlatform,
    rx: Receiver,
    functions: BTreeMap<&'static str, Function>,
    template: Value,
    regions: Vec<String>,
    sent: usize,
}

/// What a function binary needs to run against moto and the fakes, as on Lambda.
pub fn function_env(moto: &Moto, eks: &FakeEks, platform: &FakePlatform) -> Vec<(String, String)> {
    let mut env = moto.env();
    env.extend([
        ("AWS_ENDPOINT_URL_EKS".to_string(), eks.url()),
        ("AWS_ENDPOINT_URL_ACCOUNT".to_string(), platform.url()),
        (
            "AWS_ENDPOINT_URL_CLOUDFORMATION".to_string(),
            platform.url(),
        ),
        (
            custom_resource::TEST_LOOPBACK_ENV.to_string(),
            "1".to_string(),
        ),
    ]);
    env
}

fn role(account: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:role/{name}")
}

impl World {
    async fn new(options: &Options, bin: &std::path::Path) -> World {
        let moto = Moto::start().await;
        let config = moto.sdk_config();
        let org = seed_organization(
            &config,
            options.member_accounts,
            options.organizational_units,
        )
        .await;
        let mut accounts = vec![org.management_account_id.clone()];
        accounts.extend(org.member_account_ids.clone());
        let regions: Vec<String> = custom_resource::aws::EKS_REGIONS
            .iter()
            .take(options.regions)
            .map(|r| r.to_string())
            .collect();

        // What was there before the stack: a token in SSM, a connector, someone else's
        // integration, clusters in every mode and status, someone else's access entry.
        aws_sdk_ssm::Client::new(&config)
            .put_parameter()
            .name(TOKEN_PARAMETER)
            .value(TOKEN)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .send()
            .await
            .expect("SSM parameter");
        let apono = FakeApono::start(TOKEN).await;
        apono.add_connector(CONNECTOR_ID, "CONNECTED");
        apono.add_integration("team-x-aws", "aws-account", "team-x-connector");
        let eks = FakeEks::start(&moto.endpoint).await;
        for account in &accounts {
            for region in &regions {
                eks.add_cluster(account, region, "api", "ACTIVE", "API");
                eks.add_cluster(account, region, "both", "ACTIVE", "API_AND_CONFIG_MAP");
            }
            eks.add_cluster(account, &regions[0], "legacy", "ACTIVE", "CONFIG_MAP");
            eks.add_cluster(account, &regions[0], "young", "CREATING", "API");
        }
        let v1 = role(&org.management_account_id, "apono-connector-v1");
        eks.add_entry(&accounts[accounts.len() - 1], &regions[0], "api", &v1);
        let region_refs: Vec<&str> = regions.iter().map(String::as_str).collect();
        let platform = FakePlatform::start(&region_refs).await;

        let mut env = function_env(&moto, &eks, &platform);
        env.extend([
            (
                custom_resource::DEADLINE_MARGIN_ENV.to_string(),
                "3".to_string(),
            ),
            ("RUST_LOG".to_string(), "debug".to_string()),
        ]);
        let mut functions = BTreeMap::new();
        for (_, binary) in RESOURCES {
            functions.insert(
                *binary,
                Function::start(binary, &bin.join(binary), &env, Duration::from_secs(120)).await,
            );
        }
        World {
            moto,
            org,
            accounts,
            eks,
            apono,
            _platform: platform,
            rx: Receiver::start().await,
            functions,
            template: template_json("template.yaml"),
            regions,
            sent: 0,
        }
    }

    fn rendering(&self, connector_role: &str, connector_id: &str) -> Rendering {
        Rendering::new(
            &self.template,
            &[
                ("Scope", "Organization"),
                ("ConnectorMode", "Existing"),
                ("ConnectorRoleArn", connector_role),
                ("AponoConnectorId", connector_id),
                ("AponoApiTokenParameterName", TOKEN_PARAMETER),
                // The failing Create waits this long for a connector Apono never learns of.
                ("ConnectorWaitSeconds", "5"),
            ],
        )
    }

    /// The properties CloudFormation would send for `logical_id`.
    fn properties(&self, r: &Rendering, logical_id: &str) -> Value {
        let resource = &self.template["Resources"][logical_id];
        assert!(
            r.included(resource),
            "{logical_id} is not in this rendering"
        );
        let mut props = substitute(&resource["Properties"], r).unwrap();
        if logical_id == "AponoIntegration" {
            // The one deviation from the template: Apono is the local fake.
            props["ApiUrl"] = json!(self.apono.url());
        }
        props
    }

    /// Sends one event to the resource's function and returns CloudFormation's view of the
    /// answer (exactly one is required).
    async fn send(&mut self, logical_id: &str, event: Event) -> Value {
        self.sent += 1;
        let name = format!("{logical_id}-{}", self.sent);
        let mut value = event.logical_id(logical_id).into_value();
        value["ResponseURL"] = json!(self.rx.url(&name));
        let binary = RESOURCES.iter().find(|(l, _)| *l == logical_id).unwrap().1;
        let function = &self.functions[binary];
        match function.invoke(value, Duration::from_secs(300)).await {
            Ok(Outcome::Response(_)) => {}
            Ok(Outcome::Error(e)) => {
                return json!({"Status": "LAMBDA-ERROR", "Reason": e.to_string()})
            }
            Err(e) => return json!({"Status": "NO-ANSWER", "Reason": e}),
        }
        let prefix = format!("/cfn-response/{name}?");
        let answers: Vec<_> = self
            .rx
            .accepted()
            .into_iter()
            .filter(|r| r.target.starts_with(&prefix))
            .collect();
        match answers.as_slice() {
            [one] => one.json(),
            [] => json!({"Status": "NO-ANSWER"}),
            _ => json!({"Status": "MORE-THAN-ONE-ANSWER"}),
        }
    }

    fn resource_type(&self, logical_id: &str) -> String {
        self.template["Resources"][logical_id]["Type"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Entries carrying this stack's tags, for `principal`.
    fn ours(&self, principal: &str) -> usize {
        self.eks.entries_tagged(principal, STACK_TAG)
    }

    fn eligible_clusters(&self) -> usize {
        self.accounts.len() * self.regions.len() * 2
    }
}

fn summary(body: &Value) -> String {
    let mut text = format!(
        "{} {}",
        body["Status"].as_str().unwrap_or("?"),
        body["PhysicalResourceId"].as_str().unwrap_or("")
    );
    if let Some(reason) = body["Reason"].as_str() {
        text.push_str(&format!(
            " reason=\"{}\"",
            custom_resource::response::truncate_utf8(reason, 160)
        ));
    }
    text
}

fn show_data(body: &Value) {
    if let Some(map) = body["Data"].as_object() {
        let line: Vec<String> = map
            .iter()
            .filter(|(_, v)| !v.as_str().unwrap_or("").is_empty())
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect();
        println!(
            "         {}",
            custom_resource::response::truncate_utf8(&line.join("  "), 400)
        );
    }
}

/// Deploys the member template with a service-managed StackSet in moto, as CloudFormation
/// does for `MemberRolesStackSet`; returns how many member accounts got the Apono role.
async fn deploy_member_roles(world: &World, connector_role: &str) -> usize {
    let config = world.moto.sdk_config();
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let eks_manager = role(&world.org.management_account_id, "eks-function");
    let parameters = [
        ("AponoConnectorId", CONNECTOR_ID),
        ("ConnectorRoleArn", connector_role),
        ("Permissions", "Read-Only (Discovery)"),
        ("EksManagerRoleArn", eks_manager.as_str()),
    ];
    let ous = if world.org.ou_ids.is_empty() {
        vec![world.org.root_id.clone()]
    } else {
        world.org.ou_ids.clone()
    };
    if let Err(e) =
        crate::org::deploy_member_stack_set(&cfn, "apono-member-roles", &parameters, &ous).await
    {
        println!("         StackSet: {e}");
        return 0;
    }
    let mut count = 0;
    for account in &world.org.member_account_ids {
        let member = crate::org::assume_member(&world.moto, &config, account).await;
        let iam = aws_sdk_iam::Client::new(&member);
        if iam
            .get_role()
            .role_name(format!("apono-cross-account-{CONNECTOR_ID}"))
            .send()
            .await
            .is_ok()
        {
            count += 1;
        }
    }
    count
}

/// Runs the lifecycle; the report says whether every step behaved.
pub async fn run(options: &Options) -> Report {
    let started = Instant::now();
    let mut report = Report::default();
    println!("local run: building the function binaries ...");
    let bin = match build_binaries() {
        Ok(bin) => bin,
        Err(e) => {
            report.check("build the functions", false, e);
            return report;
        }
    };
    println!("local run: starting moto, the fakes and the three functions on 127.0.0.1 ...");
    let mut w = World::new(options, &bin).await;
    println!(
        "emulated organization {} (root {}, management account {}): {} member accounts in {} OUs, \
         EKS in {} regions ({} clusters), Apono with connector {CONNECTOR_ID}\n",
        w.org.organization_id,
        w.org.root_id,
        w.org.management_account_id,
        w.org.member_account_ids.len(),
        w.org.ou_ids.len(),
        w.regions.len(),
        w.accounts.len() * (w.regions.len() * 2 + 2),
    );
    let v1 = role(&w.org.management_account_id, "apono-connector-v1");
    let v2 = role(&w.org.management_account_id, "apono-connector-v2");
    let pre_existing_entry = (
        w.accounts[w.accounts.len() - 1].clone(),
        w.regions[0].clone(),
    );

    // ---- Create, in dependency order; !GetAtt filled from earlier answers.
    println!("stack Create (ConnectorRoleArn = {v1})");
    let mut rendering = w.rendering(&v1, CONNECTOR_ID);
    let mut physical = BTreeMap::new();
    let mut props_now = BTreeMap::new();
    for (logical_id, _) in RESOURCES {
        if *logical_id == "AponoIntegration" {
            let roles = deploy_member_roles(&w, &v1).await;
            report.check(
                "StackSet puts the Apono role in every member account",
                roles == w.org.member_account_ids.len(),
                format!(
                    "{roles} of {} member accounts",
                    w.org.member_account_ids.len()
                ),
            );
        }
        let props = w.properties(&rendering, logical_id);
        let resource_type = w.resource_type(logical_id);
        let body = w
            .send(
                logical_id,
                Event::create(&resource_type, "").properties(props.clone()),
            )
            .await;
        let ok = body["Status"] == "SUCCESS";
        report.check(&format!("Create {logical_id}"), ok, summary(&body));
        show_data(&body);
        if let Some(data) = body["Data"].as_object() {
            for (k, v) in data {
                rendering.attributes.insert(
                    (logical_id.to_string(), k.clone()),
                    v.as_str().unwrap_or("").to_string(),
                );
            }
        }
        physical.insert(
            *logical_id,
            body["PhysicalResourceId"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
        props_now.insert(*logical_id, w.properties(&rendering, logical_id));
    }
    let created = w.ours(&v1);
    report.check(
        "EKS: an entry on every eligible cluster, others' left alone",
        created == w.eligible_clusters() - 1,
        format!("{created} tagged entries for the connector role; CONFIG_MAP and CREATING clusters skipped"),
    );
    let created_integrations = w.apono.integrations().len() - 1;
    report.check(
        "Apono: one integration registered",
        created_integrations == 1,
        format!("{} integrations in Apono", created_integrations + 1),
    );

    // ---- Update with a real change: a new connector role.
    println!("\nstack Update (ConnectorRoleArn = {v2})");
    let mut rendering2 = w.rendering(&v2, CONNECTOR_ID);
    rendering2.attributes = rendering.attributes.clone();
    for (logical_id, _) in RESOURCES {
        let new = w.properties(&rendering2, logical_id);
        let old = props_now[logical_id].clone();
        if new == old {
            println!("         {logical_id}: properties unchanged, CloudFormation sends no event");
            continue;
        }
        let resource_type = w.resource_type(logical_id);
        let body = w
            .send(
                logical_id,
                Event::update(&resource_type, "", &physical[logical_id])
                    .properties(new.clone())
                    .old_properties(old),
            )
            .await;
        report.check(
            &format!("Update {logical_id}"),
            body["Status"] == "SUCCESS"
                && body["PhysicalResourceId"] == physical[logical_id].as_str(),
            summary(&body),
        );
        show_data(&body);
        props_now.insert(*logical_id, new);
    }
    let (new_entries, old_entries) = (w.ours(&v2), w.ours(&v1));
    let theirs_kept = w
        .eks
        .entries(&pre_existing_entry.0, &pre_existing_entry.1, "api")
        .contains_key(&v1);
    report.check(
        "EKS: entries moved to the new role, the old ones removed",
        new_entries == w.eligible_clusters() && old_entries == 0 && theirs_kept,
        format!("{new_entries} for the new role, {old_entries} of ours for the old one, someone else's entry kept: {theirs_kept}"),
    );

    // ---- No-op update: every resource gets an Update with unchanged properties.
    println!("\nstack Update with nothing changed");
    let (eks_writes, apono_writes) = (w.eks.mutations(), w.apono.writes());
    for (logical_id, _) in RESOURCES {
        let props = props_now[logical_id].clone();
        let resource_type = w.resource_type(logical_id);
        let body = w
            .send(
                logical_id,
                Event::update(&resource_type, "", &physical[logical_id])
                    .properties(props.clone())
                    .old_properties(props),
            )
            .await;
        report.check(
            &format!("no-op Update {logical_id}"),
            body["Status"] == "SUCCESS",
            summary(&body),
        );
    }
    let writes = (w.eks.mutations() - eks_writes) + (w.apono.writes() - apono_writes);
    report.check(
        "no-op Update made zero mutating calls",
        writes == 0,
        format!("{writes} writes to EKS and Apono"),
    );

    // ---- Delete, in reverse order.
    println!("\nstack Delete");
    for (logical_id, _) in RESOURCES.iter().rev() {
        let props = props_now[logical_id].clone();
        let resource_type = w.resource_type(logical_id);
        let body = w
            .send(
                logical_id,
                Event::delete(&resource_type, "", &physical[logical_id]).properties(props),
            )
            .await;
        report.check(
            &format!("Delete {logical_id}"),
            body["Status"] == "SUCCESS",
            summary(&body),
        );
        show_data(&body);
    }
    let left = w.ours(&v1) + w.ours(&v2);
    let integrations: Vec<String> = w
        .apono
        .integrations()
        .iter()
        .map(|i| i["name"].as_str().unwrap_or("").to_string())
        .collect();
    let theirs_kept = w
        .eks
        .entries(&pre_existing_entry.0, &pre_existing_entry.1, "api")
        .contains_key(&v1);
    report.check(
        "Delete left nothing of ours and everything that was there",
        left == 0 && integrations == ["team-x-aws"] && theirs_kept,
        format!("{left} tagged entries, Apono integrations {integrations:?}, someone else's entry kept: {theirs_kept}"),
    );

    // ---- A Create that fails, and CloudFormation's rollback.
    println!("\nstack Create that fails (AponoConnectorId = not-installed), then rollback");
    let mut failing = w.rendering(&v1, "not-installed");
    let mut done: Vec<(&str, String, Value)> = Vec::new();
    for (logical_id, _) in RESOURCES {
        let props = w.properties(&failing, logical_id);
        let resource_type = w.resource_type(logical_id);
        let body = w
            .send(
                logical_id,
                Event::create(&resource_type, "").properties(props.clone()),
            )
            .await;
        let id = body["PhysicalResourceId"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if body["Status"] == "SUCCESS" {
            if let Some(data) = body["Data"].as_object() {
                for (k, v) in data {
                    failing.attributes.insert(
                        (logical_id.to_string(), k.clone()),
                        v.as_str().unwrap_or("").to_string(),
                    );
                }
            }
            done.push((logical_id, id, props));
            continue;
        }
        let clear = body["Reason"]
            .as_str()
            .is_some_and(|r| r.contains("not-installed is not known to Apono after waiting"));
        report.check(
            &format!("Create {logical_id} fails clearly"),
            body["Status"] == "FAILED" && clear,
            summary(&body),
        );
        done.push((logical_id, id, props));
        break;
    }
    for (logical_id, id, props) in done.into_iter().rev() {
        let resource_type = w.resource_type(logical_id);
        let body = w
            .send(
                logical_id,
                Event::delete(&resource_type, "", &id).properties(props),
            )
            .await;
        report.check(
            &format!("rollback Delete {logical_id}"),
            body["Status"] == "SUCCESS",
            summary(&body),
        );
    }

    // ---- What every response and every log line must (not) contain.
    let largest =
        w.rx.accepted()
            .iter()
            .map(|r| r.body.len())
            .max()
            .unwrap_or(0);
    report.check(
        "every response within CloudFormation's 4096 bytes",
        largest <= 4096,
        format!(
            "{} responses, largest {largest} bytes",
            w.rx.accepted().len()
        ),
    );
    let mut leaks = Vec::new();
    let mut lines = 0;
    for function in w.functions.values() {
        let text = function.output_text();
        lines += text.lines().count();
        for (what, secret) in [
            ("Apono token", TOKEN),
            ("ResponseURL signature", FAKE_SIGNATURE),
            ("AWS secret key", "testing-secret-key"),
        ] {
            if text.contains(secret) {
                leaks.push(format!("{what} in {}", function.name));
            }
        }
    }
    report.check(
        "no secret in any log line (debug level)",
        leaks.is_empty() && lines > 0,
        if leaks.is_empty() {
            format!("{lines} lines scanned")
        } else {
            leaks.join(", ")
        },
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
