//! The two calls of Custom::OrganizationInfo that moto does not serve, over HTTP, for the real
//! binary: `account:ListRegions` (AWS_ENDPOINT_URL_ACCOUNT) and CloudFormation's
//! `DescribeOrganizationsAccess` / `ActivateOrganizationsAccess`, and `DescribeStacks` for the
//! EKS function's scheduled runs (AWS_ENDPOINT_URL_CLOUDFORMATION).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::json;
use std::sync::{Arc, Mutex};

struct Inner {
    /// When set, every call is checked against the caller's IAM policies (moto enforcing).
    authorizer: Option<crate::iam::Authorizer>,
    regions: Vec<String>,
    trusted_access: bool,
    stack_status: String,
    /// When the last Update began (DescribeStacks' LastUpdatedTime).
    last_updated: Option<String>,
    updates: u64,
}

pub struct FakePlatform {
    port: u16,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakePlatform {
    pub async fn start(regions: &[&str]) -> FakePlatform {
        let inner = Arc::new(Mutex::new(Inner {
            authorizer: None,
            regions: regions.iter().map(|r| r.to_string()).collect(),
            trusted_access: true,
            stack_status: "CREATE_COMPLETE".into(),
            last_updated: None,
            updates: 0,
        }));
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let (port, task) = crate::serve_loopback(app).await;
        FakePlatform { port, inner, task }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What `DescribeStacks` reports for the stack (the local deploy sets it as it goes); an
    /// Update beginning sets its LastUpdatedTime, as CloudFormation does.
    pub fn set_stack_status(&self, status: &str) {
        let mut inner = self.inner.lock().unwrap();
        if status == "UPDATE_IN_PROGRESS" {
            inner.updates += 1;
            inner.last_updated = Some(format!(
                "2026-11-25T00:{:02}:{:02}Z",
                inner.updates / 60 % 60,
                inner.updates % 60
            ));
        }
        inner.stack_status = status.to_string();
    }

    /// From now on, refuse what the caller's IAM policies do not allow, as AWS would.
    pub fn enforce(&self, authorizer: crate::iam::Authorizer) {
        self.inner.lock().unwrap().authorizer = Some(authorizer);
    }

    pub fn set_trusted_access(&self, on: bool) {
        self.inner.lock().unwrap().trusted_access = on;
    }
}

impl Drop for FakePlatform {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn xml(action: &str, result: &str) -> Response {
    (
        StatusCode::OK,
        [("content-type", "text/xml")],
        format!(
            "<{action}Response xmlns=\"http://cloudformation.amazonaws.com/doc/2010-05-15/\"><{action}Result>{result}</{action}Result><ResponseMetadata><RequestId>local</RequestId></ResponseMetadata></{action}Response>"
        ),
    )
        .into_response()
}

/// The IAM action and resource of a call (None: not a call this fake serves).
fn permission(path: &str, body: &str) -> Option<(String, String)> {
    if path == "/listRegions" {
        return Some(("account:ListRegions".into(), "*".into()));
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let param = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let action = param("Action")?;
    let resource = match action.as_str() {
        "DescribeStacks" => param("StackName").unwrap_or_else(|| "*".into()),
        _ => "*".into(),
    };
    Some((format!("cloudformation:{action}"), resource))
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = String::from_utf8_lossy(&body);
    let authorizer = inner.lock().unwrap().authorizer.clone();
    if let (Some(authorizer), Some((action, resource))) =
        (authorizer, permission(uri.path(), &body))
    {
        if let Err(denied) = authorizer.check(&headers, &action, &resource).await {
            if uri.path() == "/listRegions" {
                // The Account API speaks JSON.
                return (
                    StatusCode::FORBIDDEN,
                    [("x-amzn-errortype", "AccessDeniedException")],
                    axum::Json(json!({ "message": denied })),
                )
                    .into_response();
            }
            let code = "AccessDenied";
            return (
                StatusCode::FORBIDDEN,
                [("x-amzn-errortype", code), ("content-type", "text/xml")],
                format!("<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{denied}</Message></Error><RequestId>local</RequestId></ErrorResponse>"),
            )
                .into_response();
        }
    }
    let mut state = inner.lock().unwrap();
    if uri.path() == "/listRegions" {
        let regions: Vec<_> = state
            .regions
            .iter()
            .map(|r| json!({"RegionName": r, "RegionOptStatus": "ENABLED_BY_DEFAULT"}))
            .collect();
        return axum::Json(json!({"Regions": regions})).into_response();
    }
    if body.contains("Action=DescribeOrganizationsAccess") {
        let status = if state.trusted_access {
            "ENABLED"
        } else {
            "DISABLED"
        };
        return xml(
            "DescribeOrganizationsAccess",
            &format!("<Status>{status}</Status>"),
        );
    }
    if body.contains("Action=DescribeStacks") {
        let updated = state
            .last_updated
            .as_ref()
            .map(|t| format!("<LastUpdatedTime>{t}</LastUpdatedTime>"))
            .unwrap_or_default();
        let member = format!(
            "<Stacks><member><StackName>apono-onboarding</StackName><StackId>{}</StackId>\
             <CreationTime>2026-11-25T00:00:00Z</CreationTime>{updated}<StackStatus>{}</StackStatus>\
             </member></Stacks>",
            crate::events::STACK_ID,
            state.stack_status
        );
        return xml("DescribeStacks", &member);
    }
    if body.contains("Action=ActivateOrganizationsAccess") {
        state.trusted_access = true;
        return xml("ActivateOrganizationsAccess", "");
    }
    (StatusCode::NOT_FOUND, "not emulated").into_response()
}
