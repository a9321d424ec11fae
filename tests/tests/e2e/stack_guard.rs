//! Runs outside a CloudFormation operation (the schedule, a cluster event) and the stack's own
//! operations: Lambda runs them side by side, so a scheduled run may still be writing when the
//! stack's Delete removes the entries. Such a run reads the stack again after each entry it
//! makes; if the stack changed, it removes that entry and stops. The stack lives in moto's
//! CloudFormation, the clusters in the fake EKS.

use custom_resource::Context;
use eks_access_entries::eks::STACK_TAG;
use eks_access_entries::fleet::{AwsFleet, Fleet};
use eks_access_entries::{EksAccessEntries, ScheduledInput, StackGuard};
use serde_json::json;
use std::time::Duration;
use testkit::fake_eks::FakeEks;
use testkit::moto::Moto;
use testkit::org::seed_organization;

const CONNECTOR: &str = "arn:aws:iam::123456789012:role/apono-connector";
const FUNCTION: &str = "arn:aws:lambda:us-east-1:123456789012:function:eks";

/// A stack in moto (its status and LastUpdatedTime are what a run compares), and an ACTIVE
/// cluster in two regions of the management account.
async fn stack_and_cluster() -> (Moto, FakeEks, String, String) {
    let moto = Moto::start().await;
    let org = seed_organization(&moto.sdk_config(), 1, 1).await;
    let eks = FakeEks::start(&moto.endpoint).await;
    for region in ["us-east-1", "eu-west-1"] {
        eks.add_cluster(&org.management_account_id, region, "api", "ACTIVE", "API");
    }
    let cfn = aws_sdk_cloudformation::Client::new(&moto.sdk_config());
    let template =
        r#"{"Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}}"#;
    let stack_id = cfn
        .create_stack()
        .stack_name("apono-onboarding")
        .template_body(template)
        .send()
        .await
        .unwrap()
        .stack_id
        .unwrap();
    (moto, eks, stack_id, org.management_account_id)
}

async fn scheduled_run(moto: &Moto, eks: &FakeEks, guard: &StackGuard) -> bool {
    let fleet = AwsFleet::new(moto.sdk_config(), Some(eks.url()))
        .await
        .unwrap();
    let resource = EksAccessEntries::new(fleet);
    let input = ScheduledInput {
        stack_id: testkit::events::STACK_ID.into(),
        logical_resource_id: "EksAccessEntries".into(),
        properties: json!({"PrincipalArn": CONNECTOR, "Regions": "us-east-1,eu-west-1",
            "Accounts": "123456789012", "MaxConcurrency": "1"}),
    };
    let ctx = Context {
        handler_deadline: tokio::time::Instant::now() + Duration::from_secs(60),
        invoked_function_arn: FUNCTION.into(),
    };
    resource
        .scheduled(&ctx, &input, None, Some(guard))
        .await
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn a_run_keeps_what_it_made_while_the_stack_is_as_it_found_it() {
    let (moto, eks, stack_id, account) = stack_and_cluster().await;
    let fleet = AwsFleet::new(moto.sdk_config(), None).await.unwrap();
    let seen = fleet.stack_state(&stack_id).await.unwrap();
    assert!(seen.at_rest(), "{seen:?}");
    let guard = StackGuard {
        stack_id,
        seen,
        function_arn: FUNCTION.into(),
    };
    let unfinished = scheduled_run(&moto, &eks, &guard).await;
    assert!(!unfinished);
    for region in ["us-east-1", "eu-west-1"] {
        let entry = &eks.entries(&account, region, "api")[CONNECTOR];
        assert!(entry.tags.contains_key(STACK_TAG));
    }
}

#[tokio::test]
async fn a_run_the_stack_changed_under_removes_what_it_made_and_stops() {
    let (moto, eks, stack_id, account) = stack_and_cluster().await;
    let fleet = AwsFleet::new(moto.sdk_config(), None).await.unwrap();
    let seen = fleet.stack_state(&stack_id).await.unwrap();
    // The stack's Delete began after the run did.
    aws_sdk_cloudformation::Client::new(&moto.sdk_config())
        .delete_stack()
        .stack_name(&stack_id)
        .send()
        .await
        .unwrap();
    let now = fleet.stack_state(&stack_id).await;
    assert!(now.as_ref().map_or(true, |s| *s != seen), "{now:?}");
    let guard = StackGuard {
        stack_id,
        seen,
        function_arn: FUNCTION.into(),
    };
    let unfinished = scheduled_run(&moto, &eks, &guard).await;
    assert!(unfinished, "the run stops before its second region");
    for region in ["us-east-1", "eu-west-1"] {
        assert!(
            eks.entries(&account, region, "api").is_empty(),
            "nothing of the run is left in {region}"
        );
    }
    assert!(eks.mutations() >= 2, "made, then removed");
}

/// The function in moto's Lambda, its configuration naming `principal` as the grant.
async fn function_granting(moto: &Moto, principal: &str) {
    let lambda = aws_sdk_lambda::Client::new(&moto.sdk_config());
    let environment = aws_sdk_lambda::types::Environment::builder()
        .variables("EKS_GRANT_PRINCIPAL_ARN", principal)
        .build();
    let exists = lambda
        .get_function_configuration()
        .function_name(FUNCTION)
        .send()
        .await
        .is_ok();
    if exists {
        lambda
            .update_function_configuration()
            .function_name(FUNCTION)
            .environment(environment)
            .send()
            .await
            .unwrap();
        return;
    }
    let trust = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}"#;
    let role = aws_sdk_iam::Client::new(&moto.sdk_config())
        .create_role()
        .role_name("eks-function")
        .assume_role_policy_document(trust)
        .send()
        .await
        .unwrap()
        .role
        .unwrap()
        .arn;
    // An empty zip archive: moto keeps the code, nothing runs it.
    let mut empty_zip = b"PK\x05\x06".to_vec();
    empty_zip.extend([0u8; 18]);
    lambda
        .create_function()
        .function_name("eks")
        .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
        .handler("bootstrap")
        .role(role)
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(aws_sdk_lambda::primitives::Blob::new(empty_zip))
                .build(),
        )
        .environment(environment)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn after_an_update_an_entry_stays_only_while_the_function_still_names_the_runs_grant() {
    let (moto, eks, stack_id, account) = stack_and_cluster().await;
    function_granting(&moto, CONNECTOR).await;
    let fleet = AwsFleet::new(moto.sdk_config(), None).await.unwrap();
    let seen = fleet.stack_state(&stack_id).await.unwrap();
    let cfn = aws_sdk_cloudformation::Client::new(&moto.sdk_config());
    let updated =
        r#"{"Resources": {"Other": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}}"#;
    cfn.update_stack()
        .stack_name(&stack_id)
        .template_body(updated)
        .send()
        .await
        .unwrap();
    assert_ne!(fleet.stack_state(&stack_id).await.unwrap(), seen);
    let guard = StackGuard {
        stack_id,
        seen,
        function_arn: FUNCTION.into(),
    };
    // An Update that left the grant alone: what the run makes stays.
    assert!(!scheduled_run(&moto, &eks, &guard).await);
    assert!(eks
        .entries(&account, "us-east-1", "api")
        .contains_key(CONNECTOR));

    // An Update that moved the entries to another principal: a run still granting the old one
    // removes what it makes and stops.
    function_granting(&moto, "arn:aws:iam::123456789012:role/apono-connector-v2").await;
    eks.add_cluster(&account, "us-east-1", "newer", "ACTIVE", "API");
    assert!(scheduled_run(&moto, &eks, &guard).await, "stopped");
    assert!(eks.entries(&account, "us-east-1", "newer").is_empty());
}

/// The local deploy's Lambda answers GetFunctionConfiguration with the configuration as it is
/// now, also to a process started before an Update changed it (what the guard reads).
#[tokio::test]
async fn the_local_lambda_reports_the_configuration_as_it_is_now() {
    use testkit::lambda::{Deployment, Function};
    let configurations = testkit::lambda::Configurations::default();
    let set = |principal: &str| {
        configurations.lock().unwrap().insert(
            FUNCTION.to_string(),
            json!({"FunctionName": "eks", "FunctionArn": FUNCTION,
                "Environment": {"Variables": {"EKS_GRANT_PRINCIPAL_ARN": principal}}}),
        );
    };
    set(CONNECTOR);
    let function = Function::start_deployed(
        "eks",
        FUNCTION,
        std::path::Path::new("/bin/true"),
        &[],
        Duration::from_secs(3),
        None,
        Deployment {
            environments: 1,
            configurations: Some(configurations.clone()),
        },
    )
    .await;
    let moto_free = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new("k", "s", None, None, "test"),
            ),
        )
        .endpoint_url(format!("http://127.0.0.1:{}", function.port()))
        .build();
    let fleet = AwsFleet::new(moto_free, None).await.unwrap();
    let configured_principal = || async {
        fleet
            .configured_grant(FUNCTION)
            .await
            .unwrap()
            .principal_arn
    };
    assert_eq!(configured_principal().await, CONNECTOR);
    set("arn:aws:iam::123456789012:role/apono-connector-v2");
    assert_eq!(
        configured_principal().await,
        "arn:aws:iam::123456789012:role/apono-connector-v2"
    );
}
