//! Which accounts and regions exist, and credentials for each account: the function's own in
//! its own account, the StackSet's member role everywhere else.

use aws_config::SdkConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use custom_resource::aws::ApiError;
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
    pub sts: aws_sdk_sts::Client,
    pub organizations: aws_sdk_organizations::Client,
    pub account: aws_sdk_account::Client,
    /// Tests point EKS at a local fake; production leaves it unset.
    pub eks_endpoint: Option<String>,
}

impl AwsFleet {
    pub async fn new(base: SdkConfig, eks_endpoint: Option<String>) -> Result<Self, ApiError> {
        let global = aws_config::Region::new("us-east-1");
        let sts = aws_sdk_sts::Client::new(&base);
        let own_account = sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| ApiError::from_sdk("sts:GetCallerIdentity", e))?
            .account()
            .unwrap_or_default()
            .to_string();
        Ok(AwsFleet {
            organizations: aws_sdk_organizations::Client::from_conf(
                aws_sdk_organizations::config::Builder::from(&base)
                    .region(global.clone())
                    .build(),
            ),
            account: aws_sdk_account::Client::from_conf(
                aws_sdk_account::config::Builder::from(&base)
                    .region(global)
                    .build(),
            ),
            sts,
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
        let mut ids = Vec::new();
        let mut pages = self.organizations.list_accounts().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| ApiError::from_sdk("organizations:ListAccounts", e))?;
            ids.extend(
                page.accounts()
                    .iter()
                    .filter(|a| {
                        a.status().is_some_and(|s| {
                            *s == aws_sdk_organizations::types::AccountStatus::Active
                        })
                    })
                    .filter_map(|a| a.id().map(str::to_string)),
            );
        }
        ids.sort();
        Ok(ids)
    }

    async fn enabled_regions(&self) -> Result<Vec<String>, ApiError> {
        use aws_sdk_account::types::RegionOptStatus;
        let mut regions = Vec::new();
        let mut pages = self
            .account
            .list_regions()
            .region_opt_status_contains(RegionOptStatus::Enabled)
            .region_opt_status_contains(RegionOptStatus::EnabledByDefault)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| ApiError::from_sdk("account:ListRegions", e))?;
            regions.extend(
                page.regions()
                    .iter()
                    .filter_map(|r| r.region_name().map(str::to_string)),
            );
        }
        Ok(regions)
    }

    async fn config_for(&self, account: &str, member_role: &str) -> Result<SdkConfig, ApiError> {
        if account == self.own_account {
            return Ok(self.base.clone());
        }
        let creds = self
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
