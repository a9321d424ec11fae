//! A corpus of bad input through every function: each event gets one FAILED answer naming what
//! is wrong (or, for a ResponseURL that is not Amazon S3, no request at all), and nothing is
//! created, changed or deleted anywhere.

use apono_integration::token::AwsTokens;
use apono_integration::AponoIntegration;
use custom_resource::response::UrlPolicy;
use custom_resource::RuntimeConfig;
use eks_access_entries::fleet::AwsFleet;
use eks_access_entries::EksAccessEntries;
use org_info::OrgInfo;
use serde_json::{json, Value};
use testkit::events::Event;
use testkit::fake_apono::FakeApono;
use testkit::fake_eks::FakeEks;
use testkit::invoke::{test_config, Invoker};
use testkit::moto::Moto;
use testkit::org::{seed_organization, MotoOrgApi};
use testkit::receiver::Receiver;

/// (what is wrong, properties or request type override, the word the reason must contain)
type Case = (&'static str, Value, &'static str);

fn org_cases() -> Vec<Case> {
    vec![
        (
            "invalid organization ID",
            json!({"OrganizationId": "o-BAD"}),
            "OrganizationId",
        ),
        ("invalid root ID", json!({"RootId": "root"}), "RootId"),
        (
            "oversized ID",
            json!({"OrganizationId": format!("o-{}", "a".repeat(5000))}),
            "OrganizationId",
        ),
        (
            "wrong-typed boolean",
            json!({"RequireManagementAccount": "maybe"}),
            "RequireManagementAccount",
        ),
        (
            "list where a string goes",
            json!({"RootId": ["r-ab12"]}),
            "RootId",
        ),
        ("unknown property", json!({"RootID": "r-ab12"}), "RootID"),
    ]
}

fn apono_cases(url: &str) -> Vec<Case> {
    let base = json!({"ConnectorId": "c1", "ApiTokenParameterName": "/apono/api-token", "ApiUrl": url, "IntegrationName": "n"});
    let with = |k: &str, v: Value| {
        let mut p = base.clone();
        p[k] = v;
        p
    };
    let without = |k: &str| {
        let mut p = base.clone();
        p.as_object_mut().unwrap().remove(k);
        p
    };
    vec![
        ("missing connector", without("ConnectorId"), "ConnectorId"),
        (
            "missing token parameter",
            without("ApiTokenParameterName"),
            "ApiTokenParameterName",
        ),
        (
            "token instead of its parameter name",
            with("ApiTokenParameterName", json!("eyJhbGciOi JIUzI1NiJ9 x")),
            "ApiTokenParameterName",
        ),
        (
            "plain http to a remote host",
            with("ApiUrl", json!("http://api.apono.io")),
            "ApiUrl",
        ),
        (
            "wrong-typed number",
            with("ConnectorWaitSeconds", json!("soon")),
            "ConnectorWaitSeconds",
        ),
        (
            "oversized name",
            with("IntegrationName", json!("n".repeat(10_000))),
            "IntegrationName",
        ),
        (
            "invalid organization ID",
            with("OrganizationId", json!("org-1")),
            "OrganizationId",
        ),
        (
            "unknown property",
            with("ApiToken", json!("secret-value-123456")),
            "ApiToken",
        ),
    ]
}

fn eks_cases() -> Vec<Case> {
    let base = json!({"PrincipalArn": "arn:aws:iam::123456789012:role/apono-connector", "Regions": "us-east-1"});
    let with = |k: &str, v: Value| {
        let mut p = base.clone();
        p[k] = v;
        p
    };
    vec![
        (
            "missing principal",
            json!({"Regions": "us-east-1"}),
            "PrincipalArn",
        ),
        (
            "invalid principal",
            with("PrincipalArn", json!("arn:aws:iam::123:role/x")),
            "PrincipalArn",
        ),
        (
            "invalid account",
            with("Accounts", json!("12345")),
            "Accounts",
        ),
        (
            "invalid region",
            with("Regions", json!("us_east_1")),
            "Regions",
        ),
        (
            "oversized region list",
            with("Regions", json!("x".repeat(10_000))),
            "Regions",
        ),
        (
            "wrong-typed number",
            with("MaxConcurrency", json!("lots")),
            "MaxConcurrency",
        ),
        (
            "out-of-range number",
            with("MaxConcurrency", json!("0")),
            "MaxConcurrency",
        ),
        (
            "not an access policy",
            with(
                "AccessPolicyArn",
                json!("arn:aws:iam::aws:policy/AdministratorAccess"),
            ),
            "AccessPolicyArn",
        ),
        (
            "namespaces without namespace scope",
            with("Namespaces", json!(["a"])),
            "Namespaces",
        ),
    ]
}

async fn expect_failures<R: custom_resource::CustomResource>(
    invoker: &Invoker<R>,
    rx: &Receiver,
    resource_type: &str,
    cases: Vec<Case>,
) {
    for (what, props, word) in cases {
        let before = rx.accepted().len();
        for kind in ["Create", "Update"] {
            let event = match kind {
                "Create" => Event::create(resource_type, &rx.url("bad")),
                _ => Event::update(resource_type, &rx.url("bad"), "existing-id"),
            }
            .properties(props.clone());
            invoker.invoke(event).await.unwrap();
        }
        let answers = &rx.accepted()[before..];
        assert_eq!(
            answers.len(),
            2,
            "{resource_type} {what}: one answer per event"
        );
        for answer in answers {
            let body = answer.json();
            assert_eq!(body["Status"], "FAILED", "{resource_type} {what}: {body}");
            let reason = body["Reason"].as_str().unwrap();
            assert!(
                reason.contains(word),
                "{resource_type} {what}: {reason:?} should name {word}"
            );
            assert!(answer.body.len() <= 4096);
            assert!(
                !reason.contains("secret-value-123456"),
                "a value that may be secret is not echoed"
            );
        }
    }
    // An unknown request type, and a ResponseURL that is not Amazon S3.
    invoker
        .invoke(Event::create(resource_type, &rx.url("odd")).request_type("Replace"))
        .await
        .unwrap();
    let body = rx.accepted().last().unwrap().json();
    assert_eq!(body["Status"], "FAILED");
    assert!(body["Reason"].as_str().unwrap().contains("Replace"));
}

#[tokio::test]
async fn every_function_refuses_bad_input_clearly_and_changes_nothing() {
    let moto = Moto::start().await;
    let config = moto.sdk_config();
    let org = seed_organization(&config, 1, 0).await;
    let apono = FakeApono::start("token-abcdef").await;
    let eks = FakeEks::start(&moto.endpoint).await;
    eks.add_cluster(
        &org.management_account_id,
        "us-east-1",
        "api",
        "ACTIVE",
        "API",
    );
    let rx = Receiver::start().await;

    let org_invoker = Invoker::new(OrgInfo::new(MotoOrgApi::new(&config)));
    expect_failures(&org_invoker, &rx, "Custom::OrganizationInfo", org_cases()).await;

    let apono_invoker = Invoker::new(
        AponoIntegration::new(AwsTokens::new(&config)).also_allowing(["127.0.0.1".to_string()]),
    );
    expect_failures(
        &apono_invoker,
        &rx,
        "Custom::AponoIntegration",
        apono_cases(&apono.url()),
    )
    .await;

    let fleet = AwsFleet::new(config.clone(), Some(eks.url()))
        .await
        .unwrap();
    let eks_invoker = Invoker::new(EksAccessEntries::new(fleet));
    expect_failures(&eks_invoker, &rx, "Custom::EksAccessEntries", eks_cases()).await;

    assert_eq!(apono.requests().len(), 0, "bad input never reached Apono");
    assert_eq!(eks.requests(), 0, "bad input never reached EKS");

    // Production policy: a ResponseURL off Amazon S3 is never requested, whatever the event.
    let strict = Invoker::with(
        OrgInfo::new(MotoOrgApi::new(&config)),
        RuntimeConfig {
            url_policy: UrlPolicy::AwsS3Only,
            ..test_config()
        },
    );
    let before = rx.requests().len();
    strict
        .invoke(Event::create("Custom::OrganizationInfo", &rx.url("local")))
        .await
        .unwrap();
    strict
        .invoke(Event::create(
            "Custom::OrganizationInfo",
            "https://example.com/x?X-Amz-Signature=1",
        ))
        .await
        .unwrap();
    assert_eq!(rx.requests().len(), before, "no request made");
}
