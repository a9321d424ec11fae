//! The local deploy behind `scripts/local-run.sh`: template.yaml after the SAM transform,
//! deployed by the CloudFormation model in [`crate::deploy`] (rules, dependency order, seeded
//! parallel starts, rollback) into an emulated organization: moto, fakes for what moto lacks,
//! and the real function binaries behind a local Lambda runtime API. Every resource of the
//! template is created, updated and deleted; what each one does is modelled in [`LocalCloud`].

use crate::deploy::{Complete, Failure, Provider, Stack, StackStatus};
use crate::events::Event;
use crate::fake_apono::FakeApono;
use crate::fake_eks::FakeEks;
use crate::fake_platform::FakePlatform;
use crate::iam::Authorizer;
use crate::lambda::{Function, Outcome};
use crate::moto::Moto;
use crate::org::{seed_organization, SeededOrg};
use crate::receiver::{Receiver, FAKE_SIGNATURE};
use crate::template::{substitute, Rendering};
use eks_access_entries::eks::STACK_TAG;
use futures::future::LocalBoxFuture;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Options {
    pub member_accounts: usize,
    pub organizational_units: usize,
    pub regions: usize,
    /// Each scenario runs once per seed; the seed shuffles the order among ready resources.
    pub seeds: Vec<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            member_accounts: 6,
            organizational_units: 2,
            regions: 3,
            seeds: vec![1, 2],
        }
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub steps: Vec<Step>,
}

impl Report {
    pub fn ok(&self) -> bool {
        !self.steps.is_empty() && self.steps.iter().all(|s| s.ok)
    }

    fn check(&mut self, name: &str, ok: bool, detail: impl Into<String>) {
        let detail = detail.into();
        println!(
            "  [{}] {name:<58} {detail}",
            if ok { " ok " } else { "FAIL" }
        );
        self.steps.push(Step {
            name: name.into(),
            ok,
            detail,
        });
    }
}

const TOKEN: &str = "apono-local-api-token-7c1d92e4";
const TOKEN_PARAMETER: &str = "/apono/api-token";
const CONNECTOR_ID: &str = "local-connector";

/// Builds the function binaries (workspace features, so the test build's artifacts are reused).
pub fn build_binaries() -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--workspace", "--bins", "--locked", "--quiet"])
        .current_dir(crate::workspace_root())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err("cargo build of the functions failed".into());
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| crate::workspace_root().join("target"));
    Ok(target.join("debug"))
}

/// What a function binary needs to run against moto and the fakes, as on Lambda.
pub fn function_env(moto: &Moto, eks: &FakeEks, platform: &FakePlatform) -> Vec<(String, String)> {
    let mut env = moto.env();
    env.extend([
        ("AWS_ENDPOINT_URL_EKS".to_string(), eks.url()),
        ("AWS_ENDPOINT_URL_ACCOUNT".to_string(), platform.url()),
        (
            "AWS_ENDPOINT_URL_CLOUDFORMATION".to_string(),
            platform.url(),
        ),
        (
            custom_resource::TEST_LOOPBACK_ENV.to_string(),
            "1".to_string(),
        ),
    ]);
    env
}

fn role(account: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:role/{name}")
}

/// The emulated organization and everything the stack's resources act on.
struct World {
    moto: Moto,
    authorizer: Authorizer,
    org: SeededOrg,
    accounts: Vec<String>,
    eks: FakeEks,
    apono: FakeApono,
    platform: FakePlatform,
    rx: Receiver,
    /// Where the function binaries are, and what every function's environment holds besides
    /// its role's credentials.
    bin: PathBuf,
    env: Vec<(String, String)>,
    /// Every function process started: its name, its output (which outlives the process) and
    /// the secret key it was given, for the log scan. Not the process itself: a deleted
    /// function's process stops when `LocalCloud` drops its handle.
    started: RefCell<Vec<StartedFunction>>,
    regions: Vec<String>,
    sent: AtomicUsize,
    /// Eligible clusters created after the stack (by the run itself).
    added_later: std::cell::Cell<usize>,
}

impl World {
    async fn new(options: &Options, bin: &std::path::Path) -> World {
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
        aws_sdk_ssm::Client::new(&config)
            .put_parameter()
            .name(TOKEN_PARAMETER)
            .value(TOKEN)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .send()
            .await
            .expect("SSM parameter");
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
        }
    }

    /// Sends one event to `function` and returns CloudFormation's view of the answer (exactly
    /// one is required).
    async fn send(&self, function: Option<Arc<Function>>, logical_id: &str, event: Event) -> Value {
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

    /// Entries carrying this stack's tags, for `principal`.
    fn ours(&self, principal: &str) -> usize {
        self.eks.entries_tagged(principal, STACK_TAG)
    }

    /// ACTIVE clusters in API modes, in the accounts the stack reaches.
    fn eligible_clusters(&self, accounts: usize) -> usize {
        accounts * self.regions.len() * 2 + self.added_later.get()
    }

    fn someone_elses_entry_kept(&self) -> bool {
        let account = &self.accounts[self.accounts.len() - 1];
        self.eks
            .entries(account, &self.regions[0], "api")
            .contains_key(&role(&self.org.management_account_id, "team-x-admin"))
    }
}

/// Every resource type of the template, emulated: custom resources run the real function
/// binaries; the StackSet deploys the member template in moto; the ECS service stabilises after
/// a while and its connector becomes known to Apono a while after that; the schedule fires at
/// random moments for as long as the rule exists; the rest complete after a short delay with
/// the attributes CloudFormation would give them.
struct LocalCloud<'w> {
    world: &'w World,
    template: &'w Value,
    rng: RefCell<fastrand::Rng>,
    schedules: RefCell<BTreeMap<String, tokio::task::JoinHandle<()>>>,
    fired: Arc<AtomicUsize>,
    counter: AtomicUsize,
    /// The functions that exist now, by ARN.
    functions: RefCell<BTreeMap<String, Arc<Function>>>,
    /// The roles each StackSet made in the member accounts: (account, role name).
    stack_set_roles: RefCell<BTreeMap<String, Vec<(String, String)>>>,
}

impl<'w> LocalCloud<'w> {
    fn new(world: &'w World, template: &'w Value, seed: u64) -> Self {
        LocalCloud {
            world,
            template,
            rng: RefCell::new(fastrand::Rng::with_seed(seed)),
            schedules: RefCell::new(BTreeMap::new()),
            fired: Arc::new(AtomicUsize::new(0)),
            counter: AtomicUsize::new(0),
            functions: RefCell::new(BTreeMap::new()),
            stack_set_roles: RefCell::new(BTreeMap::new()),
        }
    }

    fn account(&self) -> &str {
        &self.world.org.management_account_id
    }

    /// A short, seeded pause: resources of one wave finish in varying order.
    async fn pause(&self, base_ms: u64) {
        let jitter = self.rng.borrow_mut().u64(0..=base_ms);
        tokio::time::sleep(Duration::from_millis(base_ms + jitter)).await;
    }

    fn name(&self, logical_id: &str, given: &Value) -> String {
        match given.as_str() {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => format!(
                "apono-onboarding-{logical_id}-{:04}",
                self.counter.fetch_add(1, Ordering::SeqCst)
            ),
        }
    }

    /// The live function behind an ARN (a custom resource's ServiceToken, a rule's target).
    fn function(&self, arn: &str) -> Option<Arc<Function>> {
        self.functions.borrow().get(arn).cloned()
    }

    /// The custom resource's event, answered by the real function.
    async fn custom(&self, logical_id: &str, event: Event) -> Value {
        let token = event.get()["ResourceProperties"]["ServiceToken"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.world
            .send(self.function(&token), logical_id, event)
            .await
    }

    /// IAM in the management account, as the kit's administrator.
    fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.world.moto.sdk_config())
    }

    /// IAM in a member account, through its OrganizationAccountAccessRole (how CloudFormation's
    /// StackSets execution role acts there).
    async fn member_iam(&self, account: &str) -> aws_sdk_iam::Client {
        let admin = self.world.moto.sdk_config();
        aws_sdk_iam::Client::new(
            &crate::org::assume_member(&self.world.moto, &admin, account).await,
        )
    }

    /// The roles an `AWS::IAM::Policy` is attached to (their names: `Ref` of a role).
    fn policy_roles(props: &Value) -> Vec<String> {
        props["Roles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect()
    }

    /// Starts the function's process with its role's credentials, as Lambda does: Lambda
    /// assumes the execution role, so a role that cannot be assumed fails the function.
    async fn start_function(
        &self,
        arn: &str,
        name: &str,
        binary: &str,
        props: &Value,
    ) -> Result<(), String> {
        let role_arn = props["Role"].as_str().unwrap_or_default();
        let sts = aws_sdk_sts::Client::new(&self.world.moto.sdk_config());
        let credentials = sts
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(name)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "Lambda cannot assume {role_arn}: {:?}",
                    e.into_service_error()
                )
            })?
            .credentials
            .ok_or("AssumeRole returned no credentials")?;
        let mut env = self.world.env.clone();
        // The template's own settings for the function.
        env.extend(
            props["Environment"]["Variables"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())),
        );
        env.extend([
            ("AWS_ACCESS_KEY_ID".to_string(), credentials.access_key_id),
            (
                "AWS_SECRET_ACCESS_KEY".to_string(),
                credentials.secret_access_key.clone(),
            ),
            ("AWS_SESSION_TOKEN".to_string(), credentials.session_token),
        ]);
        // Lambda's default timeout is 3 s; the rendered template carries numbers as strings.
        let timeout = props["Timeout"]
            .as_u64()
            .or_else(|| props["Timeout"].as_str()?.parse().ok())
            .unwrap_or(3);
        let timeout = Duration::from_secs(timeout);
        let function = Arc::new(
            Function::start_as(
                name,
                arn,
                &self.world.bin.join(binary),
                &env,
                timeout,
                Some(self.world.authorizer.clone()),
            )
            .await,
        );
        self.world.started.borrow_mut().push(StartedFunction {
            name: name.to_string(),
            output: function.output.clone(),
            secret: credentials.secret_access_key,
        });
        self.functions
            .borrow_mut()
            .insert(arn.to_string(), function);
        Ok(())
    }

    fn custom_properties(&self, resource_type: &str, mut props: Value) -> Value {
        if resource_type == "Custom::AponoIntegration" {
            // The one deviation from the template: Apono is the local fake.
            props["ApiUrl"] = json!(self.world.apono.url());
        }
        props
    }

    fn answer(body: Value) -> Result<Complete, Failure> {
        let physical_id = body["PhysicalResourceId"].as_str().map(str::to_string);
        if body["Status"] != "SUCCESS" {
            return Err(Failure {
                physical_id,
                reason: format!(
                    "{} {}",
                    body["Status"].as_str().unwrap_or("?"),
                    body["Reason"].as_str().unwrap_or("")
                ),
            });
        }
        let attributes = body["Data"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        Ok(Complete {
            physical_id: physical_id.unwrap_or_default(),
            attributes,
        })
    }

    /// The StackSet, as CloudFormation runs it: its template body, rendered with its
    /// parameters in each account of the target OUs (never the management account, where
    /// service-managed StackSets do not deploy), the roles and policies created there.
    async fn stack_set(&self, props: &Value) -> Result<Complete, Failure> {
        let fail = |reason: String| Failure {
            physical_id: None,
            reason,
        };
        let name = props["StackSetName"]
            .as_str()
            .unwrap_or("apono-member-roles");
        let physical_id = format!("{name}:local");
        let parameters: Vec<(String, String)> = props["Parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["ParameterKey"].as_str().unwrap_or_default().to_string(),
                    p["ParameterValue"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let parameters: Vec<(&str, &str)> = parameters
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let targets: Vec<String> = props["StackInstancesGroup"][0]["DeploymentTargets"]
            ["OrganizationalUnitIds"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let body =
            tempfile_with(props["TemplateBody"].as_str().unwrap_or_default()).map_err(fail)?;
        let template = crate::template::template_json_at(body.path());
        let mut made = Vec::new();
        let mut outcome = Ok(());
        for account in self.accounts_under(&targets).await.map_err(fail)? {
            let iam = self.member_iam(&account).await;
            let mut r = Rendering::in_account(&template, &parameters, &account);
            outcome = deploy_member_stack(&iam, &template, &mut r, &account, &mut made).await;
            if outcome.is_err() {
                break;
            }
        }
        // Whatever was made is the StackSet's, for its Delete (and a failed Create's rollback).
        self.stack_set_roles
            .borrow_mut()
            .insert(physical_id.clone(), made);
        outcome.map_err(|reason| Failure {
            physical_id: Some(physical_id.clone()),
            reason,
        })?;
        Ok(Complete {
            physical_id: physical_id.clone(),
            attributes: BTreeMap::from([("StackSetId".to_string(), physical_id)]),
        })
    }

    /// The accounts in the target OUs and every OU below them, the management account left out.
    async fn accounts_under(&self, targets: &[String]) -> Result<Vec<String>, String> {
        let orgs = aws_sdk_organizations::Client::new(&self.world.moto.sdk_config());
        let mut accounts = Vec::new();
        let mut parents: Vec<String> = targets.to_vec();
        while let Some(parent) = parents.pop() {
            let listed = orgs
                .list_accounts_for_parent()
                .parent_id(&parent)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "ListAccountsForParent {parent}: {:?}",
                        e.into_service_error()
                    )
                })?;
            accounts.extend(listed.accounts().iter().filter_map(|a| a.id.clone()));
            let children = orgs
                .list_organizational_units_for_parent()
                .parent_id(&parent)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "ListOrganizationalUnitsForParent {parent}: {:?}",
                        e.into_service_error()
                    )
                })?;
            parents.extend(
                children
                    .organizational_units()
                    .iter()
                    .filter_map(|ou| ou.id.clone()),
            );
        }
        accounts.retain(|a| *a != self.world.org.management_account_id);
        accounts.sort();
        accounts.dedup();
        Ok(accounts)
    }

    /// Roles in the member accounts other than the one AWS Organizations made.
    async fn member_roles(&self) -> Vec<String> {
        let mut roles = Vec::new();
        for account in &self.world.org.member_account_ids {
            let listed = self
                .member_iam(account)
                .await
                .list_roles()
                .send()
                .await
                .map(|r| r.roles)
                .unwrap_or_default();
            roles.extend(
                listed
                    .into_iter()
                    .map(|r| r.role_name)
                    .filter(|name| name != "OrganizationAccountAccessRole")
                    .map(|name| format!("{account}/{name}")),
            );
        }
        roles
    }

    /// Deletes what the StackSet made in every member account, as CloudFormation does when
    /// the resource is deleted.
    async fn delete_stack_set(&self, physical_id: &str) -> Result<(), String> {
        let made = self
            .stack_set_roles
            .borrow_mut()
            .remove(physical_id)
            .unwrap_or_default();
        for (account, role) in made {
            delete_role(&self.member_iam(&account).await, &role)
                .await
                .map_err(|e| format!("{e} in {account}"))?;
        }
        Ok(())
    }

    fn start_schedule(&self, rule: &str, props: &Value) {
        let input = props["Targets"][0]["Input"].as_str().unwrap_or("{}");
        let event: Value = serde_json::from_str(input).unwrap_or(Value::Null);
        let Some(function) = self.function(props["Targets"][0]["Arn"].as_str().unwrap_or(""))
        else {
            return;
        };
        let fired = self.fired.clone();
        let delays: Vec<u64> = (0..4)
            .map(|_| self.rng.borrow_mut().u64(200..1500))
            .collect();
        // For as long as the rule exists (its task is aborted when the rule is deleted).
        let task = tokio::spawn(async move {
            for delay in delays.iter().cycle() {
                tokio::time::sleep(Duration::from_millis(*delay)).await;
                function.enqueue(event.clone());
                fired.fetch_add(1, Ordering::SeqCst);
            }
        });
        self.schedules.borrow_mut().insert(rule.to_string(), task);
    }
}

/// The role in moto, as CloudFormation creates or updates it: trust, inline policies. AWS
/// managed policies are not attached (moto does not hold them; nothing the functions call
/// relies on them). moto cannot act as the Lambda service, so a role Lambda assumes trusts the
/// kit's administrator instead, who assumes it on Lambda's behalf.
async fn put_role(
    iam: &aws_sdk_iam::Client,
    name: &str,
    props: &Value,
    create: bool,
) -> Result<(), String> {
    let mut trust = props["AssumeRolePolicyDocument"].clone();
    if trust.to_string().contains("lambda.amazonaws.com") {
        let admin = format!(
            "arn:aws:iam::{}:user/{}",
            crate::moto::DEFAULT_ACCOUNT,
            crate::moto::ADMIN_USER
        );
        trust = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": admin}, "Action": "sts:AssumeRole"}]});
    }
    if create {
        iam.create_role()
            .role_name(name)
            .assume_role_policy_document(trust.to_string())
            .send()
            .await
            .map_err(|e| format!("CreateRole {name}: {:?}", e.into_service_error()))?;
    }
    let wanted: BTreeMap<String, String> = props["Policies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                p["PolicyName"].as_str()?.to_string(),
                p["PolicyDocument"].to_string(),
            ))
        })
        .collect();
    if !create {
        let existing = iam
            .list_role_policies()
            .role_name(name)
            .send()
            .await
            .map_err(|e| format!("ListRolePolicies {name}: {:?}", e.into_service_error()))?
            .policy_names;
        for gone in existing.iter().filter(|p| !wanted.contains_key(*p)) {
            delete_role_policy(iam, name, gone).await?;
        }
    }
    for (policy, document) in wanted {
        put_role_policy(iam, name, &policy, &document).await?;
    }
    Ok(())
}

async fn put_role_policy(
    iam: &aws_sdk_iam::Client,
    role: &str,
    policy: &str,
    document: &str,
) -> Result<(), String> {
    iam.put_role_policy()
        .role_name(role)
        .policy_name(policy)
        .policy_document(document)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            format!(
                "PutRolePolicy {role}/{policy}: {:?}",
                e.into_service_error()
            )
        })
}

async fn delete_role_policy(
    iam: &aws_sdk_iam::Client,
    role: &str,
    policy: &str,
) -> Result<(), String> {
    iam.delete_role_policy()
        .role_name(role)
        .policy_name(policy)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            format!(
                "DeleteRolePolicy {role}/{policy}: {:?}",
                e.into_service_error()
            )
        })
}

/// Deletes a role and its inline policies.
async fn delete_role(iam: &aws_sdk_iam::Client, name: &str) -> Result<(), String> {
    let policies = iam
        .list_role_policies()
        .role_name(name)
        .send()
        .await
        .map_err(|e| format!("ListRolePolicies {name}: {:?}", e.into_service_error()))?
        .policy_names;
    for policy in policies {
        delete_role_policy(iam, name, &policy).await?;
    }
    iam.delete_role()
        .role_name(name)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("DeleteRole {name}: {:?}", e.into_service_error()))
}

impl Provider for LocalCloud<'_> {
    fn create<'a>(
        &'a self,
        logical_id: &'a str,
        resource_type: &'a str,
        props: Value,
    ) -> LocalBoxFuture<'a, Result<Complete, Failure>> {
        Box::pin(async move {
            let region = "us-east-1";
            let account = self.account().to_string();
            let simple = |physical_id: String, attributes: &[(&str, String)]| {
                Ok(Complete {
                    physical_id,
                    attributes: attributes
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.clone()))
                        .collect(),
                })
            };
            match resource_type {
                t if t.starts_with("Custom::") => {
                    let props = self.custom_properties(t, props);
                    let body = self
                        .custom(logical_id, Event::create(t, "").properties(props))
                        .await;
                    Self::answer(body)
                }
                "AWS::Lambda::Function" => {
                    self.pause(40).await;
                    let name = self.name(logical_id, &props["FunctionName"]);
                    let arn = format!("arn:aws:lambda:{region}:{account}:function:{name}");
                    let binary = self.template["Resources"][logical_id]["Metadata"]
                        ["BuildProperties"]["Binary"]
                        .as_str()
                        .unwrap_or_default();
                    self.start_function(&arn, &name, binary, &props)
                        .await
                        .map_err(|reason| Failure {
                            physical_id: None,
                            reason,
                        })?;
                    simple(name, &[("Arn", arn)])
                }
                "AWS::IAM::Role" => {
                    self.pause(60).await;
                    let name = self.name(logical_id, &props["RoleName"]);
                    put_role(&self.iam(), &name, &props, true)
                        .await
                        .map_err(|reason| Failure {
                            physical_id: None,
                            reason,
                        })?;
                    let arn = role(&account, &name);
                    simple(name, &[("Arn", arn)])
                }
                "AWS::IAM::Policy" => {
                    // Granted only now that the resource completes.
                    self.pause(60).await;
                    let name = props["PolicyName"]
                        .as_str()
                        .unwrap_or(logical_id)
                        .to_string();
                    for role in Self::policy_roles(&props) {
                        let document = props["PolicyDocument"].to_string();
                        put_role_policy(&self.iam(), &role, &name, &document)
                            .await
                            .map_err(|reason| Failure {
                                physical_id: None,
                                reason,
                            })?;
                    }
                    simple(name, &[])
                }
                "AWS::CloudFormation::StackSet" => {
                    self.pause(100).await;
                    self.stack_set(&props).await
                }
                "AWS::ECS::Service" => {
                    // Stabilising takes a while; the container connects to Apono later still.
                    self.pause(700).await;
                    let apono = self.world.apono.clone();
                    let connector = props_connector(self.template);
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(1500)).await;
                        apono.add_connector(&connector, "CONNECTED");
                    });
                    let name = self.name(logical_id, &Value::Null);
                    let arn = format!("arn:aws:ecs:{region}:{account}:service/{name}");
                    simple(arn, &[("Name", name)])
                }
                "AWS::SNS::Topic" => {
                    // Ref of a topic is its ARN.
                    self.pause(40).await;
                    let name = self.name(logical_id, &props["TopicName"]);
                    let arn = format!("arn:aws:sns:{region}:{account}:{name}");
                    simple(arn.clone(), &[("TopicArn", arn), ("TopicName", name)])
                }
                "AWS::EC2::SecurityGroup" => {
                    self.pause(40).await;
                    let id = format!("sg-{:017x}", self.counter.fetch_add(1, Ordering::SeqCst));
                    simple(id.clone(), &[("GroupId", id)])
                }
                "AWS::ECS::TaskDefinition" => {
                    // Ref of a task definition is its ARN.
                    self.pause(40).await;
                    let name = self.name(logical_id, &props["Family"]);
                    let arn = format!("arn:aws:ecs:{region}:{account}:task-definition/{name}:1");
                    simple(arn.clone(), &[("TaskDefinitionArn", arn)])
                }
                "AWS::Events::Rule" => {
                    self.pause(40).await;
                    let name = self.name(logical_id, &Value::Null);
                    self.start_schedule(&name, &props);
                    let arn = format!("arn:aws:events:{region}:{account}:rule/{name}");
                    simple(name, &[("Arn", arn)])
                }
                _ => {
                    self.pause(40).await;
                    let name = self.name(logical_id, &Value::Null);
                    simple(name.clone(), &[("Arn", format!("arn:local:{name}"))])
                }
            }
        })
    }

    fn update<'a>(
        &'a self,
        logical_id: &'a str,
        resource_type: &'a str,
        physical_id: &'a str,
        props: Value,
        old: Value,
    ) -> LocalBoxFuture<'a, Result<Complete, Failure>> {
        Box::pin(async move {
            match resource_type {
                t if t.starts_with("Custom::") => {
                    let event = Event::update(t, "", physical_id)
                        .properties(self.custom_properties(t, props))
                        .old_properties(self.custom_properties(t, old));
                    Self::answer(self.custom(logical_id, event).await)
                }
                "AWS::Lambda::Function" => {
                    // New code or configuration: Lambda's next invocation runs in a new
                    // execution environment.
                    self.pause(40).await;
                    let arn = format!(
                        "arn:aws:lambda:us-east-1:{}:function:{physical_id}",
                        self.account()
                    );
                    if props != old {
                        let binary = self.template["Resources"][logical_id]["Metadata"]
                            ["BuildProperties"]["Binary"]
                            .as_str()
                            .unwrap_or_default();
                        self.functions.borrow_mut().remove(&arn);
                        self.start_function(&arn, physical_id, binary, &props)
                            .await
                            .map_err(|reason| Failure {
                                physical_id: Some(physical_id.to_string()),
                                reason,
                            })?;
                    }
                    Ok(Complete {
                        physical_id: physical_id.to_string(),
                        attributes: BTreeMap::from([("Arn".to_string(), arn)]),
                    })
                }
                "AWS::CloudFormation::StackSet" => {
                    // moto's UpdateStackSet does not redeploy its instances: the member stacks
                    // are deployed anew with the new parameters, as CloudFormation's update
                    // of every instance would leave them.
                    self.pause(100).await;
                    if props != old {
                        let failed = |reason| Failure {
                            physical_id: Some(physical_id.to_string()),
                            reason,
                        };
                        self.delete_stack_set(physical_id).await.map_err(failed)?;
                        self.stack_set(&props).await?;
                    }
                    Ok(Complete {
                        physical_id: physical_id.to_string(),
                        attributes: BTreeMap::from([(
                            "StackSetId".to_string(),
                            physical_id.to_string(),
                        )]),
                    })
                }
                "AWS::IAM::Role" => {
                    self.pause(40).await;
                    put_role(&self.iam(), physical_id, &props, false)
                        .await
                        .map_err(|reason| Failure {
                            physical_id: Some(physical_id.to_string()),
                            reason,
                        })?;
                    Ok(Complete {
                        physical_id: physical_id.to_string(),
                        attributes: BTreeMap::from([(
                            "Arn".to_string(),
                            role(self.account(), physical_id),
                        )]),
                    })
                }
                "AWS::IAM::Policy" => {
                    self.pause(40).await;
                    for role in Self::policy_roles(&old) {
                        // Detached from a role no longer listed; rewritten on the others.
                        let _ = delete_role_policy(&self.iam(), &role, physical_id).await;
                    }
                    for role in Self::policy_roles(&props) {
                        let document = props["PolicyDocument"].to_string();
                        put_role_policy(&self.iam(), &role, physical_id, &document)
                            .await
                            .map_err(|reason| Failure {
                                physical_id: Some(physical_id.to_string()),
                                reason,
                            })?;
                    }
                    Ok(Complete {
                        physical_id: physical_id.to_string(),
                        attributes: BTreeMap::new(),
                    })
                }
                "AWS::Events::Rule" => {
                    // EventBridge fires the new input from now on.
                    if let Some(task) = self.schedules.borrow_mut().remove(physical_id) {
                        task.abort();
                    }
                    self.start_schedule(physical_id, &props);
                    let arn = format!(
                        "arn:aws:events:us-east-1:{}:rule/{physical_id}",
                        self.account()
                    );
                    Ok(Complete {
                        physical_id: physical_id.to_string(),
                        attributes: BTreeMap::from([("Arn".to_string(), arn)]),
                    })
                }
                _ => {
                    // Non-custom resources keep their physical ID in the changes this run makes.
                    self.pause(40).await;
                    Ok(Complete {
                        physical_id: physical_id.to_string(),
                        attributes: BTreeMap::new(),
                    })
                }
            }
        })
    }

    fn delete<'a>(
        &'a self,
        logical_id: &'a str,
        resource_type: &'a str,
        physical_id: &'a str,
        props: Value,
    ) -> LocalBoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            match resource_type {
                t if t.starts_with("Custom::") => {
                    let event = Event::delete(t, "", physical_id)
                        .properties(self.custom_properties(t, props));
                    let body = self.custom(logical_id, event).await;
                    match body["Status"] == "SUCCESS" {
                        true => Ok(()),
                        false => Err(format!("{body}")),
                    }
                }
                "AWS::Events::Rule" => {
                    if let Some(task) = self.schedules.borrow_mut().remove(physical_id) {
                        task.abort();
                    }
                    Ok(())
                }
                "AWS::Lambda::Function" => {
                    self.pause(30).await;
                    let arn = format!(
                        "arn:aws:lambda:us-east-1:{}:function:{physical_id}",
                        self.account()
                    );
                    // Dropping the last handle stops the process.
                    self.functions.borrow_mut().remove(&arn);
                    Ok(())
                }
                "AWS::IAM::Role" => {
                    self.pause(30).await;
                    delete_role(&self.iam(), physical_id).await
                }
                "AWS::CloudFormation::StackSet" => {
                    self.pause(100).await;
                    self.delete_stack_set(physical_id).await
                }
                "AWS::IAM::Policy" => {
                    self.pause(30).await;
                    for role in Self::policy_roles(&props) {
                        delete_role_policy(&self.iam(), &role, physical_id).await?;
                    }
                    Ok(())
                }
                "AWS::ECS::Service" => {
                    self.pause(300).await;
                    self.world
                        .apono
                        .add_connector(&props_connector(self.template), "DISCONNECTED");
                    Ok(())
                }
                _ => {
                    self.pause(30).await;
                    Ok(())
                }
            }
        })
    }

    fn stack_status(&self, status: &str) {
        self.world.platform.set_stack_status(status);
    }
}

/// The connector ID the ECS service runs (its task definition's APONO_CONNECTOR_ID): the local
/// run always uses [`CONNECTOR_ID`].
fn props_connector(_template: &Value) -> String {
    CONNECTOR_ID.to_string()
}

/// One member account's stack: its roles (with their inline policies), then its policy
/// resources, created in moto in that account. Each role made is recorded in `made`.
async fn deploy_member_stack(
    iam: &aws_sdk_iam::Client,
    template: &Value,
    r: &mut Rendering,
    account: &str,
    made: &mut Vec<(String, String)>,
) -> Result<(), String> {
    let resources: Vec<(&String, &Value)> = template["Resources"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, resource)| r.included(resource))
        .collect();
    let mut roles = BTreeMap::new();
    for (logical_id, resource) in &resources {
        if resource["Type"] != "AWS::IAM::Role" {
            continue;
        }
        let props = substitute(&resource["Properties"], r).unwrap_or(Value::Null);
        let name = props["RoleName"]
            .as_str()
            .unwrap_or(logical_id.as_str())
            .to_string();
        put_role(iam, &name, &props, true)
            .await
            .map_err(|e| format!("{e} in {account}"))?;
        made.push((account.to_string(), name.clone()));
        roles.insert(logical_id.to_string(), name);
    }
    for (logical_id, name) in &roles {
        r.attributes
            .insert((logical_id.clone(), "Ref".into()), name.clone());
        r.attributes.insert(
            (logical_id.clone(), "Arn".into()),
            format!("arn:aws:iam::{account}:role/{name}"),
        );
    }
    for (_, resource) in &resources {
        if resource["Type"] != "AWS::IAM::Policy" {
            continue;
        }
        let props = substitute(&resource["Properties"], r).unwrap_or(Value::Null);
        let policy = props["PolicyName"].as_str().unwrap_or_default();
        for role in LocalCloud::policy_roles(&props) {
            put_role_policy(iam, &role, policy, &props["PolicyDocument"].to_string())
                .await
                .map_err(|e| format!("{e} in {account}"))?;
        }
    }
    Ok(())
}

/// A file holding `text`, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn tempfile_with(text: &str) -> Result<TempFile, String> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "local-deploy-{}-{}.yaml",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(TempFile(path))
}

/// One scope x connector mode, as a user would deploy it.
struct Scenario {
    scope: &'static str,
    mode: &'static str,
}

impl Scenario {
    fn parameters(&self, connector_role: &str, integration_name: &str) -> Vec<(String, String)> {
        let mut p: Vec<(String, String)> = [
            ("Scope", self.scope),
            ("ConnectorMode", self.mode),
            ("AponoConnectorId", CONNECTOR_ID),
            ("AponoApiTokenParameterName", TOKEN_PARAMETER),
            ("AponoIntegrationName", integration_name),
            ("ConnectorWaitSeconds", "30"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        match self.mode {
            "Deploy" => p.extend(
                [
                    ("VpcId", "vpc-0abc12345"),
                    ("SubnetIds", "subnet-0abc12345,subnet-0def67890"),
                    (
                        "ConnectorTokenSecretArn",
                        "arn:aws:secretsmanager:us-east-1:123456789012:secret:apono-connector-AbCdEf",
                    ),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
            ),
            _ => p.push(("ConnectorRoleArn".into(), connector_role.into())),
        }
        p
    }
}

/// Removes the policy statement `sid` from every role of `template`; true if one was there.
fn remove_statement(template: &mut Value, sid: &str) -> bool {
    let mut removed = false;
    for (_, resource) in template["Resources"].as_object_mut().into_iter().flatten() {
        let policies = resource
            .get_mut("Properties")
            .and_then(|p| p.get_mut("Policies"))
            .and_then(Value::as_array_mut);
        for policy in policies.into_iter().flatten() {
            if let Some(statements) = policy["PolicyDocument"]["Statement"].as_array_mut() {
                let before = statements.len();
                statements.retain(|s| s["Sid"] != sid);
                removed |= statements.len() < before;
            }
        }
    }
    removed
}

fn borrowed(p: &[(String, String)]) -> Vec<(&str, &str)> {
    p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn status_line(status: &StackStatus) -> String {
    custom_resource::response::truncate_utf8(&format!("{status:?}"), 300).to_string()
}

/// Prints the operations since `since`, in start order.
fn show_timeline(stack: &Stack, since: usize) {
    for line in stack.timeline(since) {
        println!("         {line}");
    }
}

/// One scenario's lifecycle: create, a real update, a no-op update, delete (the schedule
/// firing throughout); in the first scenario also a refused create and a rolled-back one.
async fn lifecycle(
    report: &mut Report,
    options: &Options,
    bin: &std::path::Path,
    template: &Value,
    scenario: &Scenario,
    seed: u64,
    failures_too: bool,
) -> Vec<FunctionLog> {
    let w = World::new(options, bin).await;
    let cloud = LocalCloud::new(&w, template, seed);
    let tag = format!("{}/{} seed {seed}", scenario.scope, scenario.mode);
    println!(
        "\n== {tag}: organization {} ({} members in {} OUs), EKS in {} regions",
        w.org.organization_id,
        w.org.member_account_ids.len(),
        w.org.ou_ids.len(),
        w.regions.len()
    );
    if scenario.mode == "Existing" {
        w.apono.add_connector(CONNECTOR_ID, "CONNECTED");
    }
    let mgmt = w.org.management_account_id.clone();
    let v1 = role(&mgmt, "apono-connector-v1");
    let v2 = role(&mgmt, "apono-connector-v2");
    let reached = match scenario.scope {
        "Organization" => w.accounts.len(),
        _ => 1,
    };
    let mut stack = Stack::new(template.clone());
    stack.set_account(&mgmt);

    if failures_too {
        // A stack whose rules refuse it: nothing may be created.
        let mut refused = Stack::new(template.clone());
        let mut p = Scenario {
            scope: scenario.scope,
            mode: "Deploy",
        }
        .parameters(&v1, "");
        p.retain(|(k, _)| k != "VpcId");
        let status = refused.create(&cloud, &borrowed(&p), seed).await;
        report.check(
            &format!("{tag}: rules refuse Deploy mode without VpcId"),
            matches!(&status, StackStatus::Refused(why) if why.contains("needs VpcId"))
                && refused.operations.is_empty(),
            status_line(&status),
        );

        // A create that fails in the middle, and its rollback.
        let mut failing = Stack::new(template.clone());
        failing.set_account(&mgmt);
        let mut p = Scenario {
            scope: scenario.scope,
            mode: "Existing",
        }
        .parameters(&v1, "");
        for (k, v) in p.iter_mut() {
            match k.as_str() {
                "AponoConnectorId" => *v = "not-installed".into(),
                "ConnectorWaitSeconds" => *v = "3".into(),
                _ => {}
            }
        }
        let status = failing.create(&cloud, &borrowed(&p), seed).await;
        show_timeline(&failing, 0);
        let clear = matches!(&status, StackStatus::RollbackComplete(why)
            if why.contains("not-installed is not known to Apono after waiting"));
        report.check(
            &format!("{tag}: failing Create rolls back cleanly"),
            clear && failing.physical_ids().is_empty(),
            status_line(&status),
        );
        let left = w.ours(&v1);
        let integrations = w.apono.integrations().len();
        report.check(
            &format!("{tag}: the rollback left nothing behind"),
            left == 0 && integrations == 1 && w.someone_elses_entry_kept(),
            format!("{left} tagged entries, {integrations} integrations (1 was there before)"),
        );

        // A grant taken out of the template: the function is refused as AWS would refuse it,
        // and the stack rolls back.
        let mut ungranted = template.clone();
        let removed = remove_statement(&mut ungranted, "ReadAponoToken");
        let mut denied = Stack::new(ungranted);
        denied.set_account(&mgmt);
        let p = Scenario {
            scope: scenario.scope,
            mode: "Existing",
        }
        .parameters(&v1, "");
        let status = denied.create(&cloud, &borrowed(&p), seed).await;
        show_timeline(&denied, 0);
        let refused = matches!(&status, StackStatus::RollbackComplete(why)
            if why.contains("access denied calling ssm:GetParameter"));
        report.check(
            &format!("{tag}: without its ssm:GetParameter grant, AccessDenied"),
            removed && refused && denied.physical_ids().is_empty(),
            status_line(&status),
        );
    }

    // ---- Create.
    let since = stack.operations.len();
    let params = scenario.parameters(&v1, "");
    let status = stack.create(&cloud, &borrowed(&params), seed).await;
    show_timeline(&stack, since);
    report.check(
        &format!("{tag}: Create"),
        status == StackStatus::CreateComplete,
        status_line(&status),
    );
    let principal = match scenario.mode {
        "Deploy" => stack
            .attribute("ConnectorTaskRole", "Arn")
            .unwrap_or_default(),
        _ => v1.clone(),
    };
    let created = w.ours(&principal);
    report.check(
        &format!("{tag}: an entry on every eligible cluster it reaches"),
        created == w.eligible_clusters(reached),
        format!(
            "{created} of {} (CONFIG_MAP and CREATING clusters skipped)",
            w.eligible_clusters(reached)
        ),
    );
    let ours = w.apono.integrations().len() - 1;
    report.check(
        &format!("{tag}: one integration registered"),
        ours == 1,
        format!("{ours} of ours"),
    );

    // ---- A cluster created after the stack: the next scheduled run gives it its entry.
    let account = w.accounts[reached - 1].clone();
    let region = w.regions[0].clone();
    w.eks
        .add_cluster(&account, &region, "created-later", "ACTIVE", "API");
    w.added_later.set(w.added_later.get() + 1);
    let appeared = tokio::time::Instant::now();
    let mut enrolled = None;
    while appeared.elapsed() < Duration::from_secs(30) {
        if w.eks
            .entries(&account, &region, "created-later")
            .contains_key(&principal)
        {
            enrolled = Some(appeared.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    report.check(
        &format!("{tag}: a cluster created after the stack gets its entry from the schedule"),
        enrolled.is_some() && w.ours(&principal) == w.eligible_clusters(reached),
        match enrolled {
            Some(after) => format!("entry {} ms after the cluster appeared", after.as_millis()),
            None => "no entry after 30 s".to_string(),
        },
    );

    // ---- A real update.
    let since = stack.operations.len();
    let new_principal = match scenario.mode {
        "Deploy" => principal.clone(),
        _ => v2.clone(),
    };
    let params = scenario.parameters(&v2, "renamed-by-update");
    let status = stack.update(&cloud, &borrowed(&params), seed).await;
    show_timeline(&stack, since);
    let renamed = w
        .apono
        .integrations()
        .iter()
        .any(|i| i["name"] == "renamed-by-update");
    report.check(
        &format!("{tag}: Update (integration renamed, connector role changed)"),
        status == StackStatus::UpdateComplete && renamed,
        status_line(&status),
    );
    let (now, before) = (w.ours(&new_principal), w.ours(&v1));
    let moved = match scenario.mode {
        "Deploy" => now == w.eligible_clusters(reached),
        _ => now == w.eligible_clusters(reached) && before == 0,
    };
    report.check(
        &format!("{tag}: entries follow the connector role"),
        moved && w.someone_elses_entry_kept(),
        format!("{now} for the current role, {before} of ours left for the old one"),
    );

    // ---- No-op update.
    let since = stack.operations.len();
    let writes_before = w.eks.mutations() + w.apono.writes();
    let status = stack.update(&cloud, &borrowed(&params), seed).await;
    let writes = w.eks.mutations() + w.apono.writes() - writes_before;
    report.check(
        &format!("{tag}: no-op Update sends nothing, writes nothing"),
        status == StackStatus::UpdateComplete && stack.operations.len() == since && writes == 0,
        format!(
            "{} operations, {writes} writes (scheduled runs included)",
            stack.operations.len() - since
        ),
    );

    // ---- Delete, with the schedule firing until its rule is gone.
    let since = stack.operations.len();
    let status = stack.delete(&cloud, seed).await;
    show_timeline(&stack, since);
    // Let anything still queued in the function (a last scheduled run) finish first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let left = w.ours(&new_principal) + w.ours(&v1);
    let integrations: Vec<String> = w
        .apono
        .integrations()
        .iter()
        .map(|i| i["name"].as_str().unwrap_or("").to_string())
        .collect();
    report.check(
        &format!("{tag}: Delete"),
        status == StackStatus::DeleteComplete,
        status_line(&status),
    );
    let member_roles = cloud.member_roles().await;
    report.check(
        &format!("{tag}: Delete left nothing of ours, everything else"),
        left == 0
            && integrations == ["team-x-aws"]
            && w.someone_elses_entry_kept()
            && member_roles.is_empty(),
        format!(
            "{left} tagged entries, {} member roles, Apono {integrations:?}, {} scheduled runs fired",
            member_roles.len(),
            cloud.fired.load(Ordering::SeqCst)
        ),
    );
    let largest =
        w.rx.accepted()
            .iter()
            .map(|r| r.body.len())
            .max()
            .unwrap_or(0);
    report.check(
        &format!("{tag}: every response within 4096 bytes"),
        largest <= 4096,
        format!(
            "{} responses, largest {largest} bytes",
            w.rx.accepted().len()
        ),
    );
    // What each function process wrote, and the secret key it held, for the log scan.
    w.started
        .take()
        .into_iter()
        .map(|started| FunctionLog {
            name: started.name,
            text: started.output.lock().unwrap().join("\n"),
            secret: started.secret,
        })
        .collect()
}

/// A function process as the log scan needs it: its output outlives the process.
struct StartedFunction {
    name: String,
    output: Arc<std::sync::Mutex<Vec<String>>>,
    secret: String,
}

/// What one function process wrote, and the secret access key it was given.
struct FunctionLog {
    name: String,
    text: String,
    secret: String,
}

/// Every scope x connector mode, once per seed; the report says whether every step behaved.
pub async fn run(options: &Options) -> Report {
    let started = Instant::now();
    let mut report = Report::default();
    println!("local deploy: building the function binaries ...");
    let bin = match build_binaries() {
        Ok(bin) => bin,
        Err(e) => {
            report.check("build the functions", false, e);
            return report;
        }
    };
    let template = crate::cfn::transformed_template("template.yaml");
    let scenarios = [
        Scenario {
            scope: "Organization",
            mode: "Deploy",
        },
        Scenario {
            scope: "Organization",
            mode: "Existing",
        },
        Scenario {
            scope: "Account",
            mode: "Deploy",
        },
        Scenario {
            scope: "Account",
            mode: "Existing",
        },
    ];
    let mut functions = Vec::new();
    for (i, scenario) in scenarios.iter().enumerate() {
        for (j, seed) in options.seeds.iter().enumerate() {
            let first = i == 0 && j == 0;
            functions.extend(
                lifecycle(
                    &mut report,
                    options,
                    &bin,
                    &template,
                    scenario,
                    *seed,
                    first,
                )
                .await,
            );
        }
    }

    // ---- What every log line must not contain.
    let mut leaks = Vec::new();
    let mut lines = 0;
    for function in &functions {
        // LOCAL_RUN_DUMP=/path keeps each process's output (path.NAME.N), for debugging.
        if let Ok(path) = std::env::var("LOCAL_RUN_DUMP") {
            let _ = std::fs::write(format!("{path}.{}.{lines}", function.name), &function.text);
        }
        lines += function.text.lines().count();
        for (what, secret) in [
            ("Apono token", TOKEN),
            ("ResponseURL signature", FAKE_SIGNATURE),
            ("AWS secret key", function.secret.as_str()),
        ] {
            if function.text.contains(secret) {
                leaks.push(format!("{what} in {}", function.name));
            }
        }
    }
    report.check(
        "no secret in any log line (debug level)",
        leaks.is_empty() && lines > 0,
        if leaks.is_empty() {
            format!("{lines} lines scanned")
        } else {
            leaks.join(", ")
        },
    );

    println!(
        "\n{} in {:.1} s: {} of {} steps behaved",
        if report.ok() { "PASSED" } else { "FAILED" },
        started.elapsed().as_secs_f64(),
        report.steps.iter().filter(|s| s.ok).count(),
        report.steps.len()
    );
    report
}
