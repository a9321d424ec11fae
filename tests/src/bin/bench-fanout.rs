//! The EKS fan-out benchmark, against moto and the fake EKS with injected per-call latency and
//! throttling. Every figure is a ratio against a run in the same invocation. Not a test: run
//! it with scripts/bench.sh.
//!
//! 1. Scale (`--accounts` x `--regions` x `--clusters`): a MaxConcurrency sweep against the
//!    critical-path bound and against the sequential loop.
//! 2. Throttling (`--t-accounts` x `--t-regions` x `--clusters`, default concurrency):
//!    - no faults: the reference;
//!    - one pair at a time (the sequential loop of published onboarding custom resources),
//!      timed on a sample and scaled to every pair;
//!    - one hot account (80 % of its calls throttled), the others healthy: when the others'
//!      last call is answered, against the reference;
//!    - 30 % of all calls throttled.
//!
//! The SDK keeps retry partitions (retry quotas) per process by name, so the runs go from
//! healthy to throttled: a throttled pair's quota never slows a later healthy run.
//!
//! usage: bench-fanout [--accounts 200] [--regions 17] [--clusters 2] [--latency-ms 50]
//!                     [--concurrency 16,32,64,128,256] [--t-accounts 40] [--t-regions 4]
//!                     [--sample-secs 10]

use custom_resource::Context;
use eks_access_entries::eks::Owner;
use eks_access_entries::fleet::AwsFleet;
use eks_access_entries::{EksAccessEntries, EksProps, RunResult, DEFAULT_MAX_CONCURRENCY};
use std::time::{Duration, Instant};
use testkit::arg;
use testkit::fake_eks::FakeEks;
use testkit::moto::Moto;
use testkit::org::seed_organization;

struct Shape<'a> {
    accounts: &'a [String],
    regions: &'a [String],
    clusters: usize,
}

impl Shape<'_> {
    fn pairs(&self) -> usize {
        self.accounts.len() * self.regions.len()
    }
}

#[derive(Default, Clone, Copy)]
struct Faults<'a> {
    everywhere: f64,
    hot: Option<(&'a str, f64)>,
}

struct Run {
    wall: Duration,
    calls: usize,
    throttled: usize,
    pairs_done: usize,
    created: usize,
    failed: usize,
    /// When the last call of an account other than the hot one was answered, from the start.
    others_done: Duration,
}

async fn run(
    moto: &Moto,
    shape: &Shape<'_>,
    concurrency: usize,
    latency: Duration,
    faults: Faults<'_>,
    time_limit: Option<Duration>,
) -> Run {
    let eks = FakeEks::start(&moto.endpoint).await;
    for account in shape.accounts {
        for region in shape.regions {
            for c in 0..shape.clusters {
                eks.add_cluster(account, region, &format!("cluster-{c}"), "ACTIVE", "API");
            }
        }
    }
    let resource = EksAccessEntries::new(
        AwsFleet::new(moto.sdk_config(), Some(eks.url()))
            .await
            .unwrap(),
    );
    let props: EksProps = custom_resource::props::parse(serde_json::json!({
        "PrincipalArn": "arn:aws:iam::123456789012:role/apono-connector",
        "Regions": shape.regions.join(","),
        "Accounts": shape.accounts.join(","),
        "MaxConcurrency": concurrency.to_string(),
    }))
    .unwrap();
    let owner = Owner {
        stack_id: "bench".into(),
        logical_id: "EksAccessEntries".into(),
    };
    let progress = resource.plan(Some(&props), None, &owner).await.unwrap();
    eks.set_latency(latency);
    eks.throttle_share(faults.everywhere);
    if let Some((account, share)) = faults.hot {
        eks.throttle_share_in(account, share);
    }
    // A time limit stops the run early (the sample of the sequential loop): the run keeps a
    // quarter of its time to finish what is in flight, so give it a third more.
    let limit = time_limit.map_or(Duration::from_secs(3600), |l| l * 4 / 3);
    let ctx = Context {
        handler_deadline: tokio::time::Instant::now() + limit,
        invoked_function_arn: "arn:aws:lambda:us-east-1:123456789012:function:bench".into(),
    };
    let requests_before = eks.requests();
    let started = Instant::now();
    let result = resource.run(&ctx, progress, None).await;
    let wall = started.elapsed();
    let progress = match result {
        RunResult::Finished(p) => p,
        RunResult::Unfinished(p) if time_limit.is_some() => p,
        RunResult::Unfinished(_) => panic!("the run did not finish"),
    };
    let counts = &progress.counts;
    let others_done = shape
        .accounts
        .iter()
        .filter(|a| faults.hot.is_none_or(|(hot, _)| hot != a.as_str()))
        .filter_map(|a| eks.last_answer_in(a))
        .max()
        .map_or(wall, |at| at.saturating_duration_since(started));
    Run {
        wall,
        calls: eks.requests() - requests_before,
        throttled: eks.throttled(),
        pairs_done: (counts.created + counts.present + counts.failed) / shape.clusters.max(1),
        created: counts.created,
        failed: counts.failed,
        others_done,
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// The sequential loop's time for every pair of `shape`, from a timed sample.
async fn sequential(
    moto: &Moto,
    shape: &Shape<'_>,
    latency: Duration,
    sample: Duration,
) -> Duration {
    let r = run(moto, shape, 1, latency, Faults::default(), Some(sample)).await;
    assert!(r.pairs_done > 0, "no pair finished in the sample");
    r.wall.mul_f64(shape.pairs() as f64 / r.pairs_done as f64)
}

#[tokio::main]
async fn main() {
    let number = |flag: &str, default: &str| -> usize { arg(flag, default).parse().expect(flag) };
    let accounts = number("--accounts", "200");
    let regions = number("--regions", "17");
    let clusters = number("--clusters", "2");
    let t_accounts = number("--t-accounts", "40");
    let t_regions = number("--t-regions", "4");
    let latency = Duration::from_millis(number("--latency-ms", "50") as u64);
    let sample = Duration::from_secs(number("--sample-secs", "10") as u64);
    let concurrencies: Vec<usize> = arg("--concurrency", "16,32,64,128,256")
        .split(',')
        .map(|c| c.trim().parse().expect("--concurrency"))
        .collect();
    let eks_regions = org_info::api::regions::EKS_REGIONS;
    assert!(
        regions.max(t_regions) <= eks_regions.len(),
        "at most {} regions",
        eks_regions.len()
    );
    let region_names: Vec<String> = eks_regions.iter().map(|r| r.to_string()).collect();

    eprintln!("seeding {} accounts in moto ...", accounts.max(t_accounts));
    let moto = Moto::start().await;
    let org = seed_organization(&moto.sdk_config(), accounts.max(t_accounts) - 1, 0).await;
    let mut all = vec![org.management_account_id.clone()];
    all.extend(org.member_account_ids);

    let shape = Shape {
        accounts: &all[..accounts],
        regions: &region_names[..regions],
        clusters,
    };
    scale_sweep(&moto, &shape, latency, sample, &concurrencies).await;
    let shape = Shape {
        accounts: &all[..t_accounts],
        regions: &region_names[..t_regions],
        clusters,
    };
    throttling(&moto, &shape, latency, sample).await;
}

/// The MaxConcurrency sweep at scale, against the sequential loop and the critical-path bound.
async fn scale_sweep(
    moto: &Moto,
    shape: &Shape<'_>,
    latency: Duration,
    sample: Duration,
    concurrencies: &[usize],
) {
    let default = DEFAULT_MAX_CONCURRENCY;
    let (accounts, regions, clusters) = (shape.accounts.len(), shape.regions.len(), shape.clusters);
    println!(
        "scale: {accounts} accounts x {regions} regions x {clusters} clusters = {} clusters, {} ms per EKS call",
        shape.pairs() * clusters,
        latency.as_millis()
    );
    let seq = sequential(moto, shape, latency, sample).await;
    println!(
        "sequential loop (one pair at a time; {} s sample, scaled): {}",
        sample.as_secs(),
        secs(seq)
    );
    println!("| MaxConcurrency | wall time | EKS calls | calls per pair | critical-path bound | wall / bound | sequential / wall |");
    println!("|---|---|---|---|---|---|---|");
    for &concurrency in concurrencies {
        let r = run(moto, shape, concurrency, latency, Faults::default(), None).await;
        assert_eq!(r.created, shape.pairs() * clusters);
        let per_pair = r.calls as f64 / shape.pairs() as f64;
        // Each pair is a chain of dependent calls; at most `concurrency` chains run at once.
        let bound = latency.mul_f64(per_pair * (shape.pairs() as f64 / concurrency as f64).ceil());
        println!(
            "| {concurrency}{} | {} | {} | {per_pair:.1} | {} | {:.2} | {:.0}x |",
            if concurrency == default {
                " (default)"
            } else {
                ""
            },
            secs(r.wall),
            r.calls,
            secs(bound),
            r.wall.as_secs_f64() / bound.as_secs_f64(),
            seq.as_secs_f64() / r.wall.as_secs_f64()
        );
    }
}

/// Throttling at the default MaxConcurrency: everywhere, and in one hot account.
async fn throttling(moto: &Moto, shape: &Shape<'_>, latency: Duration, sample: Duration) {
    let default = DEFAULT_MAX_CONCURRENCY;
    let (t_accounts, t_regions, clusters) =
        (shape.accounts.len(), shape.regions.len(), shape.clusters);
    println!(
        "throttling: {t_accounts} accounts x {t_regions} regions x {clusters} clusters, {} ms per EKS call, MaxConcurrency {default}",
        latency.as_millis()
    );
    println!("| run | wall time | EKS calls | throttled | failed clusters | against no faults |");
    println!("|---|---|---|---|---|---|");
    let healthy = run(moto, shape, default, latency, Faults::default(), None).await;
    assert_eq!(healthy.created, shape.pairs() * clusters);
    let row = |name: &str, r: &Run, against: Duration| {
        println!(
            "| {name} | {} | {} | {} | {} | {:.2}x |",
            secs(r.wall),
            r.calls,
            r.throttled,
            r.failed,
            r.wall.as_secs_f64() / against.as_secs_f64()
        );
    };
    row("no faults", &healthy, healthy.wall);
    let seq = sequential(moto, shape, latency, sample).await;
    println!(
        "| one pair at a time (sequential loop; {} s sample, scaled) | {} | | | | {:.2}x |",
        sample.as_secs(),
        secs(seq),
        seq.as_secs_f64() / healthy.wall.as_secs_f64()
    );
    let hot_account = shape.accounts[shape.accounts.len() / 2].as_str();
    let hot = run(
        moto,
        shape,
        default,
        latency,
        Faults {
            everywhere: 0.0,
            hot: Some((hot_account, 0.8)),
        },
        None,
    )
    .await;
    row("one account 80 % throttled: all", &hot, healthy.wall);
    println!(
        "| one account 80 % throttled: the other accounts done at | {} | | | | {:.2}x |",
        secs(hot.others_done),
        hot.others_done.as_secs_f64() / healthy.others_done.as_secs_f64()
    );
    let busy = run(
        moto,
        shape,
        default,
        latency,
        Faults {
            everywhere: 0.3,
            hot: None,
        },
        None,
    )
    .await;
    row("30 % of calls throttled", &busy, healthy.wall);
    println!(
        "\n30 % throttled against the sequential loop without faults: {:.1}x faster\n",
        seq.as_secs_f64() / busy.wall.as_secs_f64()
    );
}
