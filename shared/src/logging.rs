//! JSON logs through `tracing`, with a last line of defence: every line is scrubbed of the
//! values registered with [`register_secret`] (the Apono token, the ResponseURL's query string,
//! secret properties) before it is written.

use std::io::{self, Write};
use std::sync::{OnceLock, RwLock};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// What replaces a secret in logs and reasons.
pub const REDACTED: &str = "***";

/// Values shorter than this are not registered: scrubbing "1" from every line would garble logs
/// and such values are no secrets anyway.
const MIN_SECRET_LEN: usize = 6;

fn secrets() -> &'static RwLock<Vec<String>> {
    static SECRETS: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| RwLock::new(Vec::new()))
}

/// Never print `value` again: it is replaced by `***` in every later log line, reason and
/// `Data` value, in the forms it may take there: as given, URL-decoded (a value taken from a
/// query string), URL-encoded (a value put into one) and JSON-escaped (see [`scrub`]).
pub fn register_secret(value: &str) {
    let decoded = percent_decode(value);
    let encoded: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
    let mut list = secrets().write().unwrap_or_else(|e| e.into_inner());
    for form in [value.to_string(), decoded, encoded] {
        if form.len() >= MIN_SECRET_LEN && !list.contains(&form) {
            list.push(form);
        }
    }
    // Longest first, so that a secret containing another is replaced whole.
    list.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// Registers a presigned URL's query string, and each of its signing values on its own (a
/// signature may be logged apart from the rest of the query).
pub fn register_query_secrets(query: &str) {
    register_secret(query);
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let key = key.to_ascii_lowercase();
        if key.contains("signature") || key.contains("credential") || key.contains("token") {
            register_secret(&value);
        }
    }
}

/// `%XX` sequences decoded ('+' stays: it is a space only in form bodies).
fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_string())
}

/// `text` with every registered secret replaced.
pub fn scrub(text: &str) -> String {
    let list = secrets().read().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_string();
    for secret in list.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), REDACTED);
        }
        // Logs escape JSON; catch the escaped form of a secret too.
        let escaped = serde_json::to_string(secret).unwrap_or_default();
        let escaped = escaped.trim_matches('"');
        if escaped != secret && out.contains(escaped) {
            out = out.replace(escaped, REDACTED);
        }
    }
    out
}

/// A [`MakeWriter`] that scrubs each formatted line before handing it to `inner`.
pub struct ScrubbingWriter<M> {
    inner: M,
}

impl<M> ScrubbingWriter<M> {
    pub fn new(inner: M) -> Self {
        ScrubbingWriter { inner }
    }
}

pub struct ScrubbingLine<W: Write> {
    inner: W,
    buffer: Vec<u8>,
}

impl<W: Write> Write for ScrubbingLine<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        if !self.buffer.is_empty() {
            let text = String::from_utf8_lossy(&self.buffer);
            self.inner.write_all(scrub(&text).as_bytes())?;
            self.buffer.clear();
        }
        self.inner.flush()
    }
}

impl<W: Write> Drop for ScrubbingLine<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for ScrubbingWriter<M> {
    type Writer = ScrubbingLine<M::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        ScrubbingLine {
            inner: self.inner.make_writer(),
            buffer: Vec::new(),
        }
    }
}

/// Set to `1` only in tests: allows `RUST_LOG` to turn on TRACE.
pub const ALLOW_TRACE_ENV: &str = "CUSTOM_RESOURCE_ALLOW_TRACE";

/// The most verbose level logged: DEBUG. At TRACE, `lambda_runtime` logs each raw event, the
/// presigned ResponseURL included, before the runtime has seen it and registered its
/// signature, so TRACE is refused in production whatever `RUST_LOG` asks.
pub fn max_level() -> tracing_subscriber::filter::LevelFilter {
    match std::env::var(ALLOW_TRACE_ENV).as_deref() {
        Ok("1") => tracing_subscriber::filter::LevelFilter::TRACE,
        _ => tracing_subscriber::filter::LevelFilter::DEBUG,
    }
}

/// The default filter: our own crates at `info`, chatty HTTP and SDK internals at `warn`.
/// `RUST_LOG` overrides it (up to [`max_level`]).
pub fn default_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,hyper=warn,hyper_util=warn,reqwest=warn,rustls=warn,h2=warn,aws_smithy_runtime=warn,aws_config=warn,aws_sdk_sts=warn")
    })
}

/// JSON logs to stdout (CloudWatch picks them up), scrubbed. Safe to call more than once.
/// Panics are logged through the same path: the default hook would print their message, which
/// may quote a secret, unscrubbed to stderr (and so to CloudWatch).
pub fn init() {
    std::panic::set_hook(Box::new(|info| {
        tracing::error!(panic = %scrub(&info.to_string()), "panic");
    }));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(default_filter())
        .with_max_level(max_level())
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time() // Lambda stamps every line itself.
        .with_writer(ScrubbingWriter::new(io::stdout))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_scrubbed_decoded_encoded_and_on_its_own() {
        register_query_secrets(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20261125%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=5f3c0ffee1234abcd",
        );
        for line in [
            "signature 5f3c0ffee1234abcd leaked",
            "credential AKIAEXAMPLE/20261125/us-east-1/s3/aws4_request decoded",
            "credential AKIAEXAMPLE%2F20261125%2Fus-east-1%2Fs3%2Faws4_request encoded",
        ] {
            let out = scrub(line);
            assert!(
                !out.contains("5f3c0ffee") && !out.contains("AKIAEXAMPLE"),
                "{out}"
            );
        }
        register_secret("p@ss word/with+specials");
        let out = scrub("form p%40ss+word%2Fwith%2Bspecials here");
        assert!(!out.contains("p%40ss"), "{out}");
    }

    #[test]
    fn trace_is_refused_unless_a_test_allows_it() {
        // The variable is only ever set by tests that want TRACE; none runs in this binary.
        assert_eq!(max_level(), tracing_subscriber::filter::LevelFilter::DEBUG);
    }

    #[test]
    fn registered_secrets_are_scrubbed_even_when_json_escaped() {
        register_secret("tok\"en-abcdef");
        register_secret("short");
        let line = serde_json::to_string("value tok\"en-abcdef here, short stays").unwrap();
        let out = scrub(&line);
        assert!(!out.contains("en-abcdef"), "{out}");
        assert!(out.contains("short stays"));
    }
}
