//! The decisions over the real EC2 client, its answers mocked (aws-smithy-mocks).

use super::*;
use aws_sdk_ec2::operation::describe_subnets::{DescribeSubnetsError, DescribeSubnetsOutput};
use aws_sdk_ec2::types::Subnet;
use aws_smithy_mocks::{mock, Rule};

/// An EC2 client that answers from `rule` only (no network, no SDK test-util feature, so the
/// SDK is built once with the same features as everywhere).
fn mocked(rule: &Rule) -> aws_sdk_ec2::Client {
    let interceptor = aws_smithy_mocks::MockResponseInterceptor::new()
        .rule_mode(aws_smithy_mocks::RuleMode::MatchAny)
        .with_rule(rule);
    aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new("us-east-1"))
            .credentials_provider(aws_credential_types::Credentials::new(
                "k", "s", None, None, "test",
            ))
            .http_client(aws_smithy_mocks::create_mock_http_client())
            .interceptor(interceptor)
            .build(),
    )
}

fn subnets(pairs: &'static [(&'static str, &'static str)]) -> NetworkInfo {
    let rule = mock!(aws_sdk_ec2::Client::describe_subnets).then_output(move || {
        DescribeSubnetsOutput::builder()
            .set_subnets(Some(
                pairs
                    .iter()
                    .map(|(id, vpc)| Subnet::builder().subnet_id(*id).vpc_id(*vpc).build())
                    .collect(),
            ))
            .build()
    });
    NetworkInfo::new(mocked(&rule))
}

fn props(subnets: &[&str], vpc: Option<&str>) -> NetworkProps {
    NetworkProps {
        subnet_ids: subnets.iter().map(|s| s.to_string()).collect(),
        vpc_id: vpc.map(str::to_string),
    }
}

const A: &str = "subnet-0abc12345def67890";
const B: &str = "subnet-0fed09876cba54321";

#[tokio::test]
async fn the_vpc_is_the_one_every_subnet_is_in() {
    let info = subnets(&[(A, "vpc-0aaa1111"), (B, "vpc-0aaa1111")]);
    assert_eq!(
        info.vpc_of(&props(&[A, B], None)).await.unwrap(),
        "vpc-0aaa1111"
    );
    assert_eq!(
        info.vpc_of(&props(&[A, B], Some("vpc-0aaa1111")))
            .await
            .unwrap(),
        "vpc-0aaa1111"
    );
}

#[tokio::test]
async fn subnets_of_two_vpcs_are_refused_naming_each() {
    let info = subnets(&[(A, "vpc-0aaa1111"), (B, "vpc-0bbb2222")]);
    let err = info
        .vpc_of(&props(&[A, B], None))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("{A} in vpc-0aaa1111")), "{err}");
    assert!(err.contains(&format!("{B} in vpc-0bbb2222")), "{err}");
}

#[tokio::test]
async fn a_given_vpc_that_is_not_the_subnets_is_refused_with_the_right_one() {
    let info = subnets(&[(A, "vpc-0aaa1111")]);
    let err = info
        .vpc_of(&props(&[A], Some("vpc-0ccc3333")))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("VpcId vpc-0ccc3333 is not the subnets' VPC vpc-0aaa1111"),
        "{err}"
    );
}

#[tokio::test]
async fn a_subnet_that_does_not_exist_here_is_named() {
    let rule = mock!(aws_sdk_ec2::Client::describe_subnets).then_error(|| {
        DescribeSubnetsError::generic(
            aws_smithy_types::error::ErrorMetadata::builder()
                .code("InvalidSubnetID.NotFound")
                .message(format!("The subnet ID '{B}' does not exist"))
                .build(),
        )
    });
    let info = NetworkInfo::new(mocked(&rule));
    let err = info
        .vpc_of(&props(&[A, B], None))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(B) && err.contains("does not exist in this account and region"),
        "{err}"
    );
}

#[test]
fn bad_ids_are_refused_before_any_call() {
    let parse = |v: serde_json::Value| custom_resource::props::parse::<NetworkProps>(v);
    assert_eq!(
        parse(serde_json::json!({"SubnetIds": ""}))
            .unwrap_err()
            .property,
        "SubnetIds"
    );
    assert_eq!(
        parse(serde_json::json!({"SubnetIds": "sg-0abc1234"}))
            .unwrap_err()
            .property,
        "SubnetIds"
    );
    assert_eq!(
        parse(serde_json::json!({"SubnetIds": A, "VpcId": "vpc-XYZ"}))
            .unwrap_err()
            .property,
        "VpcId"
    );
    parse(serde_json::json!({"SubnetIds": format!("{A},{B}"), "VpcId": ""})).unwrap();
}
