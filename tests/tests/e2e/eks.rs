//! Custom::EksAccessEntries over an emulated organization: Organizations and STS in moto,
//! clusters and access entries in the fake EKS.
//!
//! Over 400 lines on purpose: one file holds every test of this resource, so that its behaviours
//! read side by side; each test is short and stands alone.

use custom_resource::{Context, RuntimeConfig};
use eks_access_entries::eks::{RESOURCE_TAG, STACK_TAG};
use eks_access_entries::fleet::AwsFleet;
use eks_access_entries::{EksAccessEntries, ScheduledInput, CLUSTER_ADMIN_POLICY};
use serde_json::{json, Value};
use std::time::Duration;
use testkit::events::Event;
use testkit::fake_eks::FakeEks;
use testkit::invoke::{test_config, Captured, Invoker};
use testkit::moto::Moto;
use testkit::org::seed_organization;
use testkit::receiver::Receiver;

const TYPE: &str = "Custom::EksAccessEntries";
const CONNECTOR: &str = "arn:aws:iam::123456789012:role/apono-connector";
const NEW_CONNECTOR: &str = "arn:aws:iam::123456789012:role/apono-connector-v2";
const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-2"];

struct Bench {
    moto: Moto,
    eks: FakeEks,
    rx: Receiver,
    accounts: Vec<String>,
    ou_ids: Vec<String>,
}

/// 3 accounts x 3 regions; in each: an API and an API_AND_CONFIG_MAP cluster; in us-east-1
/// also a CONFIG_MAP and a CREATING cluster. Someone else's entry for the connector role sits
/// on one cluster already.
async fn bench() -> Bench {
    let moto = Moto::start().await;
    let org = seed_organization(&moto.sdk_config(), 2, 1).await;
    let eks = FakeEks::start(&moto.endpoint).await;
    let mut accounts = vec![org.management_account_id.clone()];
    accounts.extend(org.member_account_ids.clone());
    for account in &accounts {
        for region in REGIONS {
            eks.add_cluster(account, region, "api", "ACTIVE", "API");
            eks.add_cluster(account, region, "both", "ACTIVE", "API_AND_CONFIG_MAP");
        }
        eks.add_cluster(account, "us-east-1", "legacy", "ACTIVE", "CONFIG_MAP");
        eks.add_cluster(account, "us-east-1", "young", "CREATING", "API");
    }
    eks.add_entry(&accounts[1], "eu-west-1", "api", CONNECTOR);
    Bench {
        moto,
        eks,
        rx: Receiver::start().await,
        accounts,
        ou_ids: org.ou_ids,
    }
}

impl Bench {
    async fn resource(&self) -> EksAccessEntries<AwsFleet> {
        EksAccessEntries::new(
            AwsFleet::new(self.moto.sdk_config(), Some(self.eks.url()))
                .await
                .unwrap(),
        )
    }

    async fn invoker(&self) -> Invoker<EksAccessEntries<AwsFleet>> {
        Invoker::new(self.resource().await)
    }

    async fn send(&self, invoker: &Invoker<EksAccessEntries<AwsFleet>>, event: Event) -> Value {
        let before = self.rx.accepted().len();
        invoker.invoke(event).await.unwrap();
        let sent = self.rx.accepted();
        assert_eq!(sent.len(), before + 1, "exactly one response");
        sent.last().unwrap().json()
    }

    /// Sends a raw event; exactly one answer is expected.
    async fn send_value<C: custom_resource::Continuation>(
        &self,
        invoker: &Invoker<EksAccessEntries<AwsFleet>, C>,
        event: Value,
    ) -> Value {
        let before = self.rx.accepted().len();
        invoker.invoke(event).await.unwrap();
        let sent = self.rx.accepted();
        assert_eq!(sent.len(), before + 1, "exactly one response");
        sent.last().unwrap().json()
    }

    /// Entries for `principal` that carry our tags.
    fn ours(&self, principal: &str) -> usize {
        self.eks.entries_tagged(principal, STACK_TAG)
    }
}

fn props(principal: &str) -> Value {
    json!({"PrincipalArn": principal, "Regions": REGIONS.join(","), "MaxConcurrency": "8"})
}

#[tokio::test]
async fn create_covers_every_account_region_and_mode_and_delete_removes_only_its_own() {
    let b = bench().await;
    let invoker = b.invoker().await;
    let created = b
        .send(
            &invoker,
            Event::create(TYPE, &b.rx.url("c"))
                .logical_id("EksAccessEntries")
                .properties(props(CONNECTOR)),
        )
        .await;
    assert_eq!(created["Status"], "SUCCESS", "{created}");
    let data = &created["Data"];
    assert_eq!(data["Accounts"], "3");
    assert_eq!(data["Regions"], "3");
    assert_eq!(data["Clusters"], "24", "3 accounts x (3 x 2 + 2)");
    assert_eq!(
        data["Created"], "17",
        "18 eligible, one already had an entry"
    );
    assert_eq!(data["Present"], "1");
    assert_eq!(
        data["Skipped"], "6",
        "CONFIG_MAP and CREATING in each account"
    );
    assert!(
        data["SkipReasons"].as_str().unwrap().contains("CONFIG_MAP")
            || data["SkipReasons"].as_str().unwrap().contains("CREATING")
    );

    // What was created: tagged, cluster admin, cluster scope.
    let entry = &b.eks.entries(&b.accounts[2], "ap-southeast-2", "both")[CONNECTOR];
    assert_eq!(entry.tags[STACK_TAG], testkit::events::STACK_ID);
    assert_eq!(entry.tags[RESOURCE_TAG], "EksAccessEntries");
    assert_eq!(
        entry.policies[CLUSTER_ADMIN_POLICY],
        json!({"type": "cluster"})
    );
    assert!(
        b.eks
            .entries(&b.accounts[0], "us-east-1", "legacy")
            .is_empty(),
        "CONFIG_MAP untouched"
    );
    assert_eq!(
        b.eks.mode(&b.accounts[0], "us-east-1", "legacy"),
        "CONFIG_MAP",
        "never switched without opt-in"
    );

    let physical = created["PhysicalResourceId"].as_str().unwrap();
    let deleted = b
        .send(
            &invoker,
            Event::delete(TYPE, &b.rx.url("d"), physical)
                .logical_id("EksAccessEntries")
                .properties(props(CONNECTOR)),
        )
        .await;
    assert_eq!(deleted["Status"], "SUCCESS", "{deleted}");
    assert_eq!(deleted["Data"]["Removed"], "17");
    // A CONFIG_MAP cluster holds no entries: skipped with the reason, never "failed".
    assert_eq!(deleted["Data"]["Failed"], "0", "{deleted}");
    assert_eq!(
        deleted["Data"]["Skipped"], "3",
        "one CONFIG_MAP cluster per account"
    );
    assert!(deleted["Data"]["SkipReasons"]
        .as_str()
        .unwrap()
        .contains("CONFIG_MAP: it holds no access entries"));
    assert_eq!(b.ours(CONNECTOR), 0);
    let theirs = &b.eks.entries(&b.accounts[1], "eu-west-1", "api")[CONNECTOR];
    assert_eq!(
        theirs.tags["owner"], "platform-team",
        "pre-existing entry left as it was"
    );
    assert!(!theirs.policies.contains_key(CLUSTER_ADMIN_POLICY));
}

#[tokio::test]
async fn targeted_ous_less_excluded_accounts_are_exactly_the_accounts_worked_on() {
    let b = bench().await;
    let invoker = b.invoker().await;
    // Both members sit in the one OU; the second is excluded, the management account (the
    // stack's own) stays.
    let mut properties = props(CONNECTOR);
    properties["OrganizationalUnitIds"] = json!(b.ou_ids[0]);
    properties["ExcludedAccountIds"] = json!(b.accounts[2]);
    let created = b
        .send(
            &invoker,
            Event::create(TYPE, &b.rx.url("ou"))
                .logical_id("EksAccessEntries")
                .properties(properties),
        )
        .await;
    assert_eq!(created["Status"], "SUCCESS", "{created}");
    let data = &created["Data"];
    assert_eq!(data["Accounts"], "2", "{data}");
    assert_eq!(data["Unreachable"], "0", "{data}");
    assert!(b.eks.entries(&b.accounts[2], "us-east-1", "api").is_empty());
    assert!(b
        .eks
        .entries(&b.accounts[1], "us-east-1", "api")
        .contains_key(CONNECTOR));

    // Deployed from a delegated administrator: the management account has no member role
    // (a StackSet never deploys there), so it is not worked on.
    let mut from_delegated_admin = props(CONNECTOR);
    from_delegated_admin["ManagementAccountId"] = json!(b.accounts[2]);
    let created = b
        .send(
            &invoker,
            Event::create(TYPE, &b.rx.url("da"))
                .logical_id("EksAccessEntries2")
                .properties(from_delegated_admin),
        )
        .await;
    assert_eq!(created["Data"]["Accounts"], "2", "{created}");
    assert_eq!(created["Data"]["Unreachable"], "0", "{created}");

    let mut bad = props(CONNECTOR);
    bad["ExcludedAccountIds"] = json!("12345");
    let refused = b
        .send(
            &invoker,
            Event::create(TYPE, &b.rx.url("bad"))
                .logical_id("EksAccessEntries")
                .properties(bad),
        )
        .await;
    assert_eq!(refused["Status"], "FAILED");
    assert!(
        refused["Reason"]
            .as_str()
            .unwrap()
            .contains("ExcludedAccountIds"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_no_op_update_makes_zero_mutating_calls() {
    let b = bench().await;
    let invoker = b.invoker().await;
    let created = b
        .send(
            &invoker,
            Event::create(TYPE, &b.rx.url("c")).properties(props(CONNECTOR)),
        )
        .await;
    let physical = created["PhysicalResourceId"].as_str().unwrap();
    let mutations = b.eks.mutations();
    let updated = b
        .send(
            &invoker,
            Event::update(TYPE, &b.rx.url("u"), physical)
                .properties(props(CONNECTOR))
                .old_properties(props(CONNECTOR)),
        )
        .await;
    assert_eq!(updated["Status"], "SUCCESS", "{updated}");
    assert_eq!(updated["PhysicalResourceId"], physical);
    assert_eq!(
        b.eks.mutations(),
        mutations,
        "no writes for an update that changes nothing"
    );
}

#[tokio::test]
async fn a_new_principal_gets_entries_and_the_old_ones_of_ours_are_removed() {
    let b = bench().await;
    let invoker = b.invoker().await;
    let created = b
        .send(
            &invoker,
            Event::create(TYPE, &b.rx.url("c")).properties(props(CONNECTOR)),
        )
        .await;
    let physical = created["PhysicalResourceId"].as_str().unwrap();
    // Also drop a region: its entries must go too.
    let mut new_props = props(NEW_CONNECTOR);
    new_props["Regions"] = json!("us-east-1,eu-west-1");
    let updated = b
        .send(
            &invoker,
            Event::update(TYPE, &b.rx.url("u"), physical)
                .properties(new_props)
                .old_properties(props(CONNECTOR)),
        )
        .await;
    assert_eq!(updated["Status"], "SUCCESS", "{updated}");
    assert_eq!(
        b.ours(NEW_CONNECTOR),
        12,
        "3 accounts x 2 regions x 2 eligible clusters"
    );
    assert_eq!(
        b.ours(CONNECTOR),
        0,
        "old principal's entries of ours removed everywhere"
    );
    assert!(
        b.eks
            .entries(&b.accounts[1], "eu-west-1", "api")
            .contains_key(CONNECTOR),
        "theirs kept"
    );
}

#[tokio::test]
async fn an_account_that_denies_access_is_named_with_the_missing_action() {
    let b = bench().await;
    b.eks.deny_account(&b.accounts[2]);
    let invoker = b.invoker().await;
    let created = b
        .send(
            &invoker,
            Event::create(TYPE, &b.rx.url("c")).properties(props(CONNECTOR)),
        )
        .await;
    assert_eq!(created["Status"], "SUCCESS", "{created}");
    assert_eq!(created["Data"]["Unreachable"], "3");
    let reasons = created["Data"]["SkipReasons"].as_str().unwrap();
    assert!(
        reasons.contains(&b.accounts[2]) && reasons.contains("eks:ListClusters"),
        "{reasons}"
    );

    let mut strict = props(CONNECTOR);
    strict["FailOnSkipped"] = json!("true");
    let failed = b
        .send(
            &invoker,
            Event::create(TYPE, &b.rx.url("f")).properties(strict),
        )
        .await;
    assert_eq!(failed["Status"], "FAILED");
    let reason = failed["Reason"].as_str().unwrap();
    assert!(
        reason.contains("FailOnSkipped") && reason.contains(&b.accounts[2]),
        "{reason}"
    );
    // Entries were created before the failure: the rollback's Delete must remove them.
    let physical = failed["PhysicalResourceId"].as_str().unwrap().to_string();
    assert!(
        !physical.starts_with(custom_resource::FAILED_CREATE_PREFIX),
        "{physical}"
    );
    let rollback = b
        .send(
            &invoker,
            Event::delete(TYPE, &b.rx.url("r"), &physical).properties(props(CONNECTOR)),
        )
        .await;
    assert_eq!(rollback["Status"], "SUCCESS", "{rollback}");
    assert_eq!(
        b.ours(CONNECTOR),
        0,
        "the failed Create left nothing behind"
    );
}

#[tokio::test]
async fn injected_throttling_still_converges() {
    let b = bench().await;
    b.eks.throttle_next(12);
    let invoker = b.invoker().await;
    let created = b
        .send(
            &invoker,
            Event::create(TYPE, &b.rx.url("c")).properties(props(CONNECTOR)),
        )
        .await;
    assert_eq!(created["Status"], "SUCCESS", "{created}");
    assert_eq!(created["Data"]["Created"], "17");
    assert_eq!(created["Data"]["Failed"], "0");
    assert_eq!(created["Data"]["Unreachable"], "0");
}

#[tokio::test]
async fn with_a_short_deadline_the_work_continues_in_new_invocations_and_answers_once() {
    let b = bench().await;
    b.eks.set_latency(Duration::from_millis(60));
    let captured = Captured::default();
    let mut invoker = Invoker::with_config(
        b.resource().await,
        captured.clone(),
        RuntimeConfig {
            deadline_margin: Duration::from_millis(500),
            ..test_config()
        },
    );
    invoker.lambda_timeout = Duration::from_millis(2500);
    let mut slow = props(CONNECTOR);
    slow["MaxConcurrency"] = json!("1");
    invoker
        .invoke(Event::create(TYPE, &b.rx.url("c")).properties(slow))
        .await
        .unwrap();
    let mut invocations = 1;
    while let Some(next) = captured.take() {
        assert!(
            b.rx.accepted().is_empty(),
            "no answer before the work is done"
        );
        invoker.invoke(next).await.unwrap();
        invocations += 1;
        assert!(invocations < 50, "no progress");
    }
    assert!(
        invocations > 1,
        "the deadline forced at least one continuation"
    );
    let sent = b.rx.accepted();
    assert_eq!(sent.len(), 1, "one answer for the whole operation");
    let body = sent[0].json();
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(body["Data"]["Created"], "17");
    assert_eq!(
        body["Data"]["Clusters"], "24",
        "every pair counted exactly once"
    );
}

#[tokio::test]
async fn the_scheduled_reconcile_adds_an_entry_for_a_cluster_created_after_the_stack() {
    let b = bench().await;
    let resource = b.resource().await;
    let invoker = Invoker::new(b.resource().await);
    b.send(
        &invoker,
        Event::create(TYPE, &b.rx.url("c"))
            .logical_id("EksAccessEntries")
            .properties(props(CONNECTOR)),
    )
    .await;
    b.eks
        .add_cluster(&b.accounts[1], "eu-west-1", "brand-new", "ACTIVE", "API");
    let input = ScheduledInput {
        stack_id: testkit::events::STACK_ID.into(),
        logical_resource_id: "EksAccessEntries".into(),
        properties: props(CONNECTOR),
    };
    let ctx = Context {
        handler_deadline: tokio::time::Instant::now() + Duration::from_secs(60),
        invoked_function_arn: "arn:aws:lambda:us-east-1:123456789012:function:eks".into(),
    };
    let unfinished = resource.scheduled(&ctx, &input, None, None).await.unwrap();
    assert!(unfinished.is_none());
    let entry = &b.eks.entries(&b.accounts[1], "eu-west-1", "brand-new")[CONNECTOR];
    assert_eq!(
        entry.tags[RESOURCE_TAG], "EksAccessEntries",
        "tagged as the stack's, so Delete removes it"
    );
}

// ---- Attacks: whoever can invoke the function gets nothing the stack did not grant.

fn stack_grant() -> eks_access_entries::eks::Grant {
    eks_access_entries::eks::Grant {
        principal_arn: CONNECTOR.into(),
        own_account_principal_arn: None,
        policy_arn: CLUSTER_ADMIN_POLICY.into(),
        namespaces: vec![],
    }
}

impl Bench {
    /// The function as deployed: the stack's grant and stack in its configuration.
    async fn guarded(&self) -> EksAccessEntries<AwsFleet> {
        let mut resource = self.resource().await.allowing(stack_grant());
        resource.owner_stack = Some(testkit::events::STACK_ID.into());
        resource
    }
}

#[tokio::test]
async fn a_direct_invoke_asking_for_another_principal_or_policy_is_refused_and_grants_nothing() {
    let b = bench().await;
    let invoker = Invoker::new(b.guarded().await);
    let admin = "arn:aws:iam::123456789012:role/attacker-admin";
    let view = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy";
    let mut asks = vec![props(admin)];
    let mut other_policy = props(CONNECTOR);
    other_policy["AccessPolicyArn"] = json!(view);
    asks.push(other_policy);
    let mut namespaced = props(CONNECTOR);
    namespaced["AccessScope"] = json!("namespace");
    namespaced["Namespaces"] = json!("kube-system");
    asks.push(namespaced);
    for (i, ask) in asks.into_iter().enumerate() {
        let answer = b
            .send(
                &invoker,
                Event::create(TYPE, &b.rx.url(&format!("attack-{i}")))
                    .logical_id("EksAccessEntries")
                    .properties(ask),
            )
            .await;
        assert_eq!(answer["Status"], "FAILED", "{answer}");
        let reason = answer["Reason"].as_str().unwrap();
        assert!(
            reason.contains("refused: this function grants only"),
            "{reason}"
        );
    }
    assert_eq!(b.eks.mutations(), 0, "nothing was written");
    // The stack's own grant still works.
    let answer = b
        .send(
            &invoker,
            Event::create(TYPE, &b.rx.url("own"))
                .logical_id("EksAccessEntries")
                .properties(props(CONNECTOR)),
        )
        .await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
}

/// One way of tampering with a continuation event.
type Tamper = fn(&mut Value);

#[tokio::test]
async fn a_forged_continuation_cannot_change_the_grant_or_the_owner() {
    use custom_resource::CONTINUATION_KEY;
    let b = bench().await;
    let captured = Captured::default();
    let invoker = Invoker::with_config(b.guarded().await, captured.clone(), test_config());
    // The state a continuation of the stack's own Create carries (as `Progress` serializes).
    let mut genuine = Event::create(TYPE, "")
        .logical_id("EksAccessEntries")
        .properties(props(CONNECTOR))
        .into_value();
    genuine[CONTINUATION_KEY] = json!({
        "new": {"accounts": [b.accounts[0]], "regions": ["us-east-1"],
                "grant": {"principal_arn": CONNECTOR, "policy_arn": CLUSTER_ADMIN_POLICY, "namespaces": []},
                "member_role": "apono-eks-access-entries", "enable_api_mode": false},
        "old": null, "done": "", "counts": eks_access_entries::Counts::default(),
        "owner_stack": testkit::events::STACK_ID,
        "owner_logical": "EksAccessEntries", "fail_on_skipped": false, "max_concurrency": 8
    });
    // Untampered, it is accepted and does its work.
    let mut own = genuine.clone();
    own["ResponseURL"] = json!(b.rx.url("own-continuation"));
    let answer = b.send_value(&invoker, own).await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert!(captured.take().is_none());
    let mutations = b.eks.mutations();
    let tampered: Vec<(&str, Tamper)> = vec![
        ("another principal", |v: &mut Value| {
            v[CONTINUATION_KEY]["new"]["grant"]["principal_arn"] =
                json!("arn:aws:iam::123456789012:role/attacker-admin");
        }),
        ("another policy", |v: &mut Value| {
            v[CONTINUATION_KEY]["new"]["grant"]["policy_arn"] =
                json!("arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminPolicy");
        }),
        ("another stack's entries", |v: &mut Value| {
            v[CONTINUATION_KEY]["owner_stack"] =
                json!("arn:aws:cloudformation:us-east-1:123456789012:stack/other/1");
        }),
        ("a malformed account", |v: &mut Value| {
            v[CONTINUATION_KEY]["new"]["accounts"] = json!(["../../etc"]);
        }),
        ("a bitmap longer than the work", |v: &mut Value| {
            v[CONTINUATION_KEY]["done"] = json!("f".repeat(10_000));
        }),
    ];
    for (what, tamper) in tampered {
        let mut forged = genuine.clone();
        tamper(&mut forged);
        let name = format!("forged-{}", what.replace(' ', "-"));
        forged["ResponseURL"] = json!(b.rx.url(&name));
        forged["RequestId"] = json!(name); // a new delivery, not a repeat of the genuine one
        let answer = b.send_value(&invoker, forged).await;
        assert_eq!(answer["Status"], "FAILED", "{what}: {answer}");
        assert!(
            answer["Reason"].as_str().unwrap().contains("refused"),
            "{what}: {answer}"
        );
    }
    assert_eq!(
        b.eks.mutations(),
        mutations,
        "no forged state wrote anything"
    );
}

#[tokio::test]
async fn a_scheduled_event_for_another_stack_or_principal_is_refused() {
    let b = bench().await;
    let resource = b.guarded().await;
    let ctx = Context {
        handler_deadline: tokio::time::Instant::now() + Duration::from_secs(60),
        invoked_function_arn: "arn:aws:lambda:us-east-1:123456789012:function:eks".into(),
    };
    let other_stack = ScheduledInput {
        stack_id: "arn:aws:cloudformation:us-east-1:123456789012:stack/other/1".into(),
        logical_resource_id: "EksAccessEntries".into(),
        properties: props(CONNECTOR),
    };
    let err = resource
        .scheduled(&ctx, &other_stack, None, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("only its own stack"), "{err}");
    let other_principal = ScheduledInput {
        stack_id: testkit::events::STACK_ID.into(),
        properties: props("arn:aws:iam::123456789012:role/attacker-admin"),
        ..other_stack
    };
    let err = resource
        .scheduled(&ctx, &other_principal, None, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("grants only"), "{err}");
    assert_eq!(b.eks.mutations(), 0);
}
