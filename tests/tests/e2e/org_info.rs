//! Custom::OrganizationInfo against moto through the real SDK, driven by CloudFormation events.

use org_info::OrgInfo;
use serde_json::json;
use testkit::events::Event;
use testkit::invoke::Invoker;
use testkit::moto::Moto;
use testkit::org::{assume_member, seed_organization, MotoOrgApi};
use testkit::receiver::Receiver;

const TYPE: &str = "Custom::OrganizationInfo";

#[tokio::test]
async fn resolves_an_organization_of_65_accounts_across_pages_and_keeps_its_id() {
    let moto = Moto::start().await;
    let config = moto.sdk_config();
    let org = seed_organization(&config, 65, 2).await;
    let rx = Receiver::start().await;
    let invoker = Invoker::new(OrgInfo::new(MotoOrgApi::new(&config)));

    let created = invoker.answer(&rx, Event::create(TYPE, &rx.url("c"))).await;
    assert_eq!(created["Status"], "SUCCESS", "{created}");
    assert_eq!(created["PhysicalResourceId"], org.organization_id.as_str());
    let data = &created["Data"];
    assert_eq!(data["OrganizationId"], org.organization_id.as_str());
    assert_eq!(data["RootId"], org.root_id.as_str());
    assert_eq!(
        data["ManagementAccountId"],
        org.management_account_id.as_str()
    );
    assert_eq!(data["IsManagementAccount"], "true");
    assert_eq!(
        data["ActiveAccountCount"], "66",
        "65 members + management, every page read"
    );
    assert_eq!(
        data["Regions"], "us-east-1,ap-southeast-2,eu-west-1",
        "EKS order"
    );
    assert_eq!(data["StackSetsTrustedAccess"], "true");

    // Update with matching overrides re-resolves and keeps the physical ID.
    let update = Event::update(TYPE, &rx.url("u"), &org.organization_id).properties(json!({
        "OrganizationId": org.organization_id, "RootId": org.root_id,
    }));
    let updated = invoker.answer(&rx, update).await;
    assert_eq!(updated["Status"], "SUCCESS", "{updated}");
    assert_eq!(updated["PhysicalResourceId"], org.organization_id.as_str());

    let deleted = invoker
        .answer(&rx, Event::delete(TYPE, &rx.url("d"), &org.organization_id))
        .await;
    assert_eq!(deleted["Status"], "SUCCESS");
    // Delete touched nothing: the organization is still there.
    let still = aws_sdk_organizations::Client::new(&config)
        .describe_organization()
        .send()
        .await
        .unwrap();
    assert_eq!(
        still.organization().unwrap().id(),
        Some(org.organization_id.as_str())
    );
}

#[tokio::test]
async fn member_account_is_refused_with_where_to_deploy_instead() {
    // Enforcing: its patches let a member read what AWS lets it read of the organization.
    let moto = Moto::start_enforcing().await;
    let management = moto.sdk_config();
    let org = seed_organization(&management, 2, 0).await;
    let member = &org.member_account_ids[0];
    let member_config = assume_member(&moto, &management, member).await;
    let rx = Receiver::start().await;
    let invoker = Invoker::new(OrgInfo::new(MotoOrgApi::new(&member_config)));

    let body = invoker.answer(&rx, Event::create(TYPE, &rx.url("m"))).await;
    assert_eq!(body["Status"], "FAILED");
    let reason = body["Reason"].as_str().unwrap();
    for needle in [
        member.as_str(),
        org.organization_id.as_str(),
        org.management_account_id.as_str(),
        "deploy the stack in the management account",
    ] {
        assert!(reason.contains(needle), "{needle} missing from: {reason}");
    }

    // Allowed explicitly, the member gets what a member may know.
    let body = invoker
        .answer(
            &rx,
            Event::create(TYPE, &rx.url("m2")).property("RequireManagementAccount", "false"),
        )
        .await;
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(body["Data"]["IsManagementAccount"], "false");
    assert_eq!(body["Data"]["OrganizationId"], org.organization_id.as_str());
}

#[tokio::test]
async fn account_outside_any_organization_fails_clearly_and_rollback_succeeds() {
    let moto = Moto::start().await;
    let rx = Receiver::start().await;
    let invoker = Invoker::new(OrgInfo::new(MotoOrgApi::new(&moto.sdk_config())));
    let body = invoker.answer(&rx, Event::create(TYPE, &rx.url("n"))).await;
    assert_eq!(body["Status"], "FAILED");
    let reason = body["Reason"].as_str().unwrap();
    assert!(
        reason.contains("is not part of an AWS Organization"),
        "{reason}"
    );
    assert!(reason.contains("Scope=Account"), "{reason}");
    let marker = body["PhysicalResourceId"].as_str().unwrap();
    let rollback = invoker
        .answer(&rx, Event::delete(TYPE, &rx.url("r"), marker))
        .await;
    assert_eq!(rollback["Status"], "SUCCESS");
}

#[tokio::test]
async fn overrides_that_do_not_match_show_both_values_and_bad_formats_name_the_property() {
    let moto = Moto::start().await;
    let config = moto.sdk_config();
    let org = seed_organization(&config, 1, 0).await;
    let rx = Receiver::start().await;
    let invoker = Invoker::new(OrgInfo::new(MotoOrgApi::new(&config)));

    let body = invoker
        .answer(
            &rx,
            Event::create(TYPE, &rx.url("o")).property("OrganizationId", "o-zzzzzzzzzz"),
        )
        .await;
    let reason = body["Reason"].as_str().unwrap();
    assert!(
        reason.contains("o-zzzzzzzzzz") && reason.contains(&org.organization_id),
        "{reason}"
    );

    let body = invoker
        .answer(
            &rx,
            Event::create(TYPE, &rx.url("r")).property("RootId", "r-zzzz"),
        )
        .await;
    let reason = body["Reason"].as_str().unwrap();
    assert!(
        reason.contains("r-zzzz") && reason.contains(&org.root_id),
        "{reason}"
    );

    let body = invoker
        .answer(
            &rx,
            Event::create(TYPE, &rx.url("f")).property("OrganizationId", "my-org"),
        )
        .await;
    let reason = body["Reason"].as_str().unwrap();
    assert!(
        reason.contains("OrganizationId") && reason.contains("my-org"),
        "{reason}"
    );
}

#[tokio::test]
async fn inactive_trusted_access_fails_unless_activation_is_asked_for() {
    let moto = Moto::start().await;
    let config = moto.sdk_config();
    seed_organization(&config, 1, 0).await;
    let rx = Receiver::start().await;
    let api = MotoOrgApi::new(&config);
    api.trusted_access
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let invoker = Invoker::new(OrgInfo::new(api.clone()));

    let body = invoker.answer(&rx, Event::create(TYPE, &rx.url("t"))).await;
    assert_eq!(body["Status"], "FAILED");
    assert!(body["Reason"]
        .as_str()
        .unwrap()
        .contains("activate-organizations-access"));

    let body = invoker
        .answer(
            &rx,
            Event::create(TYPE, &rx.url("t2")).property("ActivateStackSetsTrustedAccess", "true"),
        )
        .await;
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(body["Data"]["StackSetsTrustedAccess"], "true");
}

/// A member registered as CloudFormation StackSets delegated administrator deploys with
/// `CallAs: DELEGATED_ADMIN`; a member that administers another service is still refused.
#[tokio::test]
async fn a_stacksets_delegated_administrator_is_told_to_call_as_delegated_admin() {
    let moto = Moto::start_enforcing().await;
    let management = moto.sdk_config();
    let org = seed_organization(&management, 2, 0).await;
    let organizations = aws_sdk_organizations::Client::new(&management);
    let (admin, other) = (&org.member_account_ids[0], &org.member_account_ids[1]);
    for (account, service) in [
        (admin, org_info::api::STACKSETS_SERVICE_PRINCIPAL),
        (other, "guardduty.amazonaws.com"),
    ] {
        organizations
            .register_delegated_administrator()
            .account_id(account)
            .service_principal(service)
            .send()
            .await
            .unwrap();
    }
    let rx = Receiver::start().await;

    let config = assume_member(&moto, &management, admin).await;
    let invoker = Invoker::new(OrgInfo::new(MotoOrgApi::new(&config)));
    let body = invoker
        .answer(&rx, Event::create(TYPE, &rx.url("da")))
        .await;
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(body["Data"]["CallAs"], "DELEGATED_ADMIN");
    assert_eq!(body["Data"]["IsDelegatedAdministrator"], "true");
    assert_eq!(
        body["Data"]["ManagementAccountId"],
        org.management_account_id.as_str()
    );

    let config = assume_member(&moto, &management, other).await;
    let invoker = Invoker::new(OrgInfo::new(MotoOrgApi::new(&config)));
    let body = invoker
        .answer(&rx, Event::create(TYPE, &rx.url("gd")))
        .await;
    assert_eq!(body["Status"], "FAILED", "{body}");
    assert!(
        body["Reason"]
            .as_str()
            .unwrap()
            .contains("register-delegated-administrator"),
        "{body}"
    );

    let invoker = Invoker::new(OrgInfo::new(MotoOrgApi::new(&management)));
    let body = invoker
        .answer(&rx, Event::create(TYPE, &rx.url("self")))
        .await;
    assert_eq!(body["Data"]["CallAs"], "SELF", "{body}");
}
