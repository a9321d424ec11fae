//! templates/member-account.yaml deployed by a SERVICE_MANAGED StackSet in moto, as the main
//! stack does: roles in every member account, none in the management account.

use aws_sdk_cloudformation::types::{
    AutoDeployment, Capability, DeploymentTargets, Parameter, PermissionModels,
};
use bench::moto::Moto;
use bench::org::{assume_member, seed_organization};

const CONNECTOR_ROLE: &str = "arn:aws:iam::123456789012:role/apono-connector";
const EKS_MANAGER: &str = "arn:aws:iam::123456789012:role/eks-function";

fn param(key: &str, value: &str) -> Parameter {
    Parameter::builder()
        .parameter_key(key)
        .parameter_value(value)
        .build()
}

async fn deploy(
    cfn: &aws_sdk_cloudformation::Client,
    name: &str,
    connector_id: &str,
    permissions: &str,
    ous: &[String],
) {
    let body =
        std::fs::read_to_string(bench::workspace_root().join("templates/member-account.yaml"))
            .unwrap();
    cfn.create_stack_set()
        .stack_set_name(name)
        .template_body(body)
        .permission_model(PermissionModels::ServiceManaged)
        .auto_deployment(
            AutoDeployment::builder()
                .enabled(true)
                .retain_stacks_on_account_removal(false)
                .build(),
        )
        .capabilities(Capability::CapabilityNamedIam)
        .parameters(param("AponoConnectorId", connector_id))
        .parameters(param("ConnectorRoleArn", CONNECTOR_ROLE))
        .parameters(param("Permissions", permissions))
        .parameters(param("EksManagerRoleArn", EKS_MANAGER))
        .parameters(param("EksMemberRoleName", &format!("eks-{connector_id}")))
        .send()
        .await
        .unwrap();
    cfn.create_stack_instances()
        .stack_set_name(name)
        .deployment_targets(
            DeploymentTargets::builder()
                .set_organizational_unit_ids(Some(ous.to_vec()))
                .build(),
        )
        .regions("us-east-1")
        .send()
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
