//! A fake of the EKS API that moto lacks: clusters with an authentication mode, and access
//! entries with their policies. The caller's account is what moto says it is (the request's
//! Authorization header is replayed to moto's GetCallerIdentity; moto maps access keys to
//! accounts without checking signatures); the region is the SigV4 credential scope's.
//!
//! With a [`Lifecycle`], a cluster made through the API is CREATING for a while and then
//! ACTIVE, an UpdateClusterConfig leaves it UPDATING for a while, and each such call is
//! recorded as CloudTrail records it and handed to EventBridge ([`FakeEks::on_cloudtrail`]).
//!
//! Over 400 lines on purpose: the routes, the IAM condition keys each action offers and the
//! state they act on are one service, read top to bottom like AWS's API reference.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone)]
pub struct Entry {
    pub tags: BTreeMap<String, String>,
    /// policy ARN -> access scope JSON
    pub policies: BTreeMap<String, Value>,
    pub created: Instant,
    /// When its first access policy was associated: from then on the principal has access.
    pub granted: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Cluster {
    status: String,
    mode: String,
    entries: BTreeMap<String, Entry>,
    /// When a CREATING or UPDATING cluster becomes ACTIVE (a [`Lifecycle`]); `None`: never.
    settles_at: Option<Instant>,
    /// When it last became ACTIVE that way.
    active_since: Option<Instant>,
    /// When DescribeCluster read it.
    described: Vec<Instant>,
}

impl Cluster {
    fn new(status: &str, mode: &str) -> Cluster {
        Cluster {
            status: status.into(),
            mode: mode.into(),
            entries: BTreeMap::new(),
            settles_at: None,
            active_since: None,
            described: Vec::new(),
        }
    }

    /// Its status now: a cluster whose creation or update is over is ACTIVE.
    fn settle(&mut self) {
        if let Some(at) = self.settles_at.filter(|at| *at <= Instant::now()) {
            self.status = "ACTIVE".into();
            self.active_since = Some(at);
            self.settles_at = None;
        }
    }
}

/// How long clusters made or reconfigured through the API take to settle: each a random
/// duration within its range.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    pub creating: std::ops::Range<Duration>,
    pub updating: std::ops::Range<Duration>,
}

/// A random duration within `range`.
pub fn within(range: &std::ops::Range<Duration>) -> Duration {
    let (low, high) = (range.start.as_millis() as u64, range.end.as_millis() as u64);
    Duration::from_millis(fastrand::u64(low..high.max(low + 1)))
}

/// One API call as CloudTrail hands it to EventBridge in the caller's account and region:
/// the event as EventBridge delivers it ("AWS API Call via CloudTrail").
#[derive(Debug, Clone)]
pub struct CloudTrailEvent {
    pub account: String,
    pub region: String,
    pub event: Value,
}

/// What a test reads of one cluster's history.
#[derive(Debug, Clone)]
pub struct ClusterHistory {
    pub status: String,
    pub active_since: Option<Instant>,
    pub described: Vec<Instant>,
    /// When each principal got access: its entry created and an access policy associated.
    pub granted: BTreeMap<String, Instant>,
}

type Key = (String, String, String);

#[derive(Default)]
struct Inner {
    moto: String,
    clusters: BTreeMap<Key, Cluster>,
    accounts_by_key: HashMap<String, String>,
    denied: HashSet<String>,
    throttle_next: usize,
    /// Share of calls answered ThrottlingException, everywhere.
    throttle_share: f64,
    /// Share of calls throttled in these accounts (instead of `throttle_share`).
    throttle_share_in: HashMap<String, f64>,
    /// Per account: when its last call was answered (successful or not).
    last_answer: HashMap<String, std::time::Instant>,
    throttled: usize,
    latency: Duration,
    mutations: usize,
    /// Each mutating call: method, path, account and region.
    mutation_log: Vec<String>,
    requests: usize,
    /// When set, every call is checked against the caller's IAM policies (moto enforcing).
    authorizer: Option<crate::iam::Authorizer>,
    lifecycle: Option<Lifecycle>,
    cloudtrail: Option<tokio::sync::mpsc::UnboundedSender<CloudTrailEvent>>,
}

#[derive(Clone)]
pub struct FakeEks {
    port: u16,
    inner: Arc<Mutex<Inner>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl FakeEks {
    pub async fn start(moto_endpoint: &str) -> FakeEks {
        let inner = Arc::new(Mutex::new(Inner {
            moto: moto_endpoint.to_string(),
            ..Default::default()
        }));
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let (port, task) = crate::serve_loopback(app).await;
        FakeEks {
            port,
            inner,
            task: Arc::new(task),
        }
    }

    /// Creates a cluster through this fake's EKS API, as an administrator would, with `config`'s
    /// credentials (its account) in `region`: CREATING at first, ACTIVE after a while, and
    /// recorded in CloudTrail.
    pub async fn create_cluster_as(
        &self,
        config: &aws_config::SdkConfig,
        region: &str,
        name: &str,
        cluster_role_arn: &str,
    ) {
        let eks = aws_sdk_eks::Client::from_conf(
            aws_sdk_eks::config::Builder::from(config)
                .region(aws_config::Region::new(region.to_string()))
                .endpoint_url(self.url())
                .build(),
        );
        eks.create_cluster()
            .name(name)
            .role_arn(cluster_role_arn)
            .resources_vpc_config(
                aws_sdk_eks::types::VpcConfigRequest::builder()
                    .subnet_ids("subnet-0abc12345")
                    .build(),
            )
            .access_config(
                aws_sdk_eks::types::CreateAccessConfigRequest::builder()
                    .authentication_mode(aws_sdk_eks::types::AuthenticationMode::Api)
                    .build(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateCluster {name}: {:?}", e.into_service_error()));
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// From now on, refuse what the caller's IAM policies do not allow, as EKS would.
    pub fn enforce(&self, authorizer: crate::iam::Authorizer) {
        self.with(|s| s.authorizer = Some(authorizer));
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap())
    }

    /// `status`: ACTIVE, CREATING, ...; `mode`: API, API_AND_CONFIG_MAP or CONFIG_MAP. Made
    /// behind the API's back: no CloudTrail event, and it stays in `status`.
    pub fn add_cluster(&self, account: &str, region: &str, name: &str, status: &str, mode: &str) {
        self.with(|s| {
            s.clusters.insert(
                (account.into(), region.into(), name.into()),
                Cluster::new(status, mode),
            )
        });
    }

    /// Clusters made or reconfigured through the API settle after a while.
    pub fn set_lifecycle(&self, lifecycle: Lifecycle) {
        self.with(|s| s.lifecycle = Some(lifecycle));
    }

    /// Hands every CreateCluster and UpdateClusterConfig this fake serves to `trail`, as
    /// CloudTrail hands them to EventBridge.
    pub fn on_cloudtrail(&self, trail: tokio::sync::mpsc::UnboundedSender<CloudTrailEvent>) {
        self.with(|s| s.cloudtrail = Some(trail));
    }

    /// One cluster's status, when it became ACTIVE, when it was read, and its entries' ages.
    pub fn history(&self, account: &str, region: &str, cluster: &str) -> ClusterHistory {
        self.with(|s| {
            let c = s
                .clusters
                .get_mut(&(account.to_string(), region.to_string(), cluster.to_string()))
                .expect("cluster");
            c.settle();
            ClusterHistory {
                status: c.status.clone(),
                active_since: c.active_since,
                described: c.described.clone(),
                granted: c
                    .entries
                    .iter()
                    .filter_map(|(p, e)| Some((p.clone(), e.granted?)))
                    .collect(),
            }
        })
    }

    /// An entry somebody else made (no tags of ours).
    pub fn add_entry(&self, account: &str, region: &str, cluster: &str, principal: &str) {
        self.with(|s| {
            s.clusters
                .get_mut(&(account.into(), region.into(), cluster.into()))
                .expect("cluster")
                .entries
                .insert(
                    principal.into(),
                    Entry {
                        created: Instant::now(),
                        granted: Some(Instant::now()),
                        tags: BTreeMap::from([("owner".into(), "platform-team".into())]),
                        policies: BTreeMap::from([(
                            "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy".into(),
                            json!({"type": "cluster"}),
                        )]),
                    },
                )
        });
    }

    pub fn entries(&self, account: &str, region: &str, cluster: &str) -> BTreeMap<String, Entry> {
        self.with(|s| {
            s.clusters[&(account.to_string(), region.to_string(), cluster.to_string())]
                .entries
                .clone()
        })
    }

    pub fn mode(&self, account: &str, region: &str, cluster: &str) -> String {
        self.with(|s| {
            s.clusters[&(account.to_string(), region.to_string(), cluster.to_string())]
                .mode
                .clone()
        })
    }

    /// Entries for `principal` that carry the tag `tag`, across every cluster.
    pub fn entries_tagged(&self, principal: &str, tag: &str) -> usize {
        self.with(|s| {
            s.clusters
                .values()
                .filter_map(|c| c.entries.get(principal))
                .filter(|e| e.tags.contains_key(tag))
                .count()
        })
    }

    /// Where entries for `principal` carrying the tag `tag` are: `account/region/cluster`.
    pub fn clusters_with_tagged(&self, principal: &str, tag: &str) -> Vec<String> {
        self.with(|s| {
            s.clusters
                .iter()
                .filter(|(_, c)| {
                    c.entries
                        .get(principal)
                        .is_some_and(|e| e.tags.contains_key(tag))
                })
                .map(|((a, r, n), _)| format!("{a}/{r}/{n}"))
                .collect()
        })
    }

    pub fn deny_account(&self, account: &str) {
        self.with(|s| s.denied.insert(account.into()));
    }

    pub fn throttle_next(&self, count: usize) {
        self.with(|s| s.throttle_next = count);
    }

    /// Throttles this share (0-1) of all calls at random, as a busy AWS does.
    pub fn throttle_share(&self, share: f64) {
        self.with(|s| s.throttle_share = share);
    }

    /// Throttles this share of the calls made in `account` only (a hot account).
    pub fn throttle_share_in(&self, account: &str, share: f64) {
        self.with(|s| s.throttle_share_in.insert(account.into(), share));
    }

    /// Calls answered ThrottlingException so far.
    pub fn throttled(&self) -> usize {
        self.with(|s| s.throttled)
    }

    /// When the last call made in `account` was answered.
    pub fn last_answer_in(&self, account: &str) -> Option<std::time::Instant> {
        self.with(|s| s.last_answer.get(account).copied())
    }

    pub fn set_latency(&self, latency: Duration) {
        self.with(|s| s.latency = latency);
    }

    /// Mutating calls received (create, delete, associate, disassociate, update-config).
    pub fn mutations(&self) -> usize {
        self.with(|s| s.mutations)
    }

    /// The mutating calls since the `since`-th: method, path, account and region.
    pub fn mutations_since(&self, since: usize) -> Vec<String> {
        self.with(|s| s.mutation_log.iter().skip(since).cloned().collect())
    }

    pub fn requests(&self) -> usize {
        self.with(|s| s.requests)
    }
}

impl Drop for FakeEks {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

fn error(status: u16, kind: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [("x-amzn-errortype", kind.to_string())],
        axum::Json(json!({"message": message})),
    )
        .into_response()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// (access key, region) from `Credential=AKID/date/region/service/aws4_request`.
fn credential_scope(headers: &HeaderMap) -> Option<(String, String)> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let credential = auth.split("Credential=").nth(1)?.split(',').next()?;
    let mut parts = credential.split('/');
    let key = parts.next()?.to_string();
    let region = parts.nth(1)?.to_string();
    Some((key, region))
}

async fn account_of(inner: &Arc<Mutex<Inner>>, headers: &HeaderMap, key: &str) -> Option<String> {
    let (cached, moto) = {
        let s = inner.lock().unwrap();
        (s.accounts_by_key.get(key).cloned(), s.moto.clone())
    };
    if cached.is_some() {
        return cached;
    }
    // moto routes by the credential scope's service: ask as STS, same key.
    let authorization = headers
        .get("authorization")?
        .to_str()
        .ok()?
        .replace("/eks/aws4_request", "/sts/aws4_request");
    let answer = reqwest::Client::new()
        .post(format!("{moto}/"))
        .header("authorization", authorization)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("Action=GetCallerIdentity&Version=2011-06-15")
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let account = answer
        .split("<Account>")
        .nth(1)?
        .split("</Account>")
        .next()?
        .to_string();
    inner
        .lock()
        .unwrap()
        .accounts_by_key
        .insert(key.to_string(), account.clone());
    Some(account)
}

fn cluster_json(account: &str, region: &str, name: &str, c: &Cluster) -> Value {
    json!({
        "name": name,
        "arn": format!("arn:aws:eks:{region}:{account}:cluster/{name}"),
        "status": c.status,
        "version": "1.31",
        "createdAt": 1_700_000_000,
        "accessConfig": {"authenticationMode": c.mode},
    })
}

/// EKS's access-entry ARN: `access-entry/<cluster>/role/<account>/<role name>/<id>`.
fn entry_arn(account: &str, region: &str, cluster: &str, principal: &str) -> String {
    let principal_account = principal.split(':').nth(4).unwrap_or_default();
    let role_name = principal.rsplit('/').next().unwrap_or_default();
    format!("arn:aws:eks:{region}:{account}:access-entry/{cluster}/role/{principal_account}/{role_name}/local")
}

/// One IAM check: action, resource, and the request's condition keys.
type Permission = (&'static str, String, Vec<(String, String)>);

/// What IAM checks for a call: the action, its resource, and the condition keys EKS's
/// service authorization reference lists for it (no more: a policy conditioned on a key the
/// action does not carry is denied here as in AWS). `entry_tags` are the tags of the access
/// entry the call names, if it exists (`aws:ResourceTag/...`).
fn permissions(
    method: &str,
    segs: &[&str],
    body: &Value,
    account: &str,
    region: &str,
    entry_tags: &BTreeMap<String, String>,
) -> Vec<Permission> {
    let cluster = |name: &str| format!("arn:aws:eks:{region}:{account}:cluster/{name}");
    let key = |k: &str, v: &str| (k.to_string(), v.to_string());
    let resource_tags = || -> Vec<(String, String)> {
        entry_tags
            .iter()
            .map(|(k, v)| key(&format!("aws:ResourceTag/{k}"), v))
            .collect()
    };
    match (method, segs) {
        ("GET", ["clusters"]) => vec![("eks:ListClusters", "*".into(), vec![])],
        ("POST", ["clusters"]) => {
            let name = body["name"].as_str().unwrap_or_default();
            vec![("eks:CreateCluster", cluster(name), vec![])]
        }
        ("GET", ["clusters", name]) => vec![("eks:DescribeCluster", cluster(name), vec![])],
        ("POST", ["clusters", name, "update-config"]) => {
            let mode = body["accessConfig"]["authenticationMode"]
                .as_str()
                .unwrap_or_default();
            vec![(
                "eks:UpdateClusterConfig",
                cluster(name),
                vec![key("eks:authenticationMode", mode)],
            )]
        }
        ("GET", ["clusters", name, "access-entries"]) => {
            vec![("eks:ListAccessEntries", cluster(name), vec![])]
        }
        ("POST", ["clusters", name, "access-entries"]) => {
            let principal = body["principalArn"].as_str().unwrap_or_default();
            let kind = body["type"].as_str().unwrap_or("STANDARD");
            let tags: Vec<(String, String)> = body["tags"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    key(
                        &format!("aws:RequestTag/{k}"),
                        v.as_str().unwrap_or_default(),
                    )
                })
                .collect();
            let mut keys = vec![
                key("eks:principalArn", principal),
                key("eks:accessEntryType", kind),
            ];
            keys.extend(tags.iter().cloned());
            let mut needed = vec![("eks:CreateAccessEntry", cluster(name), keys)];
            if !tags.is_empty() {
                let entry = entry_arn(account, region, name, principal);
                needed.push(("eks:TagResource", entry, tags));
            }
            needed
        }
        (m, ["clusters", name, "access-entries", principal, tail @ ..]) => {
            let entry = entry_arn(account, region, name, principal);
            let with_policy = |policy: &str, scope: &str| {
                let mut keys = resource_tags();
                keys.push(key("eks:policyArn", policy));
                if !scope.is_empty() {
                    keys.push(key("eks:accessScope", scope));
                }
                keys
            };
            let (action, keys) = match (m, tail) {
                ("GET", []) => ("eks:DescribeAccessEntry", resource_tags()),
                ("DELETE", []) => ("eks:DeleteAccessEntry", resource_tags()),
                ("GET", ["access-policies"]) => {
                    ("eks:ListAssociatedAccessPolicies", resource_tags())
                }
                ("POST", ["access-policies"]) => (
                    "eks:AssociateAccessPolicy",
                    with_policy(
                        body["policyArn"].as_str().unwrap_or_default(),
                        body["accessScope"]["type"].as_str().unwrap_or_default(),
                    ),
                ),
                ("DELETE", ["access-policies", policy]) => {
                    ("eks:DisassociateAccessPolicy", with_policy(policy, ""))
                }
                _ => return vec![],
            };
            vec![(action, entry, keys)]
        }
        _ => vec![],
    }
}

fn entry_json(account: &str, region: &str, cluster: &str, principal: &str, e: &Entry) -> Value {
    json!({
        "clusterName": cluster,
        "principalArn": principal,
        "accessEntryArn": entry_arn(account, region, cluster, principal),
        "kubernetesGroups": [],
        "createdAt": 1_700_000_000,
        "modifiedAt": 1_700_000_000,
        "tags": e.tags,
        "username": principal,
        "type": "STANDARD",
    })
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let latency = {
        let mut s = inner.lock().unwrap();
        s.requests += 1;
        s.latency
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let segments: Vec<String> = uri
        .path()
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let call = Call {
        method: method.as_str(),
        segs: &segs,
        body: &body,
    };
    let (account, region) = match authorize(&inner, &headers, &call).await {
        Ok(place) => place,
        Err(refused) => return refused,
    };
    let mut s = inner.lock().unwrap();
    if let Some(refused) = gate(&mut s, &account) {
        return refused;
    }
    if method != Method::GET {
        s.mutations += 1;
        let call = format!("{method} {} in {account}/{region}", uri.path());
        s.mutation_log.push(call);
    }
    let query: HashMap<String, String> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let cluster_key = |name: &str| (account.clone(), region.clone(), name.to_string());
    let place = Place {
        account: &account,
        region: &region,
    };
    match (call.method, segs.as_slice()) {
        ("GET", ["clusters"]) => list_clusters(&s, &place, &query),
        ("GET", ["clusters", name]) => match s.clusters.get_mut(&cluster_key(name)) {
            Some(c) => {
                c.settle();
                c.described.push(Instant::now());
                axum::Json(json!({"cluster": cluster_json(&account, &region, name, c)}))
                    .into_response()
            }
            None => error(404, "ResourceNotFoundException", "No cluster found"),
        },
        ("POST", ["clusters"]) => create_cluster(&mut s, &place, &body),
        ("POST", ["clusters", name, "update-config"]) => {
            let settles_in = s.lifecycle.as_ref().map(|l| within(&l.updating));
            let Some(c) = s.clusters.get_mut(&cluster_key(name)) else {
                return error(404, "ResourceNotFoundException", "No cluster found");
            };
            c.settle();
            if let Some(mode) = body["accessConfig"]["authenticationMode"].as_str() {
                c.mode = mode.to_string();
                c.status = "UPDATING".into();
                c.settles_at = settles_in.map(|d| Instant::now() + d);
            }
            let answer = json!({"update": {"id": "update-1", "status": "InProgress", "type": "AccessConfigUpdate"}});
            let mut request = body.clone();
            request["name"] = json!(name);
            record(&s, &place, "UpdateClusterConfig", request, answer.clone());
            axum::Json(answer).into_response()
        }
        (m, ["clusters", name, "access-entries", rest @ ..]) => {
            let Some(cluster) = s.clusters.get_mut(&cluster_key(name)) else {
                return error(404, "ResourceNotFoundException", "No cluster found");
            };
            cluster.settle();
            access_entries(cluster, &place, name, m, rest, &body)
        }
        _ => error(404, "UnknownOperationException", "no such route"),
    }
}

/// CreateCluster: CREATING, and ACTIVE once its [`Lifecycle`] says so (never without one).
fn create_cluster(s: &mut Inner, place: &Place<'_>, body: &Value) -> Response {
    let name = body["name"].as_str().unwrap_or_default().to_string();
    let key = (
        place.account.to_string(),
        place.region.to_string(),
        name.clone(),
    );
    if name.is_empty() {
        return error(400, "InvalidParameterException", "name is required");
    }
    if s.clusters.contains_key(&key) {
        return error(
            409,
            "ResourceInUseException",
            "Cluster already exists with name",
        );
    }
    // CreateCluster's default authentication mode is CONFIG_MAP.
    let mode = body["accessConfig"]["authenticationMode"]
        .as_str()
        .unwrap_or("CONFIG_MAP");
    let mut cluster = Cluster::new("CREATING", mode);
    cluster.settles_at = s
        .lifecycle
        .as_ref()
        .map(|l| Instant::now() + within(&l.creating));
    let answer = json!({"cluster": cluster_json(place.account, place.region, &name, &cluster)});
    s.clusters.insert(key, cluster);
    record(s, place, "CreateCluster", body.clone(), answer.clone());
    axum::Json(answer).into_response()
}

/// Hands a successful call to CloudTrail's EventBridge delivery, in the shape EventBridge
/// delivers "AWS API Call via CloudTrail" events.
fn record(s: &Inner, place: &Place<'_>, name: &str, request: Value, response: Value) {
    let Some(trail) = &s.cloudtrail else { return };
    let time = iso8601(SystemTime::now());
    let event = json!({
        "version": "0",
        "id": format!("{:032x}", fastrand::u128(..)),
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.eks",
        "account": place.account,
        "time": time,
        "region": place.region,
        "resources": [],
        "detail": {
            "eventVersion": "1.09",
            "userIdentity": {"type": "AssumedRole", "accountId": place.account},
            "eventTime": time,
            "eventSource": "eks.amazonaws.com",
            "eventName": name,
            "awsRegion": place.region,
            "requestParameters": request,
            "responseElements": response,
            "readOnly": false,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": place.account,
            "eventCategory": "Management",
        },
    });
    let _ = trail.send(CloudTrailEvent {
        account: place.account.to_string(),
        region: place.region.to_string(),
        event,
    });
}

/// `2026-12-01T19:14:34Z`, as CloudTrail writes times.
pub fn iso8601(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil-from-days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// One request's method, path segments and JSON body.
struct Call<'a> {
    method: &'a str,
    segs: &'a [&'a str],
    body: &'a Value,
}

/// The account and region a request is served in.
struct Place<'a> {
    account: &'a str,
    region: &'a str,
}

/// The caller's account and region, once its signature names a known key and, with an IAM
/// authorizer, its role's policies allow every action the call needs.
async fn authorize(
    inner: &Arc<Mutex<Inner>>,
    headers: &HeaderMap,
    call: &Call<'_>,
) -> Result<(String, String), Response> {
    let Some((key, region)) = credential_scope(headers) else {
        return Err(error(
            403,
            "UnrecognizedClientException",
            "missing SigV4 authorization",
        ));
    };
    let authorizer = inner.lock().unwrap().authorizer.clone();
    let Some(authorizer) = authorizer else {
        return match account_of(inner, headers, &key).await {
            Some(account) => Ok((account, region)),
            None => Err(error(
                403,
                "UnrecognizedClientException",
                "unknown access key",
            )),
        };
    };
    let caller = authorizer
        .caller(headers)
        .await
        .map_err(|e| error(403, "UnrecognizedClientException", &e))?;
    let account = caller.account.clone();
    let entry_tags = match call.segs {
        ["clusters", name, "access-entries", principal, ..] => {
            let s = inner.lock().unwrap();
            s.clusters
                .get(&(account.clone(), region.clone(), name.to_string()))
                .and_then(|c| c.entries.get(*principal))
                .map(|e| e.tags.clone())
                .unwrap_or_default()
        }
        _ => BTreeMap::new(),
    };
    let needed = permissions(
        call.method,
        call.segs,
        call.body,
        &account,
        &region,
        &entry_tags,
    );
    for (action, resource, keys) in needed {
        let keys: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if let Err(denied) = caller.may(action, &resource, &keys) {
            return Err(error(403, "AccessDeniedException", &denied));
        }
    }
    Ok((account, region))
}

/// Faults that answer before any route: an account denied outright, or throttling.
fn gate(s: &mut Inner, account: &str) -> Option<Response> {
    if s.denied.contains(account) {
        return Some(error(
            403,
            "AccessDeniedException",
            &format!("User is not authorized in account {account}"),
        ));
    }
    s.last_answer
        .insert(account.to_string(), std::time::Instant::now());
    let share = s
        .throttle_share_in
        .get(account)
        .copied()
        .unwrap_or(s.throttle_share);
    if s.throttle_next > 0 || (share > 0.0 && fastrand::f64() < share) {
        s.throttle_next = s.throttle_next.saturating_sub(1);
        s.throttled += 1;
        return Some(error(429, "ThrottlingException", "Rate exceeded"));
    }
    None
}

fn list_clusters(s: &Inner, place: &Place<'_>, query: &HashMap<String, String>) -> Response {
    let names: Vec<String> = s
        .clusters
        .keys()
        .filter(|(a, r, _)| a == place.account && r == place.region)
        .map(|(_, _, n)| n.clone())
        .collect();
    let limit: usize = query
        .get("maxResults")
        .and_then(|m| m.parse().ok())
        .unwrap_or(100);
    let start: usize = query
        .get("nextToken")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let end = (start + limit).min(names.len());
    let next = (end < names.len()).then(|| end.to_string());
    axum::Json(json!({"clusters": names[start.min(end)..end], "nextToken": next})).into_response()
}

/// `/clusters/{name}/access-entries/...`: `rest` is what follows.
fn access_entries(
    cluster: &mut Cluster,
    place: &Place<'_>,
    name: &str,
    method: &str,
    rest: &[&str],
    body: &Value,
) -> Response {
    // EKS refuses every access-entry call on a CONFIG_MAP cluster.
    if cluster.mode == "CONFIG_MAP" {
        return error(400, "InvalidRequestException", "The cluster's authentication mode must be set to one of [API, API_AND_CONFIG_MAP] to perform this operation.");
    }
    let (account, region) = (place.account, place.region);
    match (method, rest) {
        ("POST", []) => {
            let principal = body["principalArn"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if cluster.entries.contains_key(&principal) {
                return error(
                    409,
                    "ResourceInUseException",
                    "The specified access entry resource is already in use on this cluster.",
                );
            }
            let tags: BTreeMap<String, String> =
                serde_json::from_value(body["tags"].clone()).unwrap_or_default();
            let entry = Entry {
                tags,
                policies: BTreeMap::new(),
                created: Instant::now(),
                granted: None,
            };
            let answer = entry_json(account, region, name, &principal, &entry);
            cluster.entries.insert(principal, entry);
            axum::Json(json!({"accessEntry": answer})).into_response()
        }
        (m, [principal, tail @ ..]) => {
            let principal = principal.to_string();
            if (m, tail) == ("DELETE", &[][..]) {
                return match cluster.entries.remove(&principal) {
                    Some(_) => axum::Json(json!({})).into_response(),
                    None => no_entry(),
                };
            }
            match cluster.entries.get_mut(&principal) {
                Some(entry) => entry_call(entry, place, name, &principal, m, tail, body),
                None => no_entry(),
            }
        }
        _ => error(404, "UnknownOperationException", "no such route"),
    }
}

fn no_entry() -> Response {
    error(
        404,
        "ResourceNotFoundException",
        "The specified principalArn could not be found.",
    )
}

/// A call on one access entry: `tail` follows its principal in the path.
fn entry_call(
    entry: &mut Entry,
    place: &Place<'_>,
    name: &str,
    principal: &str,
    method: &str,
    tail: &[&str],
    body: &Value,
) -> Response {
    match (method, tail) {
        ("GET", []) => axum::Json(
            json!({"accessEntry": entry_json(place.account, place.region, name, principal, entry)}),
        )
        .into_response(),
        ("GET", ["access-policies"]) => {
            let policies: Vec<Value> = entry
                .policies
                .iter()
                .map(|(arn, scope)| json!({"policyArn": arn, "accessScope": scope, "associatedAt": 1_700_000_000, "modifiedAt": 1_700_000_000}))
                .collect();
            axum::Json(json!({"clusterName": name, "principalArn": principal, "associatedAccessPolicies": policies})).into_response()
        }
        ("POST", ["access-policies"]) => {
            let arn = body["policyArn"].as_str().unwrap_or_default().to_string();
            let scope = body["accessScope"].clone();
            entry.policies.insert(arn.clone(), scope.clone());
            entry.granted.get_or_insert_with(Instant::now);
            axum::Json(json!({"clusterName": name, "principalArn": principal, "associatedAccessPolicy": {"policyArn": arn, "accessScope": scope, "associatedAt": 1_700_000_000, "modifiedAt": 1_700_000_000}})).into_response()
        }
        ("DELETE", ["access-policies", policy]) => {
            if entry.policies.remove(*policy).is_none() {
                return error(404, "ResourceNotFoundException", "policy not associated");
            }
            axum::Json(json!({})).into_response()
        }
        _ => error(404, "UnknownOperationException", "no such route"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudtrail_times_are_utc_calendar_dates() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_796_152_474, "2026-12-01T19:14:34Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"),
        ] {
            assert_eq!(iso8601(UNIX_EPOCH + Duration::from_secs(secs)), text);
        }
    }
}
