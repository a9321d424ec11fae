//! The local deploy behind `scripts/local-run.sh`: template.yaml after the SAM transform,
//! deployed by the CloudFormation model in [`crate::deploy`] (rules, dependency order, seeded
//! parallel starts, rollback) into an emulated organization: moto, fakes for what moto lacks,
//! and the real function binaries behind a local Lambda runtime API. Every resource of the
//! template is created, updated and deleted; what each one does is modelled in [`LocalCloud`].

use crate::fake_eks::FakeEks;
use crate::fake_platform::FakePlatform;
use crate::moto::Moto;
use crate::receiver::FAKE_SIGNATURE;
use std::path::PathBuf;
use std::time::{Duration, Instant};

mod cloud;
mod enrolment;
mod eventbridge;
mod failing;
mod iam;
mod operation;
mod provider;
mod scenario;
mod stackset;
mod targeting;
mod world;
use cloud::LocalCloud;
use eventbridge::*;
use iam::*;
use operation::*;
use scenario::*;
use stackset::*;
use targeting::*;
use world::*;

#[derive(Debug, Clone)]
pub struct Options {
    pub member_accounts: usize,
    pub organizational_units: usize,
    pub regions: usize,
    /// Each scenario runs once per seed; the seed shuffles the order among ready resources.
    pub seeds: Vec<u64>,
    /// Only the scenarios whose name contains this (all when empty).
    pub only: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            member_accounts: 6,
            organizational_units: 2,
            regions: 3,
            seeds: vec![1, 2],
            only: String::new(),
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
    /// Time from ACTIVE to the access (entry and policy) on each cluster enrolled by its event (simulated).
    pub latencies: Vec<Duration>,
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

/// The waits of a cluster's life (its creation, CloudTrail's delivery, the function's polls)
/// run at a hundredth of their length in AWS: a new cluster takes minutes, not seconds. Times
/// measured on them are reported multiplied back ("simulated").
pub(super) const TIME_SCALE: u32 = 100;
/// EKS creates a cluster in about 10 minutes (AWS's EKS user guide: "typically takes between 10
/// and 15 minutes"); here 6-12.
const CLUSTER_CREATING: std::ops::Range<Duration> = minutes(6)..minutes(12);
/// An UpdateClusterConfig of the authentication mode: a few minutes.
const CLUSTER_UPDATING: std::ops::Range<Duration> = minutes(1)..minutes(3);
/// CloudTrail hands events to EventBridge "on a best effort basis"; assumed here: 30 s to 3 min.
const CLOUDTRAIL_DELAY: std::ops::Range<Duration> = Duration::from_secs(30)..minutes(3);
/// The function's poll while a cluster is not ACTIVE (its production default, 15 s).
const CLUSTER_POLL: Duration = eks_access_entries::DEFAULT_CLUSTER_POLL;

const fn minutes(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

/// A range of durations as the local deploy runs it.
pub(super) fn scaled(range: std::ops::Range<Duration>) -> std::ops::Range<Duration> {
    range.start / TIME_SCALE..range.end / TIME_SCALE
}

const TOKEN: &str = "apono-local-api-token-7c1d92e4";
const TOKEN_PARAMETER: &str = "/apono/api-token";
/// The connector token, given as the NoEcho `ConnectorToken` in one scenario.
const CONNECTOR_TOKEN: &str = "apono-local-connector-token-3b8e0f61";
const CONNECTOR_ID: &str = "local-connector";

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

/// Every scope x connector mode, once per seed; the report says whether every step behaved.
pub async fn run(options: &Options) -> Report {
    let started = Instant::now();
    let mut report = Report::default();
    println!("local deploy: building the function binaries ...");
    let bin = match build_binaries() {
        Ok(bin) => bin,
        Err(e) => {
            report.check("build the functions", false, e);
            return report;
        }
    };
    let template = crate::cfn::transformed_template("template.yaml");
    let scenarios = [
        Scenario {
            scope: "Organization",
            mode: "Deploy",
            minimal: true,
            ..Default::default()
        },
        Scenario {
            scope: "Organization",
            mode: "Existing",
            targeting: Targeting::FirstOuLessOne,
            managed_connector: true,
            ..Default::default()
        },
        Scenario {
            scope: "Organization",
            mode: "Existing",
            delegated_admin: true,
            targeting: Targeting::OneBrokenAccount,
            ..Default::default()
        },
        Scenario {
            scope: "Account",
            mode: "Deploy",
            tokens_as_parameters: true,
            ..Default::default()
        },
        Scenario {
            scope: "Account",
            mode: "Existing",
            account_roles: true,
            ..Default::default()
        },
    ];
    let mut functions = Vec::new();
    let chosen = scenarios
        .iter()
        .filter(|s| s.tag(0).contains(&options.only));
    for (i, scenario) in chosen.enumerate() {
        for (j, seed) in options.seeds.iter().enumerate() {
            let first = i == 0 && j == 0;
            functions.extend(
                lifecycle(
                    &mut report,
                    options,
                    &bin,
                    &template,
                    scenario,
                    *seed,
                    first,
                )
                .await,
            );
        }
    }

    // ---- What every log line must not contain.
    let mut leaks = Vec::new();
    let mut lines = 0;
    for function in &functions {
        // LOCAL_RUN_DUMP=/path keeps each process's output (path.NAME.N), for debugging.
        if let Ok(path) = std::env::var("LOCAL_RUN_DUMP") {
            let _ = std::fs::write(format!("{path}.{}.{lines}", function.name), &function.text);
        }
        lines += function.text.lines().count();
        for (what, secret) in [
            ("Apono token", TOKEN),
            ("connector token", CONNECTOR_TOKEN),
            ("ResponseURL signature", FAKE_SIGNATURE),
            ("AWS secret key", function.secret.as_str()),
        ] {
            if function.text.contains(secret) {
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

    let mut latencies = report.latencies.clone();
    latencies.sort();
    if let (Some(first), Some(last)) = (latencies.first(), latencies.last()) {
        println!(
            "\nnew clusters enrolled by their CloudTrail events: {}; from ACTIVE to access (entry and policy), simulated: min {:.1} s, median {:.1} s, max {:.1} s (goal: under {} s)",
            latencies.len(),
            first.as_secs_f64(),
            latencies[latencies.len() / 2].as_secs_f64(),
            last.as_secs_f64(),
            enrolment::LATENCY_GOAL.as_secs()
        );
    }
    println!(
        "\n{} in {:.1} s: {} of {} steps behaved",
        if report.ok() { "PASSED" } else { "FAILED" },
        started.elapsed().as_secs_f64(),
        report.steps.iter().filter(|s| s.ok).count(),
        report.steps.len()
    );
    report
}
