//! Which accounts and regions exist, and credentials for each account: the function's own in
//! its own account, the StackSet's member role everywhere else.

use aws_config::SdkConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_sdk_eks::config::retry::{RetryConfig, RetryPartition};
use custom_resource::aws::ApiError;
use org_api::regions::Partition;
use org_api::{AwsOrgApi, OrgApi};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub trait Fleet: Send + Sync + 'static {
    /// Learns the function's own account from its ARN (the invocation carries it), so that
    /// no call is needed to find it.
    fn learn_own_account(&self, _invoked_function_arn: &str) {}
    fn own_account(&self) -> impl Future<Output = Result<String, ApiError>> + Send;
    /// The partition the function runs in: from its ARN once an invocation has shown it,
    /// else from its region.
    fn partition(&self) -> Partition;
    /// ACTIVE accounts of the organization, management account included.
    fn active_accounts(&self) -> impl Future<Output = Result<Vec<String>, ApiError>> + Send;
    /// ACTIVE accounts in these OUs (or roots) and the OUs below them.
    fn active_accounts_under(
        &self,
        parents: &[String],
    ) -> impl Future<Output = Result<Vec<String>, ApiError>> + Send;
    /// Whether `account` sits in one of these OUs (or roots), at any depth.
    fn account_is_under(
        &self,
        account: &str,
        parents: &[String],
    ) -> impl Future<Output = Result<bool, ApiError>> + Send;
    fn enabled_regions(&self) -> impl Future<Output = Result<Vec<String>, ApiError>> + Send;
    /// Configuration acting in `account` (AssumeRole of `member_role` unless it is our own).
    fn config_for(
        &self,
        account: &str,
        member_role: &str,
    ) -> impl Future<Output = Result<SdkConfig, ApiError>> + Send;
    /// An EKS client acting in `account` and `region`.
    fn eks(&self, config: &SdkConfig, account: &str, region: &str) -> aws_sdk_eks::Client;
    /// The grant the function's configuration names now (Lambda's GetFunctionConfiguration of
    /// `function_arn`): after an Update, a process still running the old configuration learns
    /// it is stale.
    fn configured_grant(
        &self,
        function_arn: &str,
    ) -> impl Future<Output = Result<crate::eks::Grant, ApiError>> + Send;
    /// The status of the stack that owns the entries (`CREATE_COMPLETE`, ...) and when its
    /// last Update began.
    fn stack_state(
        &self,
        stack_id: &str,
    ) -> impl Future<Output = Result<crate::StackState, ApiError>> + Send;
}

#[derive(Clone)]
pub struct AwsFleet {
    pub base: SdkConfig,
    /// From the first invocation's function ARN; asked of STS only if never learned.
    own_account: Arc<tokio::sync::OnceCell<String>>,
    /// From the first invocation's function ARN.
    partition: Arc<std::sync::OnceLock<Partition>>,
    /// Organizations and Account reads, shared with Custom::OrganizationInfo (`org-api`).
    pub org: AwsOrgApi,
    /// Tests point EKS at a local fake; production leaves it unset.
    pub eks_endpoint: Option<String>,
    cloudformation: aws_sdk_cloudformation::Client,
    lambda: aws_sdk_lambda::Client,
}

impl AwsFleet {
    /// No network call: the clients are built, the account is learnt on first use.
    pub async fn new(base: SdkConfig, eks_endpoint: Option<String>) -> Result<Self, ApiError> {
        Ok(AwsFleet {
            org: AwsOrgApi::new(&base),
            cloudformation: aws_sdk_cloudformation::Client::new(&base),
            lambda: aws_sdk_lambda::Client::new(&base),
            own_account: Arc::new(tokio::sync::OnceCell::new()),
            partition: Arc::new(std::sync::OnceLock::new()),
            base,
            eks_endpoint,
        })
    }
}

/// AWS throttles EKS per account and region, so each pair gets its own retry partition (its
/// own retry token bucket). The SDK's default partition is one per service and region
/// ("eks-us-east-1"), shared by every account, so one throttled account would drain the retry
/// quota of all the others.
pub fn retry_partition(account: &str, region: &str) -> RetryPartition {
    RetryPartition::new(format!("eks-{account}-{region}"))
}

/// Standard (not adaptive) retries with jittered exponential backoff from 25 ms. Each pair is
/// one chain of dependent calls, so there is no burst for a client-side rate limiter to
/// smooth; and the adaptive limiter, once throttled, can fall to half a request per second
/// and stay there for the rest of the run (measured in `scripts/bench.sh`: 30 % throttling
/// made a 10-account fan-out 100x slower with it). The runtime's deadline bounds the waits.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(8)
        .with_initial_backoff(Duration::from_millis(25))
        .with_max_backoff(Duration::from_secs(5))
}

/// The account of `arn:<partition>:lambda:<region>:<account>:function:<name>`.
fn account_of(function_arn: &str) -> Option<&str> {
    let account = function_arn.split(':').nth(4)?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then_some(account)
}

impl Fleet for AwsFleet {
    fn learn_own_account(&self, invoked_function_arn: &str) {
        if let Some(account) = account_of(invoked_function_arn) {
            let _ = self.own_account.set(account.to_string());
        }
        if let Some(partition) = Partition::of_arn(invoked_function_arn) {
            let _ = self.partition.set(partition);
        }
    }

    fn partition(&self) -> Partition {
        self.partition.get().copied().unwrap_or(self.org.partition)
    }

    async fn own_account(&self) -> Result<String, ApiError> {
        self.own_account
            .get_or_try_init(|| self.org.caller_account())
            .await
            .cloned()
    }

    async fn active_accounts(&self) -> Result<Vec<String>, ApiError> {
        self.org.active_account_ids().await
    }

    async fn active_accounts_under(&self, parents: &[String]) -> Result<Vec<String>, ApiError> {
        self.org.active_accounts_under(parents).await
    }

    async fn account_is_under(&self, account: &str, parents: &[String]) -> Result<bool, ApiError> {
        self.org.is_under(account, parents).await
    }

    async fn enabled_regions(&self) -> Result<Vec<String>, ApiError> {
        let regions = self.org.enabled_regions().await?;
        Ok(org_api::EnabledRegion::names(&regions, false))
    }

    async fn config_for(&self, account: &str, member_role: &str) -> Result<SdkConfig, ApiError> {
        if account == self.own_account().await? {
            return Ok(self.base.clone());
        }
        let creds = self
            .org
            .sts
            .assume_role()
            .role_arn(
                self.partition()
                    .arn(&format!("iam::{account}:role/{member_role}")),
            )
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

    async fn configured_grant(&self, function_arn: &str) -> Result<crate::eks::Grant, ApiError> {
        let out = self
            .lambda
            .get_function_configuration()
            .function_name(function_arn)
            .send()
            .await
            .map_err(|e| ApiError::from_sdk("lambda:GetFunctionConfiguration", e))?;
        let variables = out
            .environment()
            .and_then(|e| e.variables())
            .cloned()
            .unwrap_or_default();
        Ok(crate::eks::Grant::from_vars(|name| {
            variables.get(name).cloned().unwrap_or_default()
        }))
    }

    async fn stack_state(&self, stack_id: &str) -> Result<crate::StackState, ApiError> {
        let action = "cloudformation:DescribeStacks";
        let out = self
            .cloudformation
            .describe_stacks()
            .stack_name(stack_id)
            .send()
            .await
            .map_err(|e| ApiError::from_sdk(action, e))?;
        out.stacks()
            .first()
            .and_then(|s| {
                Some(crate::StackState {
                    status: s.stack_status()?.as_str().to_string(),
                    last_updated: s.last_updated_time().map(|t| t.to_string()),
                })
            })
            .ok_or_else(|| ApiError::Service {
                action: action.into(),
                on: None,
                code: "NotFound".into(),
                message: format!("stack {stack_id} not found"),
            })
    }

    fn eks(&self, config: &SdkConfig, account: &str, region: &str) -> aws_sdk_eks::Client {
        let mut builder = aws_sdk_eks::config::Builder::from(config)
            .region(aws_config::Region::new(region.to_string()))
            .retry_config(retry_config())
            .retry_partition(retry_partition(account, region));
        if let Some(endpoint) = &self.eks_endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        aws_sdk_eks::Client::from_conf(builder.build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_is_read_from_a_lambda_function_arn() {
        let arn = "arn:aws:lambda:eu-west-1:123456789012:function:apono-eks-prod";
        assert_eq!(account_of(arn), Some("123456789012"));
        assert_eq!(account_of("arn:aws:lambda:eu-west-1::function:x"), None);
        assert_eq!(account_of("not an arn"), None);
    }

    /// The cold start makes no STS call: the account comes from the invocation.
    #[tokio::test]
    async fn a_learnt_account_needs_no_network() {
        let unreachable = SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9") // the discard port: nothing answers there
            .build();
        let fleet = AwsFleet::new(unreachable, None).await.unwrap();
        fleet.learn_own_account("arn:aws:lambda:us-east-1:210987654321:function:f");
        assert_eq!(fleet.own_account().await.unwrap(), "210987654321");
    }

    /// Member roles are assumed by ARNs in the function's own partition: from its region at
    /// first, from the invocation's ARN once seen.
    #[tokio::test]
    async fn the_partition_comes_from_the_region_then_from_the_invocation() {
        let config = |region: &'static str| {
            SdkConfig::builder()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(region))
                .build()
        };
        for (region, partition) in [
            ("us-gov-west-1", Partition::AwsUsGov),
            ("cn-northwest-1", Partition::AwsCn),
            ("eu-west-1", Partition::Aws),
        ] {
            let fleet = AwsFleet::new(config(region), None).await.unwrap();
            assert_eq!(fleet.partition(), partition);
            assert_eq!(
                fleet.org.organizations.config().region().unwrap().as_ref(),
                partition.home_region()
            );
        }
        let fleet = AwsFleet::new(config("eu-west-1"), None).await.unwrap();
        fleet.learn_own_account("arn:aws-cn:lambda:cn-north-1:210987654321:function:f");
        assert_eq!(fleet.partition(), Partition::AwsCn);
    }

    /// Throttling is contained where AWS applies it: each account x region has its own retry
    /// quota, and retries back off without a client-side rate limiter.
    #[tokio::test]
    async fn each_account_and_region_gets_its_own_retry_partition() {
        let config = SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let fleet = AwsFleet::new(config.clone(), None).await.unwrap();
        let partition = |account: &str, region: &str| {
            fleet
                .eks(&config, account, region)
                .config()
                .retry_partition()
                .cloned()
                .unwrap()
        };
        let a = partition("111111111111", "us-east-1");
        assert_eq!(a, RetryPartition::new("eks-111111111111-us-east-1"));
        assert_ne!(a, partition("222222222222", "us-east-1"));
        assert_ne!(a, partition("111111111111", "eu-west-1"));
        let retry = fleet
            .eks(&config, "111111111111", "us-east-1")
            .config()
            .retry_config()
            .cloned()
            .unwrap();
        assert_eq!(retry.mode(), aws_config::retry::RetryMode::Standard);
        assert_eq!(retry.max_attempts(), 8);
    }
}
