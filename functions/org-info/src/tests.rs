//! Decision logic over the real SDK clients, with every AWS answer mocked (aws-smithy-mocks).

use super::*;
use api::AwsOrgApi;
use aws_smithy_mocks::{mock, Rule};
use aws_smithy_types::error::ErrorMetadata;

/// A client of `$krate` that answers from `$rules` only (no network, no SDK test-util feature).
macro_rules! mocked {
    ($krate:ident, $rules:expr) => {{
        let mut interceptor = aws_smithy_mocks::MockResponseInterceptor::new()
            .rule_mode(aws_smithy_mocks::RuleMode::MatchAny);
        for rule in $rules {
            interceptor = interceptor.with_rule(rule);
        }
        $krate::Client::from_conf(
            $krate::Config::builder()
                .behavior_version($krate::config::BehaviorVersion::latest())
                .region($krate::config::Region::new("us-east-1"))
                .credentials_provider(aws_credential_types::Credentials::new(
                    "k", "s", None, None, "test",
                ))
                .http_client(aws_smithy_mocks::create_mock_http_client())
                .interceptor(interceptor)
                .build(),
        )
    }};
}

const MGMT: &str = "111111111111";
const ORG: &str = "o-abcdefghij";

fn meta(code: &str) -> ErrorMetadata {
    ErrorMetadata::builder()
        .code(code)
        .message("mocked")
        .build()
}

struct Mocks {
    organizations: Vec<Rule>,
    cloudformation: Vec<Rule>,
    account: Vec<Rule>,
    caller: &'static str,
    partition: api::regions::Partition,
}

impl Mocks {
    /// A healthy organization seen from its management account.
    fn healthy() -> Self {
        use aws_sdk_organizations::operation as op;
        use aws_sdk_organizations::types::{Account, AccountStatus, Organization, Root};
        let organizations = vec![
            mock!(aws_sdk_organizations::Client::describe_organization).then_output(|| {
                op::describe_organization::DescribeOrganizationOutput::builder()
                    .organization(
                        Organization::builder()
                            .id(ORG)
                            .master_account_id(MGMT)
                            .build(),
                    )
                    .build()
            }),
            mock!(aws_sdk_organizations::Client::list_roots).then_output(|| {
                op::list_roots::ListRootsOutput::builder()
                    .roots(Root::builder().id("r-ab12").build())
                    .build()
            }),
            mock!(aws_sdk_organizations::Client::list_accounts).then_output(|| {
                op::list_accounts::ListAccountsOutput::builder()
                    .accounts(
                        Account::builder()
                            .id(MGMT)
                            .status(AccountStatus::Active)
                            .build(),
                    )
                    .accounts(
                        Account::builder()
                            .id("222222222222")
                            .status(AccountStatus::Suspended)
                            .build(),
                    )
                    .build()
            }),
        ];
        Mocks {
            organizations,
            cloudformation: vec![trusted_access("ENABLED")],
            account: vec![regions_two_pages()],
            caller: MGMT,
            partition: api::regions::Partition::Aws,
        }
    }

    fn api(self) -> AwsOrgApi {
        let caller = self.caller;
        let sts_rule = mock!(aws_sdk_sts::Client::get_caller_identity).then_output(move || {
            aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityOutput::builder()
                .account(caller)
                .build()
        });
        AwsOrgApi {
            organizations: mocked!(aws_sdk_organizations, &self.organizations),
            sts: mocked!(aws_sdk_sts, [&sts_rule]),
            cloudformation: mocked!(aws_sdk_cloudformation, &self.cloudformation),
            account: mocked!(aws_sdk_account, &self.account),
            partition: self.partition,
        }
    }
}

/// The reason a resolve with default properties fails with.
async fn resolve_error(mocks: Mocks) -> String {
    OrgInfo::new(mocks.api())
        .resolve(&OrgInfoProps::default())
        .await
        .unwrap_err()
        .to_string()
}

fn trusted_access(status: &'static str) -> Rule {
    mock!(aws_sdk_cloudformation::Client::describe_organizations_access).then_output(move || {
        aws_sdk_cloudformation::operation::describe_organizations_access::DescribeOrganizationsAccessOutput::builder()
            .status(status.into())
            .build()
    })
}

/// Two pages: eu-west-1 + a region EKS does not serve, then us-east-1 and af-south-1, the
/// one opted into (the others are on by default).
fn regions_two_pages() -> Rule {
    use aws_sdk_account::operation::list_regions::ListRegionsOutput;
    use aws_sdk_account::types::{Region, RegionOptStatus};
    let region = |name: &str, status: RegionOptStatus| {
        Region::builder()
            .region_name(name)
            .region_opt_status(status)
            .build()
    };
    mock!(aws_sdk_account::Client::list_regions)
        .sequence()
        .output(move || {
            ListRegionsOutput::builder()
                .regions(region("eu-west-1", RegionOptStatus::EnabledByDefault))
                .regions(region("xx-nowhere-1", RegionOptStatus::EnabledByDefault))
                .next_token("page2")
                .build()
        })
        .output(move || {
            ListRegionsOutput::builder()
                .regions(region("us-east-1", RegionOptStatus::EnabledByDefault))
                .regions(region("af-south-1", RegionOptStatus::Enabled))
                .build()
        })
        .repeatedly()
        .build()
}

#[tokio::test]
async fn management_account_gets_every_output_with_regions_in_eks_order() {
    let resolved = OrgInfo::new(Mocks::healthy().api())
        .resolve(&OrgInfoProps::default())
        .await
        .unwrap();
    assert_eq!(resolved.organization_id, ORG);
    assert_eq!(resolved.root_id, "r-ab12");
    assert_eq!(resolved.management_account_id, MGMT);
    assert!(resolved.is_management_account);
    assert_eq!(
        resolved.active_account_count,
        Some(1),
        "suspended accounts do not count"
    );
    assert_eq!(
        resolved.regions,
        vec!["us-east-1", "af-south-1", "eu-west-1"]
    );
    assert_eq!(
        resolved.default_regions,
        vec!["us-east-1", "eu-west-1"],
        "an opt-in region may be off in other accounts"
    );
    assert_eq!(resolved.stacksets_trusted_access, Some(true));
    let out = resolved.output();
    assert_eq!(out.physical_resource_id.as_deref(), Some(ORG));
    let keys: Vec<&str> = out.data.keys().map(String::as_str).collect();
    let mut expected = DATA_KEYS.to_vec();
    expected.sort();
    assert_eq!(keys, expected);
}

#[tokio::test]
async fn in_the_china_partition_only_its_eks_regions_are_reported() {
    use aws_sdk_account::operation::list_regions::ListRegionsOutput;
    use aws_sdk_account::types::Region;
    let mut mocks = Mocks::healthy();
    mocks.partition = api::regions::Partition::AwsCn;
    mocks.account = vec![
        mock!(aws_sdk_account::Client::list_regions).then_output(|| {
            ListRegionsOutput::builder()
                .regions(Region::builder().region_name("cn-northwest-1").build())
                .regions(Region::builder().region_name("cn-north-1").build())
                .build()
        }),
    ];
    let resolved = OrgInfo::new(mocks.api())
        .resolve(&OrgInfoProps::default())
        .await
        .unwrap();
    assert_eq!(resolved.regions, vec!["cn-north-1", "cn-northwest-1"]);
}

#[tokio::test]
async fn inactive_trusted_access_fails_with_the_exact_remedy() {
    let mut mocks = Mocks::healthy();
    mocks.cloudformation = vec![trusted_access("DISABLED")];
    let err = resolve_error(mocks).await;
    assert!(
        err.contains("aws cloudformation activate-organizations-access"),
        "{err}"
    );
    assert!(err.contains("ActivateStackSetsTrustedAccess=true"), "{err}");
}

#[tokio::test]
async fn inactive_trusted_access_is_activated_when_asked() {
    let mut mocks = Mocks::healthy();
    let describe = mock!(aws_sdk_cloudformation::Client::describe_organizations_access)
        .sequence()
        .output(|| {
            aws_sdk_cloudformation::operation::describe_organizations_access::DescribeOrganizationsAccessOutput::builder()
                .status("DISABLED".into()).build()
        })
        .output(|| {
            aws_sdk_cloudformation::operation::describe_organizations_access::DescribeOrganizationsAccessOutput::builder()
                .status("ENABLED".into()).build()
        })
        .build();
    let activate = mock!(aws_sdk_cloudformation::Client::activate_organizations_access).then_output(
        || aws_sdk_cloudformation::operation::activate_organizations_access::ActivateOrganizationsAccessOutput::builder().build(),
    );
    mocks.cloudformation = vec![describe, activate.clone()];
    let props = OrgInfoProps {
        activate_stack_sets_trusted_access: Some(true),
        ..Default::default()
    };
    let resolved = OrgInfo::new(mocks.api()).resolve(&props).await.unwrap();
    assert_eq!(resolved.stacksets_trusted_access, Some(true));
    assert_eq!(activate.num_calls(), 1);
}

#[tokio::test]
async fn access_denied_names_the_missing_action() {
    let mut mocks = Mocks::healthy();
    mocks.organizations.insert(
        0,
        mock!(aws_sdk_organizations::Client::list_accounts).then_error(|| {
            aws_sdk_organizations::operation::list_accounts::ListAccountsError::generic(meta(
                "AccessDeniedException",
            ))
        }),
    );
    let err = resolve_error(mocks).await;
    assert!(err.contains("organizations:ListAccounts"), "{err}");
    assert!(err.contains("access denied"), "{err}");
}

#[tokio::test]
async fn account_regions_denied_names_account_list_regions() {
    let mut mocks = Mocks::healthy();
    mocks.account = vec![mock!(aws_sdk_account::Client::list_regions).then_error(|| {
        aws_sdk_account::operation::list_regions::ListRegionsError::generic(meta(
            "AccessDeniedException",
        ))
    })];
    let err = resolve_error(mocks).await;
    assert!(err.contains("account:ListRegions"), "{err}");
}

#[tokio::test]
async fn plain_member_is_refused_naming_account_org_and_management_account() {
    let mut mocks = Mocks::healthy();
    mocks.caller = "333333333333";
    mocks.organizations.insert(
        0,
        mock!(aws_sdk_organizations::Client::list_delegated_services_for_account).then_error(|| {
            aws_sdk_organizations::operation::list_delegated_services_for_account::ListDelegatedServicesForAccountError::generic(meta("AccessDeniedException"))
        }),
    );
    let err = resolve_error(mocks).await;
    for needle in [
        "333333333333",
        ORG,
        MGMT,
        "deploy the stack in the management account",
    ] {
        assert!(err.contains(needle), "{needle} missing: {err}");
    }
}

/// A member registered as delegated administrator for another service only.
fn delegated_for(service: &'static str) -> Rule {
    use aws_sdk_organizations::operation::list_delegated_services_for_account::ListDelegatedServicesForAccountOutput;
    use aws_sdk_organizations::types::DelegatedService;
    mock!(aws_sdk_organizations::Client::list_delegated_services_for_account).then_output(
        move || {
            ListDelegatedServicesForAccountOutput::builder()
                .delegated_services(
                    DelegatedService::builder()
                        .service_principal("guardduty.amazonaws.com")
                        .build(),
                )
                .delegated_services(
                    DelegatedService::builder()
                        .service_principal(service)
                        .build(),
                )
                .build()
        },
    )
}

#[tokio::test]
async fn a_stacksets_delegated_administrator_deploys_as_delegated_admin() {
    let mut mocks = Mocks::healthy();
    mocks.caller = "333333333333";
    mocks
        .organizations
        .insert(0, delegated_for(api::STACKSETS_SERVICE_PRINCIPAL));
    let resolved = OrgInfo::new(mocks.api())
        .resolve(&OrgInfoProps::default())
        .await
        .unwrap();
    assert!(resolved.is_delegated_administrator && !resolved.is_management_account);
    assert_eq!(resolved.call_as(), "DELEGATED_ADMIN");
    assert_eq!(resolved.output().data["CallAs"], "DELEGATED_ADMIN");
    let resolved = OrgInfo::new(Mocks::healthy().api())
        .resolve(&OrgInfoProps::default())
        .await
        .unwrap();
    assert_eq!(resolved.call_as(), "SELF");
}

#[tokio::test]
async fn a_delegated_administrator_for_another_service_only_is_refused_with_the_command_to_register(
) {
    let mut mocks = Mocks::healthy();
    mocks.caller = "333333333333";
    mocks
        .organizations
        .insert(0, delegated_for("macie.amazonaws.com"));
    let err = resolve_error(mocks).await;
    assert!(err.contains("register-delegated-administrator --service-principal member.org.stacksets.cloudformation.amazonaws.com --account-id 333333333333"), "{err}");
}

#[test]
fn bad_override_formats_are_rejected_before_any_call() {
    let err = custom_resource::props::parse::<OrgInfoProps>(
        serde_json::json!({"OrganizationId": "o-BAD"}),
    )
    .unwrap_err();
    assert_eq!(err.property, "OrganizationId");
    assert!(err.message.contains("o-k012345a67"), "{err}");
    let err = custom_resource::props::parse::<OrgInfoProps>(
        serde_json::json!({"RootId": "ou-ab12-cd34ef56"}),
    )
    .unwrap_err();
    assert_eq!(err.property, "RootId");
}
