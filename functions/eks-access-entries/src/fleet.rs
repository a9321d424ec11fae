//! Which accounts and regions exist, and credentials for each account: the function's own in
//! its own account, the StackSet's member role everywhere else.

use aws_config::SdkConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use custom_resource::aws::ApiError;
use org_info::api::{AwsOrgApi, OrgApi};
use std::future::Future;

pub trait Fleet: Send + Sync + 'static {
    fn own_account(&self) -> impl Future<Output = Result<String, ApiError>> + Send;
    /// ACTIVE accounts of the organization, management account included.
    fn active_accounts(&self) -> impl Future<Output = Result<Vec<String>, ApiError>> + Send;
    fn enabled_regions(&self) -> impl Future<Output = Result<Vec<String>, ApiError>> + Send;
    /// Configuration acting in `account` (AssumeRole of `member_role` unless it is our own).
    fn config_for(
        &self,
        account: &str,
        member_role: &str,
    ) -> impl Future<Output = Result<SdkConfig, ApiError>> + Send;
    fn eks(&self, config: &SdkConfig, region: &str) -> aws_sdk_eks::Client;
}

#[derive(Clone)]
pub struct AwsFleet {
    pub base: SdkConfig,
    pub own_account: String,
    /// Organizations and Account reads, shared with Custom::OrganizationInfo.
    pub org: AwsOrgApi,
    /// Tests point EKS at a local fake; production leaves it unset.
    pub eks_endpoint: Option<String>,
}

impl AwsFleet {
    pub async fn new(base: SdkConfig, eks_endpoint: Option<String>) -> Result<Self, ApiError> {
        let org = AwsOrgApi::new(&base);
        let own_account = org.caller_account().await?;
        Ok(AwsFleet {
            org,
            own_account,
            base,
            eks_endpoint,
        })
    }
}

impl Fleet for AwsFleet {
    async fn own_account(&self) -> Result<String, ApiError> {
        Ok(self.own_account.clone())
    }

    async fn active_accounts(&self) -> Result<Vec<String>, ApiError> {
        self.org.active_account_ids().await
    }

    async fn enabled_regions(&self) -> Result<Vec<String>, ApiError> {
        self.org.enabled_regions().await
    }

    async fn config_for(&self, account: &str, member_role: &str) -> Result<SdkConfig, ApiError> {
        if account == self.own_account {
            return Ok(self.base.clone());
        }
        let creds = self
            .org
            .sts
            .assume_role()
            .role_arn(format!("arn:aws:iam::{account}:role/{member_role}"))
            .role_session_name("apono-eks-access-entries")
            .send()
            .await
            .map_err(|e| {
                ApiError::from_sdk("sts:AssumeRole", e)
                    .on(format!("account {account} (role {member_role})"))
            })?
            .credentials
            .ok_or_else(|| ApiError::Transport {
                action: "sts:AssumeRole".into(),
                on: Some(format!("account {account}")),
                message: "no credentials in the answer".into(),
            })?;
        let provider = SharedCredentialsProvider::new(Credentials::new(
            creds.access_key_id(),
            creds.secret_access_key(),
            Some(creds.session_token().to_string()),
            None,
            "assume-role",
        ));
        Ok(self
            .base
            .to_builder()
            .credentials_provider(provider)
            .build())
    }

    fn eks(&self, config: &SdkConfig, region: &str) -> aws_sdk_eks::Client {
        let mut builder = aws_sdk_eks::config::Builder::from(config)
            .region(aws_config::Region::new(region.to_string()));
        if let Some(endpoint) = &self.eks_endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        aws_sdk_eks::Client::from_conf(builder.build())
    }
}
