//! The emulated organization a local deploy runs in: moto with IAM enforcement, the fakes,
//! the seeded accounts and clusters, and what every function process printed.

use super::*;
use crate::events::Event;
use crate::fake_apono::FakeApono;
use crate::fake_eks::FakeEks;
use crate::fake_platform::FakePlatform;
use crate::iam::Authorizer;
use crate::lambda::{Function, Outcome};
use crate::moto::Moto;
use crate::org::{seed_organization, SeededOrg};
use crate::receiver::Receiver;
use eks_access_entries::eks::STACK_TAG;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The emulated organization and everything the stack's resources act on.
pub(super) struct World {
    pub(super) moto: Moto,
    pub(super) authorizer: Authorizer,
    pub(super) org: SeededOrg,
    pub(super) accounts: Vec<String>,
    pub(super) eks: FakeEks,
    pub(super) apono: FakeApono,
    pub(super) platform: FakePlatform,
    pub(super) rx: Receiver,
    /// Where the function binaries are, and what every function's environment holds besides
    /// its role's credentials.
    pub(super) bin: PathBuf,
    pub(super) env: Vec<(String, String)>,
    /// Every function process started: its name, its output (which outlives the process) and
    /// the secret key it was given, for the log scan. Not the process itself: a deleted
    /// function's process stops when `LocalCloud` drops its handle.
    pub(super) started: RefCell<Vec<StartedFunction>>,
    pub(super) regions: Vec<String>,
    pub(super) sent: AtomicUsize,
    /// Eligible clusters created after the stack (by the run itself).
    pub(super) added_later: std::cell::Cell<usize>,
    /// The connector's network in the management account: a VPC and two of its subnets.
    pub(super) vpc: String,
    pub(super) subnets: Vec<String>,
}

/// A VPC with two subnets in moto, as the kit's administrator: the connector's network.
async fn connector_network(config: &aws_config::SdkConfig) -> (String, Vec<String>) {
    let ec2 = aws_sdk_ec2::Client::new(config);
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.20.0.0/16")
        .send()
        .await
        .expect("VPC")
        .vpc
        .and_then(|v| v.vpc_id)
        .expect("VPC ID");
    let mut subnets = Vec::new();
    for cidr in ["10.20.1.0/24", "10.20.2.0/24"] {
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(cidr)
            .send()
            .await
            .expect("subnet")
            .subnet
            .and_then(|s| s.subnet_id)
            .expect("subnet ID");
        subnets.push(subnet);
    }
    (vpc, subnets)
}

impl World {
    pub(super) async fn new(options: &Options, bin: &std::path::Path) -> World {
        // Every call is checked against the caller's IAM policies: the test kit acts as an
        // administrator, each function as the role the template gives it.
        let moto = Moto::start_enforcing().await;
        let authorizer = Authorizer::new(&moto.endpoint, moto.admin_key_id().unwrap_or_default());
        let config = moto.sdk_config();
        let org = seed_organization(
            &config,
            options.member_accounts,
            options.organizational_units,
        )
        .await;
        let mut accounts = vec![org.management_account_id.clone()];
        accounts.extend(org.member_account_ids.clone());
        let regions: Vec<String> = org_info::api::regions::EKS_REGIONS
            .iter()
            .take(options.regions)
            .map(|r| r.to_string())
            .collect();

        // What was there before the stack: a token in SSM, someone else's integration,
        // clusters in every mode and status, someone else's access entry.
        put_api_token(&config).await;
        let (vpc, subnets) = connector_network(&config).await;
        let apono = FakeApono::start(TOKEN).await;
        apono.add_integration("team-x-aws", "aws-account", "team-x-connector");
        let eks = FakeEks::start(&moto.endpoint).await;
        for account in &accounts {
            for region in &regions {
                eks.add_cluster(account, region, "api", "ACTIVE", "API");
                eks.add_cluster(account, region, "both", "ACTIVE", "API_AND_CONFIG_MAP");
            }
            eks.add_cluster(account, &regions[0], "legacy", "ACTIVE", "CONFIG_MAP");
            eks.add_cluster(account, &regions[0], "young", "CREATING", "API");
        }
        let someone_else = role(&org.management_account_id, "team-x-admin");
        eks.add_entry(
            &accounts[accounts.len() - 1],
            &regions[0],
            "api",
            &someone_else,
        );
        let region_refs: Vec<&str> = regions.iter().map(String::as_str).collect();
        let platform = FakePlatform::start(&region_refs).await;
        eks.enforce(authorizer.clone());
        eks.set_lifecycle(crate::fake_eks::Lifecycle {
            creating: scaled(CLUSTER_CREATING),
            updating: scaled(CLUSTER_UPDATING),
        });
        platform.enforce(authorizer.clone());

        let mut env = function_env(&moto, &eks, &platform);
        // The role's credentials are added when the function is created.
        env.retain(|(k, _)| !k.starts_with("AWS_ACCESS_KEY") && !k.starts_with("AWS_SECRET"));
        env.extend([
            (
                custom_resource::DEADLINE_MARGIN_ENV.to_string(),
                "3".to_string(),
            ),
            ("RUST_LOG".to_string(), "debug".to_string()),
            // The cluster-event wait at the local deploy's pace.
            (
                "EKS_CLUSTER_POLL_SECONDS".to_string(),
                format!("{}", (CLUSTER_POLL / TIME_SCALE).as_secs_f64()),
            ),
            // Set by whoever deploys the function: the local fake Apono may get the token.
            (
                apono_integration::ALLOWED_HOSTS_ENV.to_string(),
                "127.0.0.1".to_string(),
            ),
        ]);
        World {
            moto,
            authorizer,
            org,
            accounts,
            eks,
            apono,
            platform,
            rx: Receiver::start().await,
            bin: bin.to_path_buf(),
            env,
            started: RefCell::new(Vec::new()),
            regions,
            sent: AtomicUsize::new(0),
            added_later: std::cell::Cell::new(0),
            vpc,
            subnets,
        }
    }

    /// Sends one event to `function` and returns CloudFormation's view of the answer (exactly
    /// one is required).
    pub(super) async fn send(
        &self,
        function: Option<Arc<Function>>,
        logical_id: &str,
        event: Event,
    ) -> Value {
        let n = self.sent.fetch_add(1, Ordering::SeqCst) + 1;
        let name = format!("{logical_id}-{n}");
        let mut value = event.logical_id(logical_id).into_value();
        value["ResponseURL"] = json!(self.rx.url(&name));
        let Some(function) = function else {
            return json!({"Status": "NO-FUNCTION", "Reason": "no function behind the ServiceToken"});
        };
        match function.invoke(value, Duration::from_secs(300)).await {
            Ok(Outcome::Response(_)) => {}
            Ok(Outcome::Error(e)) => {
                return json!({"Status": "LAMBDA-ERROR", "Reason": e.to_string()})
            }
            Err(e) => return json!({"Status": "NO-ANSWER", "Reason": e}),
        }
        let prefix = format!("/cfn-response/{name}?");
        let answers: Vec<_> = self
            .rx
            .accepted()
            .into_iter()
            .filter(|r| r.target.starts_with(&prefix))
            .collect();
        match answers.as_slice() {
            [one] => one.json(),
            [] => json!({"Status": "NO-ANSWER"}),
            _ => json!({"Status": "MORE-THAN-ONE-ANSWER"}),
        }
    }

    /// Registers a member account as the StackSets delegated administrator (as the
    /// management account does) and gives it the Apono token in SSM, as its stack expects;
    /// that account.
    pub(super) async fn delegate_stacksets(&self) -> String {
        let delegate = self.org.member_account_ids[self.org.member_account_ids.len() - 1].clone();
        let admin = self.moto.sdk_config();
        aws_sdk_organizations::Client::new(&admin)
            .register_delegated_administrator()
            .account_id(&delegate)
            .service_principal(org_info::api::STACKSETS_SERVICE_PRINCIPAL)
            .send()
            .await
            .expect("register the delegated administrator");
        let there = crate::org::assume_member(&self.moto, &admin, &delegate).await;
        put_api_token(&there).await;
        delegate
    }

    /// Entries carrying this stack's tags, for `principal`.
    pub(super) fn ours(&self, principal: &str) -> usize {
        self.eks.entries_tagged(principal, STACK_TAG)
    }

    /// ACTIVE clusters in API modes, in the accounts the stack reaches.
    pub(super) fn eligible_clusters(&self, accounts: usize) -> usize {
        accounts * self.regions.len() * 2 + self.added_later.get()
    }

    pub(super) fn someone_elses_entry_kept(&self) -> bool {
        let account = &self.accounts[self.accounts.len() - 1];
        self.eks
            .entries(account, &self.regions[0], "api")
            .contains_key(&role(&self.org.management_account_id, "team-x-admin"))
    }
}

/// A function process as the log scan needs it: its output outlives the process.
pub(super) struct StartedFunction {
    pub(super) name: String,
    pub(super) output: Arc<std::sync::Mutex<Vec<String>>>,
    pub(super) secret: String,
}

/// What one function process wrote, and the secret access key it was given.
pub(super) struct FunctionLog {
    pub(super) name: String,
    pub(super) text: String,
    pub(super) secret: String,
}

/// The Apono API token as the README asks a user to store it: an SSM SecureString.
async fn put_api_token(config: &aws_config::SdkConfig) {
    aws_sdk_ssm::Client::new(config)
        .put_parameter()
        .name(TOKEN_PARAMETER)
        .value(TOKEN)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("SSM parameter");
}
