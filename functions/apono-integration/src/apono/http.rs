//! One HTTP call to Apono: the request with the token, bounded bodies, Apono's error message,
//! and retries (`retry::Backoff`) for the answers that may be retried.

use super::{AponoClient, AponoError};
use custom_resource::logging::scrub;
use custom_resource::response::{error_chain, truncate_utf8};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

impl AponoClient {
    /// One API call with retries. `Ok(None)` is a 404.
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<Option<Value>, AponoError> {
        self.call_with(method, path, query, body, true).await
    }

    /// One API call; with `retry`, retried on throttling, 5xx and transport errors (only for
    /// calls that may be repeated safely: GET, PUT, DELETE).
    pub(super) async fn call_with(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
        retry: bool,
    ) -> Result<Option<Value>, AponoError> {
        let mut url = self.base.clone();
        url.set_path(path);
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let mut attempts = 0;
        let mut backoff = self.backoff();
        loop {
            attempts += 1;
            let (last, retry_after) = match self.attempt(&method, &url, path, body.as_ref()).await?
            {
                Attempt::Answered(answer) => return Ok(answer),
                Attempt::Unclear { last, retry_after } => (last, retry_after),
            };
            let Some(delay) = backoff.next_delay(retry_after).filter(|_| retry) else {
                return Err(AponoError::Unavailable {
                    method,
                    path: path.to_string(),
                    attempts,
                    last,
                });
            };
            tracing::warn!(%method, path, attempt = attempts, error = %last, delay_ms = delay.as_millis() as u64, "Apono API call failed, retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// One request: its answer (`None` for a 404), an error that retrying cannot fix, or an
    /// unclear end (throttling, 5xx, transport) that may be retried.
    async fn attempt(
        &self,
        method: &Method,
        url: &Url,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Attempt, AponoError> {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(&self.token)
            .timeout(remaining.clamp(Duration::from_millis(1), Duration::from_secs(30)));
        if let Some(body) = body {
            request = request.json(body);
        }
        let resp = match request.send().await {
            Ok(resp) => resp,
            // without_url: the URL carries nothing secret, but keep messages short.
            Err(err) => {
                return Ok(Attempt::Unclear {
                    last: error_chain(&err.without_url()),
                    retry_after: None,
                })
            }
        };
        let status = resp.status();
        if status.is_success() {
            return answered(resp, method, path).await.map(Attempt::Answered);
        }
        match status {
            StatusCode::NOT_FOUND => return Ok(Attempt::Answered(None)),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(AponoError::Rejected {
                    at: self.token_at.clone(),
                    status: status.as_u16(),
                })
            }
            _ => {}
        }
        let retry_after = retry_after(&resp);
        let text = read_limited(resp, MAX_ERROR_BODY_BYTES)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() {
            return Err(AponoError::Client {
                method: method.clone(),
                path: path.to_string(),
                status: status.as_u16(),
                message: api_message(&text),
            });
        }
        Ok(Attempt::Unclear {
            last: format!("HTTP {}", status.as_u16()),
            retry_after,
        })
    }
}

/// How one request ended.
enum Attempt {
    /// Apono answered (`None`: 404).
    Answered(Option<Value>),
    /// No clear answer: it may or may not have been carried out.
    Unclear {
        last: String,
        retry_after: Option<Duration>,
    },
}

/// The largest answer read: Apono's answers are a few KB; a function of 128 MB must not run
/// out of memory (and never answer CloudFormation) on a huge or endless body.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// The body, refused once it passes `limit` bytes (read chunk by chunk, never all at once).
async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(format!("the answer is larger than {limit} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| error_chain(&e.without_url()))?
    {
        if body.len() + chunk.len() > limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The API's own message if it sent one, shortened, with secrets scrubbed.
fn api_message(body: &str) -> String {
    let from_json = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        ["message", "error", "detail", "code"]
            .iter()
            .find_map(|k| v.get(k).and_then(Value::as_str).map(str::to_string))
    });
    let text = from_json.unwrap_or_else(|| body.trim().to_string());
    let text = if text.is_empty() {
        "no message".to_string()
    } else {
        text
    };
    scrub(truncate_utf8(&text, 300))
}

/// A successful answer's body: JSON, `null` when empty, refused past the size limit.
async fn answered(
    resp: reqwest::Response,
    method: &Method,
    path: &str,
) -> Result<Option<Value>, AponoError> {
    let decode_error = |message: String| AponoError::Decode {
        method: method.clone(),
        path: path.to_string(),
        message,
    };
    let bytes = read_limited(resp, MAX_BODY_BYTES)
        .await
        .map_err(decode_error)?;
    if bytes.is_empty() {
        return Ok(Some(Value::Null));
    }
    let value = serde_json::from_slice(&bytes).map_err(|e| decode_error(e.to_string()))?;
    Ok(Some(value))
}

/// `Retry-After` in seconds; anything longer than the Lambda timeout only means "not now".
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|secs| Duration::from_secs(secs.min(900)))
}
