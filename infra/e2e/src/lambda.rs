//! The few Lambda API calls the tests and the bench need (find a function of the stack, read
//! and change its configuration), as SigV4-signed REST requests to LocalStack.

use std::time::{Duration, Instant, SystemTime};

use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::api::{client, Failure};
use crate::env::StackEnv;

const API: &str = "/2015-03-31/functions";

/// The Lambda service of LocalStack.
pub struct Lambda {
    endpoint: String,
    region: String,
    key: String,
    secret: String,
    http: reqwest::Client,
}

impl Lambda {
    pub fn new(env: &StackEnv) -> Self {
        Lambda {
            endpoint: env.endpoint().to_string(),
            region: env.var("AWS_REGION").to_string(),
            key: env.var("AWS_ACCESS_KEY_ID").to_string(),
            secret: env.var("AWS_SECRET_ACCESS_KEY").to_string(),
            http: client(Duration::from_secs(60)),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        use aws_sigv4::sign::v4;
        let url = format!("{}{path}", self.endpoint);
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let identity = aws_credential_types::Credentials::new(
            &self.key,
            &self.secret,
            None,
            None,
            "mecapy-e2e",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("lambda")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| Failure::new(format!("signing parameters: {e}")))?
            .into();
        let headers = [("content-type", "application/json")];
        let signable = SignableRequest::new(
            method.as_str(),
            &url,
            headers.iter().copied(),
            SignableBody::Bytes(&bytes),
        )
        .map_err(|e| Failure::new(format!("{method} {url}: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| Failure::new(format!("signing {method} {url}: {e}")))?
            .into_parts();
        let mut req = http::Request::builder()
            .method(method.as_str())
            .uri(&url)
            .header("content-type", "application/json")
            .body(bytes)
            .map_err(|e| Failure::new(format!("{method} {url}: {e}")))?;
        instructions.apply_to_request_http1x(&mut req);
        let req = reqwest::Request::try_from(req)
            .map_err(|e| Failure::new(format!("{method} {url}: {e}")))?;
        let r = self.http.execute(req).await.map_err(|e| {
            Failure::new(format!(
                "{method} {url}: LocalStack's Lambda API does not answer ({e}): `make up`"
            ))
        })?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(Failure {
                message: format!("{method} {url}"),
                status: Some(status.as_u16()),
                body: Some(text),
            });
        }
        serde_json::from_str(&text).map_err(|e| Failure {
            message: format!("{method} {url}: not JSON ({e})"),
            status: Some(status.as_u16()),
            body: Some(text),
        })
    }

    /// Every function's configuration.
    pub async fn list(&self) -> Result<Vec<Value>, Failure> {
        let mut all = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let path = match &marker {
                Some(m) => format!(
                    "{API}/?MaxItems=50&Marker={}",
                    url::form_urlencoded::byte_serialize(m.as_bytes()).collect::<String>()
                ),
                None => format!("{API}/?MaxItems=50"),
            };
            let page = self.call(Method::GET, &path, None).await?;
            all.extend(page["Functions"].as_array().cloned().unwrap_or_default());
            match page["NextMarker"].as_str() {
                Some(m) if !m.is_empty() => marker = Some(m.to_string()),
                _ => return Ok(all),
            }
        }
    }

    /// The physical name of the stack's function `logical_id` (SAM names them
    /// `{stack}-{LogicalId}-{suffix}`).
    pub async fn function_of(&self, stack: &str, logical_id: &str) -> Result<String, Failure> {
        let prefix = format!("{stack}-{logical_id}-");
        let functions = self.list().await?;
        let names: Vec<&str> = functions
            .iter()
            .filter_map(|f| f["FunctionName"].as_str())
            .collect();
        names
            .iter()
            .find(|n| n.starts_with(&prefix))
            .map(|n| n.to_string())
            .ok_or_else(|| {
                Failure::new(format!(
                    "no function {prefix}* in LocalStack (functions: {}): `make deploy`",
                    names.join(", ")
                ))
            })
    }

    pub async fn configuration(&self, name: &str) -> Result<Value, Failure> {
        self.call(Method::GET, &format!("{API}/{name}/configuration"), None)
            .await
    }

    /// Replaces the function's environment variables (a new execution environment follows).
    pub async fn set_environment(
        &self,
        name: &str,
        variables: &Map<String, Value>,
    ) -> Result<Value, Failure> {
        self.call(
            Method::PUT,
            &format!("{API}/{name}/configuration"),
            Some(&json!({"Environment": {"Variables": variables}})),
        )
        .await
    }

    /// Waits until the function is `Active` with its last update `Successful`.
    pub async fn wait_ready(&self, name: &str, deadline: Duration) -> Result<Value, Failure> {
        let started = Instant::now();
        loop {
            let config = self.configuration(name).await?;
            let state = config["State"].as_str().unwrap_or("");
            let update = config["LastUpdateStatus"].as_str().unwrap_or("Successful");
            if state == "Active" && update == "Successful" {
                return Ok(config);
            }
            if state == "Failed" || update == "Failed" || started.elapsed() > deadline {
                return Err(Failure {
                    message: format!("function {name} is {state} / {update}"),
                    status: None,
                    body: Some(config.to_string()),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
