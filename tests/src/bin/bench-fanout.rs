//! The EKS fan-out benchmark: N accounts x R regions x C clusters against moto and the fake
//! EKS with injected per-call latency, at several concurrencies. Reports wall time next to the
//! critical-path lower bound. Not a test: run it with scripts/bench.sh.
//!
//! usage: bench-fanout [--accounts 200] [--regions 17] [--clusters 2] [--latency-ms 50]
//!                     [--concurrency 8,32,128]

use bench::arg;
use bench::fake_eks::FakeEks;
use bench::moto::Moto;
use bench::org::seed_organization;
use custom_resource::Context;
use eks_access_entries::eks::Owner;
use eks_access_entries::fleet::AwsFleet;
use eks_access_entries::{EksAccessEntries, EksProps, RunResult};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let accounts: usize = arg("--accounts", "200").parse().expect("--accounts");
    let regions: usize = arg("--regions", "17").parse().expect("--regions");
    let clusters: usize = arg("--clusters", "2").parse().expect("--clusters");
    let latency = Duration::from_millis(arg("--latency-ms", "50").parse().expect("--latency-ms"));
    let concurrencies: Vec<usize> = arg("--concurrency", "8,32,128")
        .split(',')
        .map(|c| c.trim().parse().expect("--concurrency"))
        .collect();
    let region_names: Vec<String> = custom_resource::aws::EKS_REGIONS
        .iter()
        .take(regions)
        .map(|r| r.to_string())
        .collect();
    assert_eq!(
        region_names.len(),
        regions,
        "at most {} regions",
        custom_resource::aws::EKS_REGIONS.len()
    );

    eprintln!("seeding {accounts} accounts in moto ...");
    let moto = Moto::start().await;
    let org = seed_organization(&moto.sdk_config(), accounts.saturating_sub(1), 0).await;
    let mut all = vec![org.management_account_id.clone()];
    all.extend(org.member_account_ids);
    let pairs = all.len() * regions;
    println!(
        "fan-out: {} accounts x {regions} regions x {clusters} clusters = {} clusters, {} ms per EKS call",
        all.len(),
        pairs * clusters,
        latency.as_millis()
    );
    println!(
        "| concurrency | wall time | EKS calls | calls per pair | lower bound | wall / bound |"
    );
    println!("|---|---|---|---|---|---|");
    for concurrency in concurrencies {
        let eks = FakeEks::start(&moto.endpoint).await;
        for account in &all {
            for region in &region_names {
                for c in 0..clusters {
                    eks.add_cluster(account, region, &format!("cluster-{c}"), "ACTIVE", "API");
                }
            }
        }
        // Warm the fake's account lookups so that they do not count as EKS latency.
        let resource = EksAccessEntries::new(
            AwsFleet::new(moto.sdk_config(), Some(eks.url()))
                .await
                .unwrap(),
        );
        let props: EksProps = custom_resource::props::parse(
            serde_json::json!({
                "PrincipalArn": "arn:aws:iam::123456789012:role/apono-connector",
                "Regions": region_names.join(","),
                "MaxConcurrency": concurrency.to_string(),
            }),
            &[],
        )
        .unwrap();
        let owner = Owner {
            stack_id: "bench".into(),
            logical_id: "EksAccessEntries".into(),
        };
        let progress = resource.plan(Some(&props), None, &owner).await.unwrap();
        eks.set_latency(latency);
        let ctx = Context {
            handler_deadline: tokio::time::Instant::now() + Duration::from_secs(3600),
            invoked_function_arn: "bench".into(),
        };
        let requests_before = eks.requests();
        let started = Instant::now();
        let result = resource.run(&ctx, progress).await;
        let wall = started.elapsed();
        let RunResult::Finished(done) = result else {
            panic!("the run did not finish");
        };
        assert_eq!(done.counts.created, pairs * clusters, "{:?}", done.counts);
        let calls = eks.requests() - requests_before;
        let per_pair = calls as f64 / pairs as f64;
        // Each pair is a chain of dependent calls; at most `concurrency` chains run at once.
        let bound = latency.mul_f64(per_pair * (pairs as f64 / concurrency as f64).ceil());
        println!(
            "| {concurrency} | {:.1} s | {calls} | {per_pair:.1} | {:.1} s | {:.2} |",
            wall.as_secs_f64(),
            bound.as_secs_f64(),
            wall.as_secs_f64() / bound.as_secs_f64()
        );
    }
}
