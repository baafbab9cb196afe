//! A small HTTP client of the deployed API: every answer is kept whole (status, headers, body)
//! so that a failure can say exactly what the stack answered.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// What went wrong in one request: what was attempted, and the HTTP status and body if any.
#[derive(Debug, Clone)]
pub struct Failure {
    pub message: String,
    pub status: Option<u16>,
    pub body: Option<String>,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            status: None,
            body: None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(status) = self.status {
            write!(f, " [HTTP {status}]")?;
        }
        if let Some(body) = &self.body {
            write!(f, " body: {}", clip(body, 2000))?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

/// At most `max` characters of `text`, marked when cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}… ({} bytes in all)", text.len())
    }
}

/// One answer of the API.
#[derive(Debug, Clone)]
pub struct Reply {
    pub method: Method,
    pub url: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A failure describing this answer.
    pub fn failure(&self, why: impl fmt::Display) -> Failure {
        Failure {
            message: format!("{} {}: {why}", self.method, self.url),
            status: Some(self.status.as_u16()),
            body: Some(self.text()),
        }
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<Value, Failure> {
        serde_json::from_slice(&self.body).map_err(|e| self.failure(format!("not JSON ({e})")))
    }

    /// The body as JSON if the status is `expected`, a failure naming both otherwise.
    pub fn expect(&self, expected: u16) -> Result<Value, Failure> {
        if self.status.as_u16() != expected {
            return Err(self.failure(format!("expected {expected}, got {}", self.status)));
        }
        self.json()
    }
}

/// The deployed API.
#[derive(Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

/// The body of a request.
pub enum Payload<'a> {
    Empty,
    Json(&'a Value),
    /// Raw bytes with their content type.
    Raw(&'static str, Vec<u8>),
}

impl Api {
    /// `base` is the stack's `API_URL`.
    pub fn new(base: &str) -> Self {
        Api {
            base: base.trim_end_matches('/').to_string(),
            http: client(Duration::from_secs(60)),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request to `path` (`/files`, ...) with an optional bearer token.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        payload: Payload<'_>,
    ) -> Result<Reply, Failure> {
        self.send_with(method, path, token.map(|t| format!("Bearer {t}")), payload)
            .await
    }

    /// Like [`Api::send`] with the `Authorization` header exactly as given.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        authorization: Option<String>,
        payload: Payload<'_>,
    ) -> Result<Reply, Failure> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(value) = authorization {
            req = req.header(AUTHORIZATION, value);
        }
        req = match payload {
            Payload::Empty => req,
            Payload::Json(v) => req
                .header(CONTENT_TYPE, "application/json")
                .body(v.to_string()),
            Payload::Raw(ct, bytes) => req.header(CONTENT_TYPE, ct).body(bytes),
        };
        let r = req
            .send()
            .await
            .map_err(|e| Failure::new(format!("{method} {url}: no answer ({e})")))?;
        let status = r.status();
        let headers = r.headers().clone();
        let body = r
            .bytes()
            .await
            .map_err(|e| Failure::new(format!("{method} {url}: body cut ({e})")))?
            .to_vec();
        Ok(Reply {
            method,
            url,
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Result<Reply, Failure> {
        self.send(Method::GET, path, token, Payload::Empty).await
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Result<Reply, Failure> {
        self.send(Method::POST, path, token, Payload::Json(body))
            .await
    }

    /// `POST /files` with one multipart field `file`.
    pub async fn upload(
        &self,
        token: &str,
        filename: &str,
        content_type: &str,
        data: &[u8],
    ) -> Result<Reply, Failure> {
        let (ct, body) = multipart(filename, content_type, data);
        self.send(Method::POST, "/files", Some(token), Payload::Raw(ct, body))
            .await
    }

    /// GET of an absolute URL (a presigned link), the body as text if the status is 200.
    pub async fn fetch(&self, url: &str) -> Result<String, Failure> {
        let bytes = self.fetch_bytes(url).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// GET of an absolute URL (a presigned link), the body as bytes if the status is 200.
    pub async fn fetch_bytes(&self, url: &str) -> Result<Vec<u8>, Failure> {
        let r = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| Failure::new(format!("GET {url}: no answer ({e})")))?;
        let status = r.status();
        let body = r
            .bytes()
            .await
            .map_err(|e| Failure::new(format!("GET {url}: body cut ({e})")))?;
        if !status.is_success() {
            return Err(Failure {
                message: format!("GET {url}: expected 200"),
                status: Some(status.as_u16()),
                body: Some(String::from_utf8_lossy(&body).into_owned()),
            });
        }
        Ok(body.to_vec())
    }
}

/// The boundary [`multipart`] uses.
pub const BOUNDARY: &str = "mecapy-e2e-boundary-5c2a";

/// A `multipart/form-data` body with one field `file`: (content type, body).
pub fn multipart(filename: &str, content_type: &str, data: &[u8]) -> (&'static str, Vec<u8>) {
    let mut body = Vec::with_capacity(data.len() + 256);
    body.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    (
        "multipart/form-data; boundary=mecapy-e2e-boundary-5c2a",
        body,
    )
}

/// An HTTP client that never goes through a proxy (everything is local).
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .expect("http client")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_multipart_content_type_names_the_boundary_of_the_body() {
        let (ct, body) = multipart("a.csv", "text/csv", b"1,2\n");
        assert!(ct.ends_with(BOUNDARY));
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(&format!("--{BOUNDARY}\r\n")));
        assert!(text.ends_with(&format!("--{BOUNDARY}--\r\n")));
        assert!(text.contains("filename=\"a.csv\""));
    }

    #[test]
    fn clip_marks_what_it_cut() {
        assert_eq!(clip("abc", 5), "abc");
        assert!(clip("abcdef", 3).starts_with("abc…"));
    }
}
