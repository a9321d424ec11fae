//! `Custom::OrganizationInfo`: makes the organization ID, root ID and management account
//! outputs instead of things users must look up and type, and refuses clearly when the stack is
//! deployed where it cannot work.

pub use org_api as api;

use api::{OrgApi, OrgDescription};
use custom_resource::aws::ApiError;
use custom_resource::props::{opt_boolean, opt_string};
use custom_resource::{
    ids, Context, CustomResource, HandlerResult, Outcome, Output, Properties, PropertyError,
    Request,
};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct OrgInfoProps {
    /// Optional: checked against the real organization.
    #[serde(default, deserialize_with = "opt_string")]
    pub organization_id: Option<String>,
    /// Optional: checked against the organization's roots.
    #[serde(default, deserialize_with = "opt_string")]
    pub root_id: Option<String>,
    /// Default true: refuse to run in a plain member account.
    #[serde(default, deserialize_with = "opt_boolean")]
    pub require_management_account: Option<bool>,
    /// Default false: activate StackSets trusted access when it is off instead of failing.
    #[serde(default, deserialize_with = "opt_boolean")]
    pub activate_stack_sets_trusted_access: Option<bool>,
    /// Ordering only: the policy that lets the function activate trusted access.
    #[serde(default)]
    pub wait_for: custom_resource::WaitFor,
}

impl Properties for OrgInfoProps {
    fn validate(&self) -> Result<(), PropertyError> {
        if let Some(id) = &self.organization_id {
            ids::organization_id(id).map_err(|m| PropertyError::new("OrganizationId", m))?;
        }
        if let Some(id) = &self.root_id {
            ids::root_id(id).map_err(|m| PropertyError::new("RootId", m))?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    #[error("this account ({account}) is not part of an AWS Organization: deploy this stack in the management account of your organization, or deploy it with Scope=Account to onboard this single account")]
    NotInOrganization { account: String },
    #[error("this stack runs in account {account}, a member of organization {organization} that is neither its management account nor a delegated administrator for CloudFormation StackSets: deploy the stack in the management account {management}, or register this account first (in {management}: aws organizations register-delegated-administrator --service-principal member.org.stacksets.cloudformation.amazonaws.com --account-id {account}), or set RequireManagementAccount=false to onboard without organization-wide access")]
    NotManagementAccount {
        account: String,
        organization: String,
        management: String,
    },
    #[error("OrganizationId {given} does not match this account's organization {actual}: remove the OrganizationId override or correct it to {actual}")]
    OrganizationMismatch { given: String, actual: String },
    #[error("RootId {given} is not the root of organization {organization} (its root is {actual}): remove the RootId override or correct it to {actual}")]
    RootMismatch {
        given: String,
        organization: String,
        actual: String,
    },
    #[error("organization {organization} has no root visible to this account")]
    NoRoot { organization: String },
    #[error("CloudFormation StackSets trusted access is not active in organization {organization}, so the member-account roles cannot be deployed: in the management account run `aws cloudformation activate-organizations-access` (or CloudFormation console > StackSets > Activate trusted access), or redeploy with ActivateStackSetsTrustedAccess=true")]
    TrustedAccessInactive { organization: String },
    #[error("StackSets trusted access was activated but {organization} still reports it inactive; retry the deployment in a minute")]
    TrustedAccessNotYetActive { organization: String },
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// Everything this resource reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub organization_id: String,
    pub root_id: String,
    pub management_account_id: String,
    pub is_management_account: bool,
    pub is_delegated_administrator: bool,
    /// `None` where this account may not list accounts.
    pub active_account_count: Option<usize>,
    pub regions: Vec<String>,
    /// Of those, the regions every account has (not opt-in): where a StackSet instance in
    /// each member account cannot fail for the region being off.
    pub default_regions: Vec<String>,
    /// `None` where this account may not ask.
    pub stacksets_trusted_access: Option<bool>,
}

impl Resolved {
    pub fn output(&self) -> Output {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "unknown".into());
        Output::new(self.organization_id.clone())
            .with("OrganizationId", &self.organization_id)
            .with("RootId", &self.root_id)
            .with("ManagementAccountId", &self.management_account_id)
            .with("IsManagementAccount", self.is_management_account)
            .with("IsDelegatedAdministrator", self.is_delegated_administrator)
            .with("CallAs", self.call_as())
            .with(
                "ActiveAccountCount",
                opt(self.active_account_count.map(|c| c.to_string())),
            )
            .with("Regions", self.regions.join(","))
            .with("DefaultRegions", self.default_regions.join(","))
            .with(
                "StackSetsTrustedAccess",
                opt(self.stacksets_trusted_access.map(|b| b.to_string())),
            )
    }
}

impl Resolved {
    /// How a StackSet made from this account must call CloudFormation: `SELF` in the
    /// management account, `DELEGATED_ADMIN` in a StackSets delegated administrator.
    pub fn call_as(&self) -> &'static str {
        match self.is_delegated_administrator && !self.is_management_account {
            true => "DELEGATED_ADMIN",
            false => "SELF",
        }
    }
}

/// The keys of `Data`, for the template contract test.
pub const DATA_KEYS: &[&str] = &[
    "CallAs",
    "OrganizationId",
    "RootId",
    "ManagementAccountId",
    "IsManagementAccount",
    "IsDelegatedAdministrator",
    "ActiveAccountCount",
    "Regions",
    "DefaultRegions",
    "StackSetsTrustedAccess",
];

pub struct OrgInfo<A> {
    pub api: A,
}

impl<A: OrgApi> OrgInfo<A> {
    pub fn new(api: A) -> Self {
        OrgInfo { api }
    }

    /// Resolves everything, independent calls concurrently.
    pub async fn resolve(&self, props: &OrgInfoProps) -> Result<Resolved, OrgError> {
        let standing = self.standing(props).await?;
        let regions = async {
            let enabled = self.api.enabled_regions().await?;
            let eks = |by_default_only| {
                api::regions::eks_regions_among(
                    self.api.partition(),
                    &api::EnabledRegion::names(&enabled, by_default_only),
                )
            };
            Ok::<_, OrgError>((eks(false), eks(true)))
        };
        let Standing {
            organization_id,
            management_account_id,
            is_management_account,
            is_delegated_administrator,
        } = standing;
        if !(is_management_account || is_delegated_administrator) {
            // A member allowed to proceed: only what a member may read.
            let (regions, default_regions) = regions.await?;
            return Ok(Resolved {
                root_id: props.root_id.clone().unwrap_or_default(),
                organization_id,
                management_account_id,
                is_management_account,
                is_delegated_administrator,
                active_account_count: None,
                regions,
                default_regions,
                stacksets_trusted_access: None,
            });
        }
        let as_delegated_admin = !is_management_account;
        let (roots, count, trusted, (regions, default_regions)) = tokio::try_join!(
            async { Ok::<_, OrgError>(self.api.root_ids().await?) },
            async { Ok::<_, OrgError>(self.api.active_account_count().await?) },
            async {
                let trusted = self.api.stacksets_trusted_access(as_delegated_admin);
                Ok::<_, OrgError>(trusted.await?)
            },
            regions,
        )?;
        let root_id = root_of(props, &roots, &organization_id)?;
        let activate = props.activate_stack_sets_trusted_access.unwrap_or(false);
        if !trusted {
            self.activate_trusted_access(&organization_id, activate && is_management_account)
                .await?;
        }
        Ok(Resolved {
            organization_id,
            root_id,
            management_account_id,
            is_management_account,
            is_delegated_administrator,
            active_account_count: Some(count),
            regions,
            default_regions,
            stacksets_trusted_access: Some(true),
        })
    }

    /// Which organization the caller is in, and whether it may read all of it (the
    /// management account or a delegated administrator); refused when it may not and the
    /// properties require it.
    async fn standing(&self, props: &OrgInfoProps) -> Result<Standing, OrgError> {
        let (account, org) =
            tokio::try_join!(self.api.caller_account(), self.api.describe_organization())?;
        let Some(OrgDescription {
            id: organization_id,
            management_account_id,
        }) = org
        else {
            return Err(OrgError::NotInOrganization { account });
        };
        if let Some(given) = props
            .organization_id
            .as_ref()
            .filter(|g| **g != organization_id)
        {
            return Err(OrgError::OrganizationMismatch {
                given: given.clone(),
                actual: organization_id,
            });
        }
        let is_management_account = account == management_account_id;
        // Delegated administrator for StackSets specifically: any other service's would not
        // let this account create the member-role StackSet.
        let is_delegated_administrator = !is_management_account
            && match self.api.delegated_services(&account).await {
                Ok(services) => services
                    .iter()
                    .any(|s| s == api::STACKSETS_SERVICE_PRINCIPAL),
                Err(ApiError::AccessDenied { .. }) => false,
                Err(err) => return Err(err.into()),
            };
        let privileged = is_management_account || is_delegated_administrator;
        if !privileged && props.require_management_account.unwrap_or(true) {
            return Err(OrgError::NotManagementAccount {
                account,
                organization: organization_id,
                management: management_account_id,
            });
        }
        Ok(Standing {
            organization_id,
            management_account_id,
            is_management_account,
            is_delegated_administrator,
        })
    }

    /// StackSets trusted access is off: turn it on if asked to (and allowed: the management
    /// account), else say how.
    async fn activate_trusted_access(
        &self,
        organization_id: &str,
        activate: bool,
    ) -> Result<(), OrgError> {
        if !activate {
            return Err(OrgError::TrustedAccessInactive {
                organization: organization_id.to_string(),
            });
        }
        tracing::info!(organization = %organization_id, "activating StackSets trusted access");
        self.api.activate_stacksets_trusted_access().await?;
        if !self.api.stacksets_trusted_access(false).await? {
            return Err(OrgError::TrustedAccessNotYetActive {
                organization: organization_id.to_string(),
            });
        }
        Ok(())
    }
}

/// Where the caller stands in its organization.
struct Standing {
    organization_id: String,
    management_account_id: String,
    is_management_account: bool,
    is_delegated_administrator: bool,
}

/// The root: the organization's, checked against the one the properties name.
fn root_of(props: &OrgInfoProps, roots: &[String], organization: &str) -> Result<String, OrgError> {
    let actual = roots.first().cloned().ok_or_else(|| OrgError::NoRoot {
        organization: organization.to_string(),
    })?;
    match &props.root_id {
        Some(given) if !roots.contains(given) => Err(OrgError::RootMismatch {
            given: given.clone(),
            organization: organization.to_string(),
            actual,
        }),
        Some(given) => Ok(given.clone()),
        None => Ok(actual),
    }
}

impl<A: OrgApi> CustomResource for OrgInfo<A> {
    type Properties = OrgInfoProps;

    async fn create(&self, _: &Context, req: &Request<OrgInfoProps>) -> HandlerResult<Outcome> {
        let resolved = self.resolve(&req.properties).await?;
        tracing::info!(organization = %resolved.organization_id, root = %resolved.root_id, accounts = ?resolved.active_account_count, regions = resolved.regions.len(), "organization resolved");
        Ok(resolved.output().into())
    }

    // Update: the default, Create again (the physical ID, the organization ID, stays unless the
    // stack now sees another organization). Delete: the default, nothing to undo (this
    // resource only reads, and never deactivates trusted access).
}

#[cfg(test)]
mod tests;
