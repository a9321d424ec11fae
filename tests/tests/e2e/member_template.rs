//! templates/member-account.yaml deployed by a SERVICE_MANAGED StackSet in moto, as the main
//! stack does: roles in every member account, none in the management account.

use testkit::moto::Moto;
use testkit::org::{assume_member, deploy_member_stack_set, seed_organization};

const CONNECTOR_ROLE: &str = "arn:aws:iam::123456789012:role/apono-connector";
const EKS_MANAGER: &str = "arn:aws:iam::123456789012:role/eks-function";

async fn deploy(
    cfn: &aws_sdk_cloudformation::Client,
    name: &str,
    connector_id: &str,
    permissions: &str,
    ous: &[String],
) {
    let eks_role = format!("eks-{connector_id}");
    let parameters = [
        ("AponoConnectorId", connector_id),
        ("ConnectorRoleArn", CONNECTOR_ROLE),
        ("Permissions", permissions),
        ("EksManagerRoleArn", EKS_MANAGER),
        ("EksMemberRoleName", eks_role.as_str()),
    ];
    deploy_member_stack_set(cfn, name, &parameters, ous)
        .await
        .unwrap();
}

fn decoded(policy: &str) -> String {
    // IAM returns policy documents URL-encoded.
    url::form_urlencoded::parse(format!("p={policy}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn member_roles_land_in_every_member_not_the_management_account_with_the_right_trust_and_mode(
) {
    let moto = Moto::start().await;
    let management = moto.sdk_config();
    let org = seed_organization(&management, 3, 2).await;
    let cfn = aws_sdk_cloudformation::Client::new(&management);
    // Targeting the OUs that hold the members (the template's OrganizationalUnitIds path).
    // moto, unlike AWS, would also deploy to the management account when given the root.
    deploy(
        &cfn,
        "read-only",
        "ro",
        "Read-Only (Discovery)",
        &org.ou_ids,
    )
    .await;
    deploy(
        &cfn,
        "full-access",
        "fa",
        "Full-Access (Manage IAM)",
        &org.ou_ids,
    )
    .await;

    for account in &org.member_account_ids {
        let iam = aws_sdk_iam::Client::new(&assume_member(&moto, &management, account).await);
        for (role, inline) in [("apono-cross-account-ro", 0), ("apono-cross-account-fa", 1)] {
            let got = iam
                .get_role()
                .role_name(role)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{role} missing in {account}: {e:?}"));
            let trust = decoded(got.role().unwrap().assume_role_policy_document().unwrap());
            assert!(trust.contains(CONNECTOR_ROLE), "{trust}");
            assert!(trust.contains("sts:TagSession"), "{trust}");
            // (moto ignores ManagedPolicyArns on roles CloudFormation creates, so SecurityAudit
            // is not visible here; cfn-lint and the template text cover it.)
            let policies = iam
                .list_role_policies()
                .role_name(role)
                .send()
                .await
                .unwrap();
            assert_eq!(
                policies.policy_names().len(),
                inline,
                "{role}: IAM management only with Full-Access"
            );
        }
        let eks_role = iam.get_role().role_name("eks-ro").send().await.unwrap();
        let trust = decoded(
            eks_role
                .role()
                .unwrap()
                .assume_role_policy_document()
                .unwrap(),
        );
        assert!(
            trust.contains(EKS_MANAGER),
            "EKS role trusts only the function's role: {trust}"
        );
    }
    let iam = aws_sdk_iam::Client::new(&management);
    assert!(
        iam.get_role()
            .role_name("apono-cross-account-ro")
            .send()
            .await
            .is_err(),
        "StackSets never deploy to the management account"
    );
}
