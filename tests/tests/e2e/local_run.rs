//! The README's first command, at a small size, so that it cannot rot.

#[tokio::test]
async fn the_local_run_completes_every_lifecycle_step() {
    let report = testkit::local_run::run(&testkit::local_run::Options {
        member_accounts: 3,
        organizational_units: 2,
        regions: 2,
        seeds: vec![1, 2],
        only: String::new(),
    })
    .await;
    let failed: Vec<_> = report.steps.iter().filter(|s| !s.ok).collect();
    assert!(report.steps.len() >= 20, "{:?}", report.steps);
    assert!(failed.is_empty(), "{failed:?}");
}
