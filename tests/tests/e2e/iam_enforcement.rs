//! What the local deploy's functions run under: moto with its IAM enforcement on, and the fake
//! EKS following the same rules. A role gets what its policies grant, on the resources and
//! under the conditions they name, and nothing else.

use aws_sdk_eks::error::ProvideErrorMetadata;
use serde_json::json;
use testkit::fake_eks::FakeEks;
use testkit::iam::Authorizer;
use testkit::moto::{Moto, ADMIN_USER, DEFAULT_ACCOUNT};

#[tokio::test]
async fn a_role_gets_only_what_its_policies_grant_from_moto_and_the_fakes() {
    let moto = Moto::start_enforcing().await;
    let admin = moto.sdk_config();
    let connector = format!("arn:aws:iam::{DEFAULT_ACCOUNT}:role/apono-connector");
    let iam = aws_sdk_iam::Client::new(&admin);
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{DEFAULT_ACCOUNT}:user/{ADMIN_USER}")},
        "Action": "sts:AssumeRole"}]});
    iam.create_role()
        .role_name("limited")
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .unwrap();
    let grants = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ssm:GetParameter",
         "Resource": format!("arn:aws:ssm:us-east-1:{DEFAULT_ACCOUNT}:parameter/granted")},
        {"Effect": "Allow", "Action": "eks:ListClusters", "Resource": "*"},
        {"Effect": "Allow", "Action": "eks:CreateAccessEntry",
         "Resource": format!("arn:aws:eks:*:{DEFAULT_ACCOUNT}:cluster/*"),
         "Condition": {"ArnEquals": {"eks:principalArn": connector}}}]});
    iam.put_role_policy()
        .role_name("limited")
        .policy_name("grants")
        .policy_document(grants.to_string())
        .send()
        .await
        .unwrap();
    let ssm = aws_sdk_ssm::Client::new(&admin);
    for name in ["/granted", "/other"] {
        ssm.put_parameter()
            .name(name)
            .value("v")
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .send()
            .await
            .unwrap();
    }
    let credentials = aws_sdk_sts::Client::new(&admin)
        .assume_role()
        .role_arn(format!("arn:aws:iam::{DEFAULT_ACCOUNT}:role/limited"))
        .role_session_name("under-test")
        .send()
        .await
        .unwrap()
        .credentials
        .unwrap();
    let limited = moto.sdk_config_as(
        &credentials.access_key_id,
        &credentials.secret_access_key,
        Some(credentials.session_token),
    );

    // moto: the granted parameter only, refused in the JSON protocol's own error type.
    let ssm = aws_sdk_ssm::Client::new(&limited);
    assert!(ssm.get_parameter().name("/granted").send().await.is_ok());
    let refused = ssm.get_parameter().name("/other").send().await.unwrap_err();
    assert_eq!(refused.code(), Some("AccessDeniedException"), "{refused:?}");

    // The fake EKS: the granted action, for the granted principal only.
    let eks = FakeEks::start(&moto.endpoint).await;
    eks.enforce(Authorizer::new(
        &moto.endpoint,
        moto.admin_key_id().unwrap(),
    ));
    eks.add_cluster(DEFAULT_ACCOUNT, "us-east-1", "prod", "ACTIVE", "API");
    let client = aws_sdk_eks::Client::from_conf(
        aws_sdk_eks::config::Builder::from(&limited)
            .endpoint_url(eks.url())
            .build(),
    );
    let clusters = client.list_clusters().send().await.unwrap();
    assert_eq!(clusters.clusters(), ["prod"]);
    let create = |principal: &str| {
        client
            .create_access_entry()
            .cluster_name("prod")
            .principal_arn(principal)
            .send()
    };
    assert!(create(&connector).await.is_ok());
    let admin_role = format!("arn:aws:iam::{DEFAULT_ACCOUNT}:role/admin");
    let refused = create(&admin_role).await.unwrap_err();
    assert_eq!(refused.code(), Some("AccessDeniedException"), "{refused:?}");
    let refused = client
        .delete_access_entry()
        .cluster_name("prod")
        .principal_arn(&connector)
        .send()
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("AccessDeniedException"), "{refused:?}");
    assert_eq!(eks.entries(DEFAULT_ACCOUNT, "us-east-1", "prod").len(), 1);
}
