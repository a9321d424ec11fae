//! The response CloudFormation waits for: its body (<= 4096 bytes), the URL policy, and the
//! PUT with retries.

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

/// CloudFormation rejects larger bodies with "Response object is too long".
pub const MAX_BODY_BYTES: usize = 4096;
/// CloudFormation's limit for a physical ID.
pub const MAX_PHYSICAL_ID_BYTES: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Success,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResponseBody {
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub physical_resource_id: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_echo: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
}

/// Cuts `text` to at most `max` bytes on a character boundary, keeping the start.
pub fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

const TRUNCATED: &str = " [...truncated]";

impl ResponseBody {
    /// Serializes within [`MAX_BODY_BYTES`]: the reason is shortened first (keeping its start);
    /// if that is not enough, `Data` is dropped and the reason says so. A SUCCESS whose `Data`
    /// alone is too large becomes FAILED, because `!GetAtt` on the dropped keys would fail
    /// later with a far less helpful message.
    pub fn into_bytes(mut self) -> Vec<u8> {
        if self.physical_resource_id.len() > MAX_PHYSICAL_ID_BYTES {
            self.physical_resource_id =
                truncate_utf8(&self.physical_resource_id, MAX_PHYSICAL_ID_BYTES).to_string();
        }
        if self.encode().len() <= MAX_BODY_BYTES || self.fit_reason() {
            return self.encode();
        }
        // Still too large: the Data must go.
        let data_bytes = serde_json::to_vec(&self.data).map(|v| v.len()).unwrap_or(0);
        let keys: Vec<&str> = self.data.keys().map(String::as_str).collect();
        let note = format!(
            "Data ({data_bytes} bytes, keys {}) was dropped: the response exceeded CloudFormation's {MAX_BODY_BYTES}-byte limit",
            truncate_utf8(&keys.join(","), 300)
        );
        self.reason = Some(match (self.status, self.reason.take()) {
            (Status::Success, _) => note,
            (Status::Failed, Some(reason)) => format!("{note}. {reason}"),
            (Status::Failed, None) => note,
        });
        self.status = Status::Failed;
        self.data.clear();
        if self.encode().len() <= MAX_BODY_BYTES || self.fit_reason() {
            return self.encode();
        }
        // Only identifiers longer than CloudFormation ever sends can get here (the runtime
        // refuses such events): cut them so that the body is bounded in one pass.
        for field in [
            &mut self.stack_id,
            &mut self.request_id,
            &mut self.logical_resource_id,
        ] {
            *field = truncate_utf8(field, 512).to_string();
        }
        self.fit_reason();
        self.encode()
    }

    /// Shortens the reason (keeping its start) until the body fits; false if even an empty
    /// reason does not make it fit. A binary search: JSON escaping makes the encoded size of
    /// a cut hard to predict.
    fn fit_reason(&mut self) -> bool {
        let Some(reason) = self.reason.take() else {
            return false;
        };
        let fits = |body: &mut ResponseBody, keep: usize| {
            body.reason = Some(format!("{}{TRUNCATED}", truncate_utf8(&reason, keep)));
            body.encode().len() <= MAX_BODY_BYTES
        };
        if !fits(self, 0) {
            self.reason = Some(reason);
            return false;
        }
        let (mut lo, mut hi) = (0, reason.len());
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if fits(self, mid) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        fits(self, lo);
        true
    }

    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a response body always serializes")
    }
}

/// Which ResponseURLs may be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UrlPolicy {
    /// Production: https on Amazon S3 hosts only.
    #[default]
    AwsS3Only,
    /// Tests only, by explicit configuration: also `http://127.0.0.1:<port>`. Compiled in
    /// only with the `test-util` feature.
    #[cfg(feature = "test-util")]
    AlsoLoopbackForTests,
}

impl UrlPolicy {
    /// The parsed URL if it may be called, else why not (without the query string).
    pub fn check(self, raw: &str) -> Result<Url, String> {
        let url = Url::parse(raw).map_err(|e| format!("ResponseURL is not a URL ({e})"))?;
        if is_aws_s3(&url) {
            return Ok(url);
        }
        #[cfg(feature = "test-util")]
        if self == UrlPolicy::AlsoLoopbackForTests
            && url.scheme() == "http"
            && url.host_str() == Some("127.0.0.1")
        {
            return Ok(url);
        }
        Err(format!(
            "refusing ResponseURL {}: only https URLs on Amazon S3 hosts are called",
            redact_url(&url)
        ))
    }
}

fn is_aws_s3(url: &Url) -> bool {
    if url.scheme() != "https" || url.port().is_some_and(|p| p != 443) {
        return false;
    }
    if !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    let Some(url::Host::Domain(host)) = url.host() else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    let Some(rest) = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))
    else {
        return false;
    };
    let labels: Vec<&str> = rest.split('.').collect();
    let s3_label = |l: &str| l == "s3" || (l.starts_with("s3-") && !l.starts_with("s3-website"));
    // Path style: s3.amazonaws.com, s3.<region>, s3-<region>, s3-external-1.
    // Virtual-hosted style: <bucket>.s3[.<region>|-<region>][.dualstack...].
    match labels.as_slice() {
        [first, ..] if s3_label(first) => labels.len() <= 3,
        [_, second, ..] => s3_label(second),
        _ => false,
    }
}

/// `scheme://host/path`, never the query string (it carries the presigned signature).
pub fn redact_url(url: &Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.path()
    )
}

/// Why a response could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the response endpoint answered HTTP {status} (not retried)")]
    Rejected { status: u16 },
    #[error("no answer after {attempts} attempt(s) before the deadline; last error: {last}")]
    GaveUp { attempts: u32, last: String },
}

/// Sends response bodies with PUT, retrying connection errors and 5xx with exponential backoff
/// and jitter, never past the deadline.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
}

impl Default for Sender {
    fn default() -> Self {
        Self::new()
    }
}

impl Sender {
    pub fn new() -> Self {
        let client = crate::tls::reqwest_builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!(
                "apono-cfn-custom-resource/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .expect("the HTTP client builds with static settings");
        Sender { client }
    }

    /// Returns the number of attempts made.
    pub async fn put(&self, url: &Url, body: Vec<u8>, deadline: Instant) -> Result<u32, SendError> {
        let mut attempts = 0u32;
        let mut backoff = crate::retry::Backoff::new(
            Duration::from_millis(200),
            Duration::from_secs(5),
            deadline,
        );
        loop {
            attempts += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let last = if remaining.is_zero() {
                "deadline reached".to_string()
            } else {
                let request = self
                    .client
                    .put(url.clone())
                    // An empty Content-Type: any other value breaks the presigned signature.
                    .header(reqwest::header::CONTENT_TYPE, "")
                    .body(body.clone())
                    .timeout(remaining.min(Duration::from_secs(15)));
                match request.send().await {
                    Ok(resp) if resp.status().is_success() => return Ok(attempts),
                    Ok(resp) if resp.status().is_server_error() => {
                        format!("HTTP {}", resp.status().as_u16())
                    }
                    Ok(resp) => {
                        return Err(SendError::Rejected {
                            status: resp.status().as_u16(),
                        })
                    }
                    // without_url: reqwest's messages would otherwise print the signed URL.
                    Err(err) => error_chain(&err.without_url()),
                }
            };
            let Some(delay) = backoff.next_delay(None) else {
                return Err(SendError::GaveUp { attempts, last });
            };
            tracing::warn!(attempt = attempts, error = %last, delay_ms = delay.as_millis() as u64, "response PUT failed, retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

/// An error's message with its sources, as one line.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(reason: Option<String>, data: BTreeMap<String, String>) -> ResponseBody {
        ResponseBody {
            status: if reason.is_some() {
                Status::Failed
            } else {
                Status::Success
            },
            reason,
            physical_resource_id: "pid".into(),
            stack_id: "arn:aws:cloudformation:us-east-1:123456789012:stack/s/guid".into(),
            request_id: "req".into(),
            logical_resource_id: "Res".into(),
            no_echo: false,
            data,
        }
    }

    #[test]
    fn long_multibyte_reason_is_cut_on_a_char_boundary_keeping_the_start() {
        let reason = format!("START {}", "é\"ü".repeat(5000));
        let bytes = body(Some(reason), BTreeMap::new()).into_bytes();
        assert!(bytes.len() <= MAX_BODY_BYTES, "{}", bytes.len());
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let r = v["Reason"].as_str().unwrap();
        assert!(r.starts_with("START "));
        assert!(r.ends_with("[...truncated]"));
    }

    #[test]
    fn oversized_data_on_success_becomes_failed_saying_why() {
        let data = (0..100)
            .map(|i| (format!("Key{i}"), "x".repeat(100)))
            .collect();
        let bytes = body(None, data).into_bytes();
        assert!(bytes.len() <= MAX_BODY_BYTES);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["Status"], "FAILED");
        assert!(v.get("Data").is_none());
        assert!(v["Reason"].as_str().unwrap().contains("was dropped"));
    }

    #[test]
    fn only_aws_s3_https_urls_pass_the_production_policy() {
        let ok = [
            "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/a?X-Amz-Signature=1",
            "https://cloudformation-custom-resource-response-euwest1.s3.eu-west-1.amazonaws.com/a",
            "https://s3.amazonaws.com/bucket/key",
            "https://s3-external-1.amazonaws.com/bucket/key",
            "https://bucket.s3-us-west-2.amazonaws.com/key",
            "https://cloudformation-custom-resource-response-cnnorth1.s3.cn-north-1.amazonaws.com.cn/a",
        ];
        for url in ok {
            UrlPolicy::AwsS3Only
                .check(url)
                .unwrap_or_else(|e| panic!("{url}: {e}"));
        }
        let refused = [
            "http://s3.amazonaws.com/bucket/key",
            "https://evil.example.com/s3.amazonaws.com",
            "https://s3.amazonaws.com.evil.com/x",
            "https://abc.execute-api.us-east-1.amazonaws.com/x",
            "https://s3.amazonaws.com:8443/x",
            "http://127.0.0.1:8080/x",
            "https://user:pw@s3.amazonaws.com/x",
        ];
        for url in refused {
            let err = UrlPolicy::AwsS3Only.check(url).unwrap_err();
            assert!(!err.contains('?'), "{err}");
        }
        #[cfg(feature = "test-util")]
        {
            UrlPolicy::AlsoLoopbackForTests
                .check("http://127.0.0.1:9/x?sig=1")
                .unwrap();
            assert!(UrlPolicy::AlsoLoopbackForTests
                .check("http://10.0.0.1:9/x")
                .is_err());
        }
    }
}
