//! The hermetic test kit: moto on a free loopback port, a recording response receiver with
//! fault injection, CloudFormation event builders, and an in-process driver for handlers.
//! Nothing here talks to real AWS or the real Apono API.

pub mod cfn;
pub mod demo;
pub mod deploy;
pub mod events;
pub mod fake_apono;
pub mod fake_eks;
pub mod fake_platform;
pub mod iam;
pub mod invoke;
pub mod lambda;
pub mod local_run;
pub mod logs;
pub mod moto;
pub mod org;
pub mod receiver;
pub mod template;

use std::path::PathBuf;

/// The workspace root (where `.venv` lives).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// A tool from the project virtualenv, or from PATH if the venv does not have it.
pub fn venv_tool(name: &str) -> PathBuf {
    let in_venv = workspace_root().join(".venv/bin").join(name);
    if in_venv.exists() {
        in_venv
    } else {
        PathBuf::from(name)
    }
}

/// Ports handed to child processes (moto), which bind them only after a second or so of start-up.
static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());

/// A free TCP port on 127.0.0.1 for a child process to bind (moto). Never the same port twice
/// in one process, and never one this process's own servers hold: the port is released before
/// the child binds it, and the kernel may hand it to a `bind(0)` in between (seen: moto's
/// start-up probe answered by a test's response receiver, whose test then counted 3 answers).
/// Another process may still take it; the caller checks that its own child is the one
/// answering (see `Moto::start`).
pub fn free_port() -> u16 {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// A listener on a free 127.0.0.1 port that no child process has been told to bind.
pub async fn loopback_listener() -> tokio::net::TcpListener {
    loop {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if !handed_out.contains(&port) {
            return listener;
        }
    }
}

/// Serves `app` on a free 127.0.0.1 port; the task ends when aborted (the fakes do on drop).
pub async fn serve_loopback(app: axum::Router) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = loopback_listener().await;
    let port = listener.local_addr().expect("local address").port();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, task)
}

/// `--name value` from the command line, or `default` (for the bench binaries).
pub fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}
