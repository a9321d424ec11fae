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

/// Never print `value` again: it is replaced by `***` in every later log line and reason.
pub fn register_secret(value: &str) {
    if value.len() < MIN_SECRET_LEN {
        return;
    }
    let mut list = secrets().write().unwrap_or_else(|e| e.into_inner());
    if !list.iter().any(|s| s == value) {
        list.push(value.to_string());
        // Longest first, so that a secret containing another is replaced whole.
        list.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
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

/// The default filter: our own crates at `info`, chatty HTTP and SDK internals at `warn`.
/// `RUST_LOG` overrides it.
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
    fn registered_secrets_are_scrubbed_even_when_json_escaped() {
        register_secret("tok\"en-abcdef");
        register_secret("short");
        let line = serde_json::to_string("value tok\"en-abcdef here, short stays").unwrap();
        let out = scrub(&line);
        assert!(!out.contains("en-abcdef"), "{out}");
        assert!(out.contains("short stays"));
    }
}
