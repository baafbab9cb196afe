//! The few Lambda API calls the tests and the bench need (find a function of the stack, read
//! and change its configuration), as SigV4-signed REST requests to LocalStack.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::api::Failure;
use crate::aws::AwsRest;
use crate::env::StackEnv;

const API: &str = "/2015-03-31/functions";

/// The Lambda service of LocalStack.
pub struct Lambda {
    aws: AwsRest,
}

impl Lambda {
    pub fn new(env: &StackEnv) -> Self {
        Lambda {
            aws: AwsRest::new(env, "lambda"),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        self.aws
            .call(method, path, &[("content-type", "application/json")], body)
            .await
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
