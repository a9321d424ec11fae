//! Cold start and peak memory of each function binary: process start to response PUT, over
//! `--runs` fresh processes, against moto and the fakes on 127.0.0.1. Not a test: run it with
//! scripts/bench.sh, which builds release binaries first.
//!
//! usage: bench-lambda --bin-dir target/release [--runs 10]

use bench::arg;
use bench::events::Event;
use bench::fake_apono::FakeApono;
use bench::fake_eks::FakeEks;
use bench::fake_platform::FakePlatform;
use bench::lambda::Function;
use bench::moto::Moto;
use bench::org::seed_organization;
use bench::receiver::Receiver;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

#[tokio::main]
async fn main() {
    let bin_dir = PathBuf::from(arg("--bin-dir", "target/release"));
    let runs: usize = arg("--runs", "10").parse().expect("--runs");
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
    let env = bench::local_run::function_env(&moto, &eks, &platform);

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
    println!("| function | cold start min | median | max | peak RSS (max) |");
    println!("|---|---|---|---|---|");
    for (binary, resource_type, props) in cases {
        let mut times = Vec::new();
        let mut rss = 0;
        for run in 0..runs {
            let name = format!("{binary}-{run}");
            let function =
                Function::start(binary, &bin_dir.join(binary), &env, Duration::from_secs(60)).await;
            let event = Event::create(resource_type, &rx.url(&name)).properties(props.clone());
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
            times.push(answer.at.into_std().duration_since(function.started));
            rss = rss.max(function.peak_rss_kib().unwrap_or(0));
        }
        times.sort();
        let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
        println!(
            "| {binary} | {} | {} | {} | {:.1} MiB |",
            ms(times[0]),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1]),
            rss as f64 / 1024.0
        );
    }
}
