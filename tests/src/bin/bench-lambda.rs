//! Cold start and peak memory of each function binary: process start to response PUT, over
//! `--runs` fresh processes, against moto and the fakes on 127.0.0.1. Two events: a Create
//! (which calls AWS and Apono), and the rollback Delete of a failed Create (which calls
//! nothing: the process's own start-up cost). With `--before-dir`, the same binaries built
//! before a change run alternately with these, and the table shows both and their ratio. Not a
//! test: run it with scripts/bench.sh, which builds release binaries first.
//!
//! usage: bench-lambda --bin-dir target/release [--runs 10] [--before-dir DIR]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;
use testkit::arg;
use testkit::events::Event;
use testkit::fake_apono::FakeApono;
use testkit::fake_eks::FakeEks;
use testkit::fake_platform::FakePlatform;
use testkit::lambda::Function;
use testkit::moto::Moto;
use testkit::org::seed_organization;
use testkit::receiver::Receiver;

/// Time from process start to the response PUT, and the process's peak RSS in KiB.
async fn cold_start(
    bin: &Path,
    binary: &str,
    env: &[(String, String)],
    rx: &Receiver,
    name: &str,
    event: Event,
) -> (Duration, u64) {
    let function = Function::start(binary, bin, env, Duration::from_secs(60)).await;
    function
        .invoke(event.into_value(), Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{binary}: {e}"));
    let prefix = format!("/cfn-response/{name}?");
    let answer = rx
        .accepted()
        .into_iter()
        .find(|r| r.target.starts_with(&prefix))
        .unwrap_or_else(|| panic!("{binary}: no response"));
    assert_eq!(
        answer.json()["Status"],
        "SUCCESS",
        "{binary}: {}",
        answer.json()
    );
    (
        answer.at.into_std().duration_since(function.started),
        function.peak_rss_kib().unwrap_or(0),
    )
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[tokio::main]
async fn main() {
    let bin_dir = PathBuf::from(arg("--bin-dir", "target/release"));
    let runs: usize = arg("--runs", "10").parse().expect("--runs");
    let before_dir = Some(arg("--before-dir", ""))
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    let moto = Moto::start().await;
    let config = moto.sdk_config();
    let org = seed_organization(&config, 2, 0).await;
    aws_sdk_ssm::Client::new(&config)
        .put_parameter()
        .name("/apono/api-token")
        .value("bench-token-123456")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let apono = FakeApono::start("bench-token-123456").await;
    apono.add_connector("bench", "CONNECTED");
    let eks = FakeEks::start(&moto.endpoint).await;
    let mut accounts = vec![org.management_account_id.clone()];
    accounts.extend(org.member_account_ids.clone());
    for account in &accounts {
        eks.add_cluster(account, "us-east-1", "api", "ACTIVE", "API");
    }
    let platform = FakePlatform::start(&["us-east-1", "eu-west-1"]).await;
    let rx = Receiver::start().await;
    let mut env = testkit::local_run::function_env(&moto, &eks, &platform);
    // What the template sets: the fake Apono's host, and the EKS grant.
    env.extend([
        (
            "APONO_API_ALLOWED_HOSTS".to_string(),
            "127.0.0.1".to_string(),
        ),
        (
            "EKS_GRANT_PRINCIPAL_ARN".to_string(),
            "arn:aws:iam::123456789012:role/apono-connector".to_string(),
        ),
    ]);

    let cases: Vec<(&str, &str, Value)> = vec![
        ("org-info", "Custom::OrganizationInfo", json!({})),
        (
            "apono-integration",
            "Custom::AponoIntegration",
            json!({"ConnectorId": "bench", "ApiTokenParameterName": "/apono/api-token",
                   "ApiUrl": apono.url(), "IntegrationName": "bench"}),
        ),
        (
            "eks-access-entries",
            "Custom::EksAccessEntries",
            json!({"PrincipalArn": "arn:aws:iam::123456789012:role/apono-connector",
                   "Regions": "us-east-1", "MemberRoleName": "OrganizationAccountAccessRole"}),
        ),
    ];
    let bench = Bench {
        bin_dir,
        before_dir,
        runs,
        env,
        rx,
    };
    bench.creates(&cases).await;
    bench.no_call_deletes(&cases).await;
}

/// The binaries to time and where their events go.
struct Bench {
    bin_dir: PathBuf,
    before_dir: Option<PathBuf>,
    runs: usize,
    env: Vec<(String, String)>,
    rx: Receiver,
}

impl Bench {
    /// Each function's cold start on a Create, which calls AWS or Apono.
    async fn creates(&self, cases: &[(&str, &str, Value)]) {
        let Bench {
            bin_dir,
            runs,
            env,
            rx,
            ..
        } = self;
        println!("Create (calls AWS or Apono):");
        println!("| function | cold start min | median | max | peak RSS (max) |");
        println!("|---|---|---|---|---|");
        for (binary, resource_type, props) in cases {
            let mut times = Vec::new();
            let mut rss = 0;
            for run in 0..*runs {
                let name = format!("{binary}-{run}");
                let event = Event::create(resource_type, &rx.url(&name)).properties(props.clone());
                let (time, peak) =
                    cold_start(&bin_dir.join(binary), binary, env, rx, &name, event).await;
                times.push(time);
                rss = rss.max(peak);
            }
            times.sort();
            println!(
                "| {binary} | {} | {} | {} | {:.1} MiB |",
                ms(times[0]),
                ms(times[times.len() / 2]),
                ms(times[times.len() - 1]),
                rss as f64 / 1024.0
            );
        }
    }

    /// Each function's cold start with no AWS call, alternating with the binaries of
    /// `--before-dir` when given.
    async fn no_call_deletes(&self, cases: &[(&str, &str, Value)]) {
        let Bench {
            bin_dir,
            before_dir,
            runs,
            env,
            rx,
        } = self;
        println!("\nNo AWS call (the rollback Delete of a failed Create), median of {runs}:");
        match &before_dir {
            Some(_) => {
                println!(
                    "| function | before | after | after / before | peak RSS before | after |"
                );
                println!("|---|---|---|---|---|---|");
            }
            None => {
                println!("| function | median | peak RSS (max) |");
                println!("|---|---|---|");
            }
        }
        for (binary, resource_type, _) in cases {
            let mut after = (Vec::new(), 0);
            let mut before = (Vec::new(), 0);
            for run in 0..*runs {
                // Alternate, so that both see the same machine.
                let mut dirs = vec![(bin_dir, "after", &mut after)];
                if let Some(dir) = &before_dir {
                    dirs.push((dir, "before", &mut before));
                }
                for (dir, label, into) in dirs {
                    let name = format!("{binary}-noop-{run}-{label}");
                    let event =
                        Event::delete(resource_type, &rx.url(&name), "cfn-create-failed:bench");
                    let (time, peak) =
                        cold_start(&dir.join(binary), binary, env, rx, &name, event).await;
                    into.0.push(time);
                    into.1 = into.1.max(peak);
                }
            }
            let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
            let after_median = median(after.0);
            match &before_dir {
                Some(_) => {
                    let before_median = median(before.0);
                    println!(
                        "| {binary} | {} | {} | {:.2} | {} | {} |",
                        ms(before_median),
                        ms(after_median),
                        after_median.as_secs_f64() / before_median.as_secs_f64(),
                        mib(before.1),
                        mib(after.1)
                    );
                }
                None => println!("| {binary} | {} | {} |", ms(after_median), mib(after.1)),
            }
        }
    }
}
