//! Custom::EksAccessEntries on a cluster's CloudTrail event (the cluster-events rule's input):
//! the one cluster is enrolled once it is ACTIVE, a wait longer than an invocation goes on in
//! the next one, and an event outside the stack's targets, for another stack or asking for
//! another grant changes nothing. Organizations and STS in moto, EKS in the fake.

use custom_resource::Context;
use eks_access_entries::eks::{Grant, STACK_TAG};
use eks_access_entries::fleet::{AwsFleet, Fleet};
use eks_access_entries::{ClusterEventInput, EksAccessEntries, CLUSTER_ADMIN_POLICY};
use serde_json::{json, Value};
use std::time::Duration;
use testkit::fake_eks::{FakeEks, Lifecycle};
use testkit::moto::Moto;
use testkit::org::{seed_organization, SeededOrg};

const CONNECTOR: &str = "arn:aws:iam::123456789012:role/apono-connector";
const FUNCTION: &str = "arn:aws:lambda:us-east-1:123456789012:function:eks";

struct Bench {
    moto: Moto,
    eks: FakeEks,
    org: SeededOrg,
}

/// An organization of the management account and two members in one OU; in every account an
/// ACTIVE cluster `api` in us-east-1. Clusters made through the API take 300-400 ms to create.
async fn bench() -> Bench {
    let moto = Moto::start().await;
    let org = seed_organization(&moto.sdk_config(), 2, 1).await;
    let eks = FakeEks::start(&moto.endpoint).await;
    eks.set_lifecycle(Lifecycle {
        creating: Duration::from_millis(300)..Duration::from_millis(400),
        updating: Duration::from_millis(300)..Duration::from_millis(400),
    });
    let mut accounts = vec![org.management_account_id.clone()];
    accounts.extend(org.member_account_ids.clone());
    for account in &accounts {
        eks.add_cluster(account, "us-east-1", "api", "ACTIVE", "API");
    }
    Bench { moto, eks, org }
}

impl Bench {
    /// The function as deployed (the stack's grant and stack), polling every 50 ms.
    async fn resource(&self) -> EksAccessEntries<AwsFleet> {
        let fleet = AwsFleet::new(self.moto.sdk_config(), Some(self.eks.url()))
            .await
            .unwrap();
        let mut resource = EksAccessEntries::new(fleet).allowing(Grant {
            principal_arn: CONNECTOR.into(),
            own_account_principal_arn: None,
            policy_arn: CLUSTER_ADMIN_POLICY.into(),
            namespaces: vec![],
        });
        resource.owner_stack = Some(testkit::events::STACK_ID.into());
        resource.cluster_poll = Duration::from_millis(50);
        resource
    }

    /// A cluster created through the EKS API in the management account: CREATING at first.
    async fn create_cluster(&self, name: &str) {
        self.eks
            .create_cluster_as(
                &self.moto.sdk_config(),
                "us-east-1",
                name,
                "arn:aws:iam::123456789012:role/eks-cluster",
            )
            .await;
    }

    fn has_entry(&self, account: &str, cluster: &str) -> bool {
        self.eks
            .entries(account, "us-east-1", cluster)
            .get(CONNECTOR)
            .is_some_and(|e| e.tags.contains_key(STACK_TAG))
    }
}

fn input(account: &str, cluster: &str, properties: Value) -> ClusterEventInput {
    ClusterEventInput {
        stack_id: testkit::events::STACK_ID.into(),
        logical_resource_id: "EksAccessEntries".into(),
        properties,
        account: account.into(),
        region: "us-east-1".into(),
        cluster: cluster.into(),
        event_name: "CreateCluster".into(),
        event_time: Some("2026-12-01T19:14:34Z".into()),
    }
}

fn props() -> Value {
    json!({"PrincipalArn": CONNECTOR, "Regions": "us-east-1,eu-west-1"})
}

fn context(time: Duration) -> Context {
    Context {
        handler_deadline: tokio::time::Instant::now() + time,
        invoked_function_arn: FUNCTION.into(),
    }
}

#[tokio::test]
async fn a_new_cluster_gets_its_entry_once_active_and_no_other_cluster_is_touched() {
    let b = bench().await;
    let resource = b.resource().await;
    let mgmt = b.org.management_account_id.clone();
    b.create_cluster("brand-new").await;
    let event = input(&mgmt, "brand-new", props());
    let waiting = resource
        .cluster_event(&context(Duration::from_secs(60)), &event, None, None)
        .await
        .unwrap();
    assert!(waiting.is_none(), "done in one invocation");
    assert!(b.has_entry(&mgmt, "brand-new"));
    let history = b.eks.history(&mgmt, "us-east-1", "brand-new");
    let active = history.active_since.expect("it became ACTIVE");
    let entry = history.granted[CONNECTOR];
    assert!(
        entry.duration_since(active) < Duration::from_millis(500),
        "access within a poll of ACTIVE: {:?}",
        entry.duration_since(active)
    );
    assert!(
        history.described.len() >= 2,
        "read while CREATING, then ACTIVE"
    );
    assert!(!b.has_entry(&mgmt, "api"), "only the event's cluster");
}

#[tokio::test]
async fn a_wait_longer_than_the_invocation_goes_on_in_the_next_one() {
    let b = bench().await;
    let mut resource = b.resource().await;
    // Longer than the first invocation can wait.
    resource.cluster_poll = Duration::from_millis(100);
    let mgmt = b.org.management_account_id.clone();
    b.create_cluster("slow").await;
    let event = input(&mgmt, "slow", props());
    // Less time than one poll and the hand-over reserve: the wait is handed on at once.
    let handed_on = resource
        .cluster_event(&context(Duration::from_secs(2)), &event, None, None)
        .await
        .unwrap()
        .expect("still CREATING: handed on");
    assert_eq!(handed_on.polls, 1);
    assert!(!b.has_entry(&mgmt, "slow"));
    let state = serde_json::to_value(&handed_on).unwrap();
    let done = resource
        .cluster_event(&context(Duration::from_secs(60)), &event, Some(state), None)
        .await
        .unwrap();
    assert!(done.is_none());
    assert!(b.has_entry(&mgmt, "slow"));

    // The wait is bounded: past the limit it is left to the scheduled reconcile.
    b.create_cluster("stuck").await;
    resource.cluster_wait_limit = Duration::ZERO;
    let event = input(&mgmt, "stuck", props());
    let given_up = resource
        .cluster_event(&context(Duration::from_secs(60)), &event, None, None)
        .await
        .unwrap();
    assert!(given_up.is_none());
    assert!(!b.has_entry(&mgmt, "stuck"));
}

#[tokio::test]
async fn events_outside_the_targeted_accounts_and_regions_change_nothing() {
    let b = bench().await;
    let resource = b.resource().await;
    let (member, other) = (
        b.org.member_account_ids[0].clone(),
        b.org.member_account_ids[1].clone(),
    );
    let ctx = context(Duration::from_secs(60));
    let mut excluded = props();
    excluded["ExcludedAccountIds"] = json!(member);
    let mut elsewhere = input(&member, "api", props());
    elsewhere.region = "ap-southeast-2".into();
    let mut management_from_elsewhere = props();
    management_from_elsewhere["ManagementAccountId"] = json!(b.org.management_account_id);
    let resource_elsewhere = b.resource().await;
    resource_elsewhere
        .fleet
        .learn_own_account("arn:aws:lambda:us-east-1:210987654321:function:eks");
    for (resource, event) in [
        (&resource, input(&member, "api", excluded)),
        (&resource, elsewhere),
        (&resource, input(&member, "no-such-cluster", props())),
        (
            &resource_elsewhere,
            input(
                &b.org.management_account_id,
                "api",
                management_from_elsewhere,
            ),
        ),
    ] {
        let outcome = resource
            .cluster_event(&ctx, &event, None, None)
            .await
            .unwrap();
        assert!(outcome.is_none());
    }
    assert_eq!(b.eks.mutations(), 0, "nothing written");

    // OU targeting: an account outside the OU is left alone, those in it are enrolled.
    let mut another_ou = props();
    another_ou["OrganizationalUnitIds"] = json!("ou-zzzz-00000000");
    let event = input(&member, "api", another_ou);
    resource
        .cluster_event(&ctx, &event, None, None)
        .await
        .unwrap();
    assert_eq!(b.eks.mutations(), 0, "not under that OU");
    let mut in_ou = props();
    in_ou["OrganizationalUnitIds"] = json!(b.org.ou_ids[0]);
    for account in [&member, &other] {
        let event = input(account, "api", in_ou.clone());
        resource
            .cluster_event(&ctx, &event, None, None)
            .await
            .unwrap();
    }
    assert!(b.has_entry(&member, "api") && b.has_entry(&other, "api"));
}

#[tokio::test]
async fn an_event_cannot_ask_for_another_grant_or_serve_another_stack() {
    let b = bench().await;
    let resource = b.resource().await;
    let mgmt = b.org.management_account_id.clone();
    let ctx = context(Duration::from_secs(60));
    let mut other_principal = props();
    other_principal["PrincipalArn"] = json!("arn:aws:iam::123456789012:role/attacker-admin");
    let err = resource
        .cluster_event(&ctx, &input(&mgmt, "api", other_principal), None, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("grants only"), "{err}");
    let mut other_stack = input(&mgmt, "api", props());
    other_stack.stack_id = "arn:aws:cloudformation:us-east-1:123456789012:stack/other/1".into();
    let err = resource
        .cluster_event(&ctx, &other_stack, None, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("only its own stack"), "{err}");
    for (field, bad) in [
        ("Cluster", "../x"),
        ("Account", "12"),
        ("EventName", "DeleteCluster"),
    ] {
        let mut event = input(&mgmt, "api", props());
        match field {
            "Cluster" => event.cluster = bad.into(),
            "Account" => event.account = bad.into(),
            _ => event.event_name = bad.into(),
        }
        let err = resource
            .cluster_event(&ctx, &event, None, None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
    let forged_wait = json!({"SincesMs": 1, "Polls": "x"});
    let err = resource
        .cluster_event(&ctx, &input(&mgmt, "api", props()), Some(forged_wait), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid wait state"), "{err}");
    assert_eq!(b.eks.mutations(), 0, "nothing written");
}
