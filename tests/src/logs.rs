//! Log capture for the tests that prove secrets stay out of logs.
//!
//! One process-wide subscriber, installed once, before the test does anything else, in a test
//! binary of its own (`tests/tests/logs.rs`). Why not a thread-local `set_default` per test, as
//! before: `tracing` caches each call site's interest process-wide, and rebuilds it whenever a
//! dispatcher comes or goes on any thread. A call site first hit by another test, while only the
//! no-op dispatcher was registered, could keep "never" and so stay silent in the capture, and
//! work spawned onto another thread escapes a thread-local subscriber altogether. A global
//! subscriber installed before the first event sees every event of the process, whatever runs
//! beside it; each test then finds its own lines by a marker of its own (its logical ID).

use custom_resource::logging::ScrubbingWriter;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, OnceLock};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Everything the process logged since [`capture`] was first called, scrubbed like production
/// output.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// The captured lines that mention `marker` (a test's own logical ID, say).
    pub fn lines_with(&self, marker: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(marker))
            .map(str::to_string)
            .collect()
    }
}

impl Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Installs (once per process) a JSON subscriber at `debug` for every crate, the production
/// format and scrubber, writing to memory; returns the shared capture. Call it first in every
/// test of the binary. Panics if another global subscriber was installed first, rather than
/// letting a test pass on an empty capture.
pub fn capture() -> CapturedLogs {
    static LOGS: OnceLock<CapturedLogs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = CapturedLogs::default();
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(EnvFilter::new("debug"))
            .with_current_span(true)
            .with_writer(ScrubbingWriter::new(logs.clone()))
            .try_init()
            .expect("the capturing subscriber is the process's only global subscriber");
        logs
    })
    .clone()
}
