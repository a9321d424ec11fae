//! The two calls of Custom::OrganizationInfo that moto does not serve, over HTTP, for the real
//! binary: `account:ListRegions` (AWS_ENDPOINT_URL_ACCOUNT) and CloudFormation's
//! `DescribeOrganizationsAccess` / `ActivateOrganizationsAccess`, and `DescribeStacks` for the
//! EKS function's scheduled runs (AWS_ENDPOINT_URL_CLOUDFORMATION).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::json;
use std::sync::{Arc, Mutex};

struct Inner {
    regions: Vec<String>,
    trusted_access: bool,
    stack_status: String,
}

pub struct FakePlatform {
    port: u16,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakePlatform {
    pub async fn start(regions: &[&str]) -> FakePlatform {
        let inner = Arc::new(Mutex::new(Inner {
            regions: regions.iter().map(|r| r.to_string()).collect(),
            trusted_access: true,
            stack_status: "CREATE_COMPLETE".into(),
        }));
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let (port, task) = crate::serve_loopback(app).await;
        FakePlatform { port, inner, task }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What `DescribeStacks` reports for the stack (the local deploy sets it as it goes).
    pub fn set_stack_status(&self, status: &str) {
        self.inner.lock().unwrap().stack_status = status.to_string();
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

async fn handle(State(inner): State<Arc<Mutex<Inner>>>, uri: Uri, body: Bytes) -> Response {
    let body = String::from_utf8_lossy(&body);
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
        let member = format!(
            "<Stacks><member><StackName>apono-onboarding</StackName><StackId>{}</StackId>\
             <CreationTime>2026-11-25T00:00:00Z</CreationTime><StackStatus>{}</StackStatus>\
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
