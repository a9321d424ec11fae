//! A local stand-in for the S3 presigned ResponseURL: records every request exactly as it
//! arrived on the wire and can be told to fail the next N requests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How to fail one request.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Answer with this HTTP status.
    Status(u16),
    /// Close the connection without answering (TCP reset).
    Reset,
    /// Wait this long before answering 200.
    Slow(Duration),
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    /// Header names lower-cased, values as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
    /// The fault this request was answered with, if any.
    pub fault: Option<Fault>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("response body is JSON")
    }
}

#[derive(Default)]
struct State {
    recorded: Vec<Recorded>,
    faults: VecDeque<Fault>,
}

pub struct Receiver {
    port: u16,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

/// The signature a test URL carries, so that tests can prove it never reaches a log.
pub const FAKE_SIGNATURE: &str = "X-Amz-Signature=5ec2e7deadbeef0123456789abcdef";

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = crate::loopback_listener().await;
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        Receiver { port, state, task }
    }

    /// A presigned-looking URL on this receiver.
    pub fn url(&self, name: &str) -> String {
        format!(
            "http://127.0.0.1:{}/cfn-response/{name}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAFAKE&{FAKE_SIGNATURE}",
            self.port
        )
    }

    pub fn fail_next(&self, count: usize, fault: Fault) {
        let mut state = self.state.lock().unwrap();
        state.faults.extend(std::iter::repeat_n(fault, count));
    }

    /// Every request received so far, faulted ones included.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().recorded.clone()
    }

    /// Requests that were answered 2xx (what CloudFormation would have accepted).
    pub fn accepted(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.fault.is_none())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut buffer = Vec::new();
    loop {
        let Some((head_len, method, target, headers)) = read_head(&mut stream, &mut buffer).await
        else {
            return;
        };
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while buffer.len() < head_len + length {
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buffer[head_len..head_len + length].to_vec();
        buffer.drain(..head_len + length);
        let fault = state.lock().unwrap().faults.pop_front();
        state.lock().unwrap().recorded.push(Recorded {
            method,
            target,
            headers,
            body,
            at: Instant::now(),
            fault,
        });
        let status = match fault {
            Some(Fault::Reset) => {
                // Zero linger turns the close into a TCP RST.
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                return;
            }
            Some(Fault::Status(code)) => code,
            Some(Fault::Slow(delay)) => {
                tokio::time::sleep(delay).await;
                200
            }
            None => 200,
        };
        let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

type Head = (usize, String, String, Vec<(String, String)>);

async fn read_head(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Head> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&buffer[..end]).to_string();
            let mut lines = text.split("\r\n");
            let mut first = lines.next()?.split(' ');
            let method = first.next()?.to_string();
            let target = first.next()?.to_string();
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            return Some((end + 4, method, target, headers));
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}
