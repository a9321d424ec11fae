//! An emulated AWS Organization in moto, and the org-info API with the two calls moto lacks
//! (StackSets trusted access, account regions) answered by an in-memory fake.

use aws_config::SdkConfig;
use custom_resource::aws::ApiError;
use org_info::api::{AwsOrgApi, EnabledRegion, OrgApi, OrgDescription};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::moto::Moto;

#[derive(Debug, Clone)]
pub struct SeededOrg {
    pub organization_id: String,
    pub root_id: String,
    pub management_account_id: String,
    pub member_account_ids: Vec<String>,
    pub ou_ids: Vec<String>,
}

/// Creates an organization in moto's default account with `members` accounts spread over
/// `ous` organizational units under the root.
pub async fn seed_organization(config: &SdkConfig, members: usize, ous: usize) -> SeededOrg {
    use aws_sdk_organizations::types::OrganizationFeatureSet;
    let client = aws_sdk_organizations::Client::new(config);
    let org = client
        .create_organization()
        .feature_set(OrganizationFeatureSet::All)
        .send()
        .await
        .expect("create organization")
        .organization
        .expect("organization");
    let root_id = client
        .list_roots()
        .send()
        .await
        .expect("list roots")
        .roots()[0]
        .id()
        .unwrap()
        .to_string();
    let mut ou_ids = Vec::new();
    for i in 0..ous {
        let ou = client
            .create_organizational_unit()
            .parent_id(&root_id)
            .name(format!("ou-{i}"))
            .send()
            .await
            .expect("create OU");
        ou_ids.push(ou.organizational_unit().unwrap().id().unwrap().to_string());
    }
    let mut member_account_ids = Vec::new();
    for i in 0..members {
        let status = client
            .create_account()
            .account_name(format!("member-{i}"))
            .email(format!("member-{i}@example.com"))
            .send()
            .await
            .expect("create account")
            .create_account_status
            .expect("status");
        let id = status
            .account_id()
            .expect("moto creates accounts at once")
            .to_string();
        if !ou_ids.is_empty() {
            client
                .move_account()
                .account_id(&id)
                .source_parent_id(&root_id)
                .destination_parent_id(&ou_ids[i % ou_ids.len()])
                .send()
                .await
                .expect("move account");
        }
        member_account_ids.push(id);
    }
    SeededOrg {
        organization_id: org.id().unwrap().to_string(),
        root_id,
        management_account_id: org.master_account_id().unwrap().to_string(),
        member_account_ids,
        ou_ids,
    }
}

/// Credentials of `account` through STS AssumeRole of the role Organizations creates there.
pub async fn assume_member(moto: &Moto, management: &SdkConfig, account: &str) -> SdkConfig {
    let creds = aws_sdk_sts::Client::new(management)
        .assume_role()
        .role_arn(format!(
            "arn:aws:iam::{account}:role/OrganizationAccountAccessRole"
        ))
        .role_session_name("bench")
        .send()
        .await
        .expect("assume role")
        .credentials
        .expect("credentials");
    moto.sdk_config_as(
        creds.access_key_id(),
        creds.secret_access_key(),
        Some(creds.session_token().to_string()),
    )
}

/// Real SDK against moto for Organizations and STS; trusted access and regions from memory.
#[derive(Clone)]
pub struct MotoOrgApi {
    pub real: AwsOrgApi,
    pub trusted_access: Arc<AtomicBool>,
    pub regions: Vec<String>,
}

impl MotoOrgApi {
    pub fn new(config: &SdkConfig) -> Self {
        MotoOrgApi {
            real: AwsOrgApi::new(config),
            trusted_access: Arc::new(AtomicBool::new(true)),
            regions: ["us-east-1", "eu-west-1", "ap-southeast-2"]
                .map(String::from)
                .to_vec(),
        }
    }
}

impl OrgApi for MotoOrgApi {
    fn partition(&self) -> org_info::api::regions::Partition {
        self.real.partition()
    }
    async fn caller_account(&self) -> Result<String, ApiError> {
        self.real.caller_account().await
    }
    async fn describe_organization(&self) -> Result<Option<OrgDescription>, ApiError> {
        self.real.describe_organization().await
    }
    async fn root_ids(&self) -> Result<Vec<String>, ApiError> {
        self.real.root_ids().await
    }
    async fn active_account_count(&self) -> Result<usize, ApiError> {
        self.real.active_account_count().await
    }
    async fn delegated_services(&self, account: &str) -> Result<Vec<String>, ApiError> {
        self.real.delegated_services(account).await
    }
    async fn stacksets_trusted_access(&self, _: bool) -> Result<bool, ApiError> {
        Ok(self.trusted_access.load(Ordering::SeqCst))
    }
    async fn activate_stacksets_trusted_access(&self) -> Result<(), ApiError> {
        self.trusted_access.store(true, Ordering::SeqCst);
        Ok(())
    }
    async fn enabled_regions(&self) -> Result<Vec<EnabledRegion>, ApiError> {
        Ok(self
            .regions
            .iter()
            .map(|name| EnabledRegion {
                name: name.clone(),
                by_default: true,
            })
            .collect())
    }
}

/// Deploys templates/member-account.yaml with a SERVICE_MANAGED StackSet to `ous` (one region:
/// IAM is global), as the main stack's `MemberRolesStackSet` does.
pub async fn deploy_member_stack_set(
    cfn: &aws_sdk_cloudformation::Client,
    name: &str,
    parameters: &[(&str, &str)],
    ous: &[String],
) -> Result<(), String> {
    use aws_sdk_cloudformation::types::{
        AutoDeployment, Capability, DeploymentTargets, Parameter, PermissionModels,
    };
    let body =
        std::fs::read_to_string(crate::workspace_root().join("templates/member-account.yaml"))
            .map_err(|e| e.to_string())?;
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
        .set_parameters(Some(
            parameters
                .iter()
                .map(|(k, v)| {
                    Parameter::builder()
                        .parameter_key(*k)
                        .parameter_value(*v)
                        .build()
                })
                .collect(),
        ))
        .send()
        .await
        .map_err(|e| format!("{:?}", e.into_service_error()))?;
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
        .map_err(|e| format!("{:?}", e.into_service_error()))?;
    Ok(())
}
