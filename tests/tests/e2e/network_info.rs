//! Custom::ConnectorNetwork against moto's EC2 through the real SDK, driven by events.

use network_info::NetworkInfo;
use testkit::events::Event;
use testkit::invoke::Invoker;
use testkit::moto::Moto;
use testkit::receiver::Receiver;

const TYPE: &str = "Custom::ConnectorNetwork";

async fn vpc_with_subnets(ec2: &aws_sdk_ec2::Client, cidr: &str) -> (String, Vec<String>) {
    let vpc = ec2
        .create_vpc()
        .cidr_block(format!("{cidr}.0.0/16"))
        .send()
        .await
        .unwrap();
    let vpc = vpc.vpc.and_then(|v| v.vpc_id).unwrap();
    let mut subnets = Vec::new();
    for third in [1, 2] {
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(format!("{cidr}.{third}.0/24"))
            .send()
            .await
            .unwrap();
        subnets.push(subnet.subnet.and_then(|s| s.subnet_id).unwrap());
    }
    (vpc, subnets)
}

/// The VPC is derived from the subnets; subnets of two VPCs, a wrong VpcId or a subnet that
/// does not exist here fail naming what to fix.
#[tokio::test]
async fn the_connector_vpc_is_derived_from_its_subnets_and_checked() {
    let moto = Moto::start().await;
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config());
    let (vpc, subnets) = vpc_with_subnets(&ec2, "10.30").await;
    let (other_vpc, other_subnets) = vpc_with_subnets(&ec2, "10.40").await;
    let rx = Receiver::start().await;
    let invoker = Invoker::new(NetworkInfo::new(ec2));
    let create = |name: &str, subnets: String, vpc: &str| {
        Event::create(TYPE, &rx.url(name))
            .property("SubnetIds", subnets.as_str())
            .property("VpcId", vpc)
    };

    let body = invoker
        .answer(&rx, create("ok", subnets.join(","), ""))
        .await;
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(body["Data"]["VpcId"], vpc.as_str());
    assert_eq!(body["PhysicalResourceId"], vpc.as_str());

    let mixed = format!("{},{}", subnets[0], other_subnets[0]);
    let body = invoker.answer(&rx, create("mixed", mixed, "")).await;
    let reason = body["Reason"].as_str().unwrap();
    assert!(
        reason.contains("more than one VPC") && reason.contains(&other_vpc),
        "{reason}"
    );

    let body = invoker
        .answer(&rx, create("wrong", subnets.join(","), &other_vpc))
        .await;
    let reason = body["Reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("is not the subnets' VPC {vpc}")),
        "{reason}"
    );

    let body = invoker
        .answer(&rx, create("gone", "subnet-0123456789abcdef0".into(), ""))
        .await;
    let reason = body["Reason"].as_str().unwrap();
    assert!(
        reason.contains("does not exist in this account and region"),
        "{reason}"
    );
}
