//! A webhook receiver for the tests: a plain HTTP/1.1 server on the docker bridge's host
//! address (172.17.0.1), where both the tests and the functions' containers reach it. It answers
//! each request with the next status of its script (the last one repeats) and hands over what it
//! received.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The address the receiver listens on: the host's side of the docker bridge.
pub const BRIDGE_HOST: &str = "172.17.0.1";
/// Larger requests are cut off (a CalculationFinished body is well under 2 KB).
const MAX_REQUEST: usize = 256 * 1024;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub answered: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// `webhook-timestamp`, a unix time.
    pub fn timestamp(&self) -> i64 {
        self.header("webhook-timestamp")
            .parse()
            .expect("a unix timestamp")
    }

    /// The body of a webhook whose signature (`webhook-signature`, over `webhook-id`,
    /// `webhook-timestamp` and the body) verifies with `secret`: a CalculationFinished event.
    pub fn signed_calculation_finished(&self, secret: &[u8]) -> serde_json::Value {
        assert!(
            mecapy_shared::webhooks::verify(
                secret,
                self.header("webhook-id"),
                self.timestamp(),
                &self.body,
                self.header("webhook-signature")
            ),
            "the signature does not verify: {:?}",
            self.headers
        );
        let body: serde_json::Value = serde_json::from_slice(&self.body).expect("a JSON body");
        mecapy_shared::events::Event::parse("CalculationFinished", body.clone())
            .unwrap_or_else(|e| panic!("the body is not a CalculationFinished: {e}"));
        body
    }
}

pub struct WebhookReceiver {
    pub port: u16,
    received: mpsc::UnboundedReceiver<Received>,
    accept: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    /// Listens on a new port of [`BRIDGE_HOST`], answering with `script` in turn.
    pub async fn start(script: Vec<u16>) -> WebhookReceiver {
        let listener = TcpListener::bind((BRIDGE_HOST, 0))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot listen on the docker bridge {BRIDGE_HOST} ({e}): the Docker engine \
                 must be running (`make services` starts what the tests need)"
                )
            });
        let port = listener.local_addr().expect("receiver address").port();
        let (tx, received) = mpsc::unbounded_channel();
        let accept = tokio::spawn(async move {
            let mut answered = 0usize;
            while let Ok((stream, _)) = listener.accept().await {
                let status = script
                    .get(answered)
                    .or(script.last())
                    .copied()
                    .unwrap_or(200);
                answered += 1;
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Some(request) = serve(stream, status).await {
                        let _ = tx.send(request);
                    }
                });
            }
        });
        WebhookReceiver {
            port,
            received,
            accept,
        }
    }

    /// `http://172.17.0.1:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{BRIDGE_HOST}:{}{path}", self.port)
    }

    /// The next request, if one comes within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Received> {
        tokio::time::timeout(timeout, self.received.recv())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Reads one request (headers, then `content-length` bytes) and answers `status`.
async fn serve(mut stream: TcpStream, status: u16) -> Option<Received> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if data.len() > MAX_REQUEST {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        .min(MAX_REQUEST);
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < length {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    body.truncate(length);
    let location = if (300..400).contains(&status) {
        // Where a redirect would send the deliverer, were it followed: a private address.
        "location: http://127.0.0.1:9/elsewhere\r\n"
    } else {
        ""
    };
    let reply = format!(
        "HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\nconnection: close\r\n{location}\r\n"
    );
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
    Some(Received {
        method,
        path,
        headers,
        body,
        answered: status,
    })
}
