//! The organization and account reads the functions share (`Custom::OrganizationInfo`
//! resolves the organization with them, `Custom::EksAccessEntries` lists its accounts and
//! regions), behind a trait so that the decisions built on them can be tested without a
//! network.

pub mod regions;

/// The service principal of CloudFormation StackSets' delegated administrator: an account
/// registered for it may create service-managed StackSets with `CallAs: DELEGATED_ADMIN`.
/// <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/stacksets-orgs-delegated-admin.html>
pub const STACKSETS_SERVICE_PRINCIPAL: &str = "member.org.stacksets.cloudformation.amazonaws.com";

use aws_sdk_account::types::RegionOptStatus;
use aws_sdk_cloudformation::types::{CallAs, OrganizationStatus};
use custom_resource::aws::ApiError;
use std::future::Future;

/// A region enabled for the account, and whether it is one every account has (not opt-in:
/// `ENABLED_BY_DEFAULT`), so that a StackSet instance there cannot fail for being off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnabledRegion {
    pub name: String,
    pub by_default: bool,
}

impl EnabledRegion {
    /// The names of `regions`, those on by default only when `by_default_only`.
    pub fn names(regions: &[EnabledRegion], by_default_only: bool) -> Vec<String> {
        regions
            .iter()
            .filter(|r| r.by_default || !by_default_only)
            .map(|r| r.name.clone())
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgDescription {
    pub id: String,
    pub management_account_id: String,
}

pub trait OrgApi: Send + Sync + 'static {
    /// The partition the function runs in (from its region).
    fn partition(&self) -> regions::Partition;
    /// The account the function runs in.
    fn caller_account(&self) -> impl Future<Output = Result<String, ApiError>> + Send;
    /// `None` when the account is in no organization.
    fn describe_organization(
        &self,
    ) -> impl Future<Output = Result<Option<OrgDescription>, ApiError>> + Send;
    fn root_ids(&self) -> impl Future<Output = Result<Vec<String>, ApiError>> + Send;
    /// ACTIVE accounts, every page read.
    fn active_account_count(&self) -> impl Future<Output = Result<usize, ApiError>> + Send;
    /// The services `account` is a delegated administrator for (empty when it is for none);
    /// AccessDenied from a plain member account, which may not ask.
    fn delegated_services(
        &self,
        account: &str,
    ) -> impl Future<Output = Result<Vec<String>, ApiError>> + Send;
    fn stacksets_trusted_access(
        &self,
        as_delegated_admin: bool,
    ) -> impl Future<Output = Result<bool, ApiError>> + Send;
    /// Only the management account can activate trusted access.
    fn activate_stacksets_trusted_access(
        &self,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Regions enabled for this account (opted in or on by default).
    fn enabled_regions(&self) -> impl Future<Output = Result<Vec<EnabledRegion>, ApiError>> + Send;
}

/// The real thing, one client per service, built once per process.
#[derive(Clone)]
pub struct AwsOrgApi {
    pub organizations: aws_sdk_organizations::Client,
    pub sts: aws_sdk_sts::Client,
    pub cloudformation: aws_sdk_cloudformation::Client,
    pub account: aws_sdk_account::Client,
    pub partition: regions::Partition,
}

impl AwsOrgApi {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        // Organizations and Account are global services, served from the partition's home
        // region; the partition is the function's own (Lambda sets AWS_REGION).
        let partition =
            regions::Partition::of_region(config.region().map(|r| r.as_ref()).unwrap_or_default());
        let global = aws_config::Region::new(partition.home_region());
        let organizations = aws_sdk_organizations::Client::from_conf(
            aws_sdk_organizations::config::Builder::from(config)
                .region(global.clone())
                .build(),
        );
        let account = aws_sdk_account::Client::from_conf(
            aws_sdk_account::config::Builder::from(config)
                .region(global)
                .build(),
        );
        AwsOrgApi {
            organizations,
            sts: aws_sdk_sts::Client::new(config),
            cloudformation: aws_sdk_cloudformation::Client::new(config),
            account,
            partition,
        }
    }
}

impl AwsOrgApi {
    /// IDs of the ACTIVE accounts in these OUs (or roots) and every OU below them, sorted:
    /// the accounts a StackSet targeting them reaches (the management account, which a
    /// service-managed StackSet never deploys to, is left to the caller).
    pub async fn active_accounts_under(&self, parents: &[String]) -> Result<Vec<String>, ApiError> {
        let mut ids = Vec::new();
        let mut parents = parents.to_vec();
        while let Some(parent) = parents.pop() {
            let mut pages = self
                .organizations
                .list_accounts_for_parent()
                .parent_id(&parent)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    ApiError::from_sdk("organizations:ListAccountsForParent", e).on(parent.clone())
                })?;
                ids.extend(
                    page.accounts()
                        .iter()
                        .filter(|a| is_active(a))
                        .filter_map(|a| a.id().map(str::to_string)),
                );
            }
            let mut pages = self
                .organizations
                .list_organizational_units_for_parent()
                .parent_id(&parent)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    ApiError::from_sdk("organizations:ListOrganizationalUnitsForParent", e)
                        .on(parent.clone())
                })?;
                parents.extend(
                    page.organizational_units()
                        .iter()
                        .filter_map(|ou| ou.id().map(str::to_string)),
                );
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Whether `account` sits in one of `parents` (OUs or roots), at any depth: its parents
    /// read one level at a time up to the root, so the cost is the depth of the OU tree (at
    /// most five OUs in AWS Organizations), not the size of the organization.
    pub async fn is_under(&self, account: &str, parents: &[String]) -> Result<bool, ApiError> {
        let mut child = account.to_string();
        // The root is at most six levels up; a longer walk means an answer that makes no sense.
        for _ in 0..8 {
            let answer = self
                .organizations
                .list_parents()
                .child_id(&child)
                .send()
                .await
                .map_err(|e| {
                    ApiError::from_sdk("organizations:ListParents", e).on(child.clone())
                })?;
            let Some(parent) = answer.parents().first().and_then(|p| p.id()) else {
                return Ok(false);
            };
            if parents.iter().any(|p| p == parent) {
                return Ok(true);
            }
            if parent.starts_with("r-") {
                return Ok(false);
            }
            child = parent.to_string();
        }
        Ok(false)
    }

    /// IDs of the ACTIVE accounts, sorted, every page read.
    pub async fn active_account_ids(&self) -> Result<Vec<String>, ApiError> {
        let mut ids = Vec::new();
        let mut pages = self.organizations.list_accounts().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| ApiError::from_sdk("organizations:ListAccounts", e))?;
            ids.extend(
                page.accounts()
                    .iter()
                    .filter(|a| is_active(a))
                    .filter_map(|a| a.id().map(str::to_string)),
            );
        }
        ids.sort();
        Ok(ids)
    }
}

fn is_active(account: &aws_sdk_organizations::types::Account) -> bool {
    account.status() == Some(&aws_sdk_organizations::types::AccountStatus::Active)
}

fn call_as(as_delegated_admin: bool) -> CallAs {
    if as_delegated_admin {
        CallAs::DelegatedAdmin
    } else {
        CallAs::SelfValue
    }
}

impl OrgApi for AwsOrgApi {
    fn partition(&self) -> regions::Partition {
        self.partition
    }

    async fn caller_account(&self) -> Result<String, ApiError> {
        let out = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| ApiError::from_sdk("sts:GetCallerIdentity", e))?;
        Ok(out.account().unwrap_or_default().to_string())
    }

    async fn describe_organization(&self) -> Result<Option<OrgDescription>, ApiError> {
        match self.organizations.describe_organization().send().await {
            Ok(out) => {
                let org = out.organization();
                Ok(Some(OrgDescription {
                    id: org.and_then(|o| o.id()).unwrap_or_default().to_string(),
                    management_account_id: org
                        .and_then(|o| o.master_account_id())
                        .unwrap_or_default()
                        .to_string(),
                }))
            }
            Err(err) => {
                let err = ApiError::from_sdk("organizations:DescribeOrganization", err);
                if err.code() == Some("AWSOrganizationsNotInUseException") {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn root_ids(&self) -> Result<Vec<String>, ApiError> {
        let mut ids = Vec::new();
        let mut pages = self.organizations.list_roots().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| ApiError::from_sdk("organizations:ListRoots", e))?;
            ids.extend(
                page.roots()
                    .iter()
                    .filter_map(|r| r.id().map(str::to_string)),
            );
        }
        Ok(ids)
    }

    async fn active_account_count(&self) -> Result<usize, ApiError> {
        Ok(self.active_account_ids().await?.len())
    }

    async fn delegated_services(&self, account: &str) -> Result<Vec<String>, ApiError> {
        let mut services = Vec::new();
        let mut pages = self
            .organizations
            .list_delegated_services_for_account()
            .account_id(account)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(page) => page,
                Err(err) => {
                    let err =
                        ApiError::from_sdk("organizations:ListDelegatedServicesForAccount", err);
                    // Not a delegated administrator of anything.
                    if err.code() == Some("AccountNotRegisteredException") {
                        return Ok(Vec::new());
                    }
                    return Err(err);
                }
            };
            services.extend(
                page.delegated_services()
                    .iter()
                    .filter_map(|s| s.service_principal().map(str::to_string)),
            );
        }
        Ok(services)
    }

    async fn stacksets_trusted_access(&self, as_delegated_admin: bool) -> Result<bool, ApiError> {
        let out = self
            .cloudformation
            .describe_organizations_access()
            .call_as(call_as(as_delegated_admin))
            .send()
            .await
            .map_err(|e| ApiError::from_sdk("cloudformation:DescribeOrganizationsAccess", e))?;
        Ok(out.status() == Some(&OrganizationStatus::Enabled))
    }

    async fn activate_stacksets_trusted_access(&self) -> Result<(), ApiError> {
        self.cloudformation
            .activate_organizations_access()
            .send()
            .await
            .map_err(|e| ApiError::from_sdk("cloudformation:ActivateOrganizationsAccess", e))?;
        Ok(())
    }

    async fn enabled_regions(&self) -> Result<Vec<EnabledRegion>, ApiError> {
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
            regions.extend(page.regions().iter().filter_map(|r| {
                Some(EnabledRegion {
                    name: r.region_name()?.to_string(),
                    by_default: r.region_opt_status() == Some(&RegionOptStatus::EnabledByDefault),
                })
            }));
        }
        Ok(regions)
    }
}
