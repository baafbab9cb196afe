//! The functions' logs as the stack keeps them (CloudWatch Logs of LocalStack, one group per
//! function: `/aws/lambda/{function}`).

use reqwest::Method;
use serde_json::{json, Value};

use crate::api::Failure;
use crate::aws::AwsRest;
use crate::env::StackEnv;

pub struct Logs {
    aws: AwsRest,
}

impl Logs {
    pub fn new(env: &StackEnv) -> Self {
        Logs {
            aws: AwsRest::new(env, "logs"),
        }
    }

    async fn call(&self, action: &str, body: Value) -> Result<Value, Failure> {
        let target = format!("Logs_20140328.{action}");
        let headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target.as_str()),
        ];
        self.aws
            .call(Method::POST, "/", &headers, Some(&body))
            .await
    }

    /// The names of the log groups starting with `prefix`.
    pub async fn groups(&self, prefix: &str) -> Result<Vec<String>, Failure> {
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({"logGroupNamePrefix": prefix});
            if let Some(t) = &token {
                body["nextToken"] = json!(t);
            }
            let page = self.call("DescribeLogGroups", body).await?;
            names.extend(
                page["logGroups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|g| g["logGroupName"].as_str().map(str::to_string)),
            );
            match page["nextToken"].as_str() {
                Some(t) if !t.is_empty() && token.as_deref() != Some(t) => token = Some(t.into()),
                _ => return Ok(names),
            }
        }
    }

    /// Every message of the group logged since `since_ms` (milliseconds since the epoch) whose
    /// text contains `needle`.
    pub async fn messages(
        &self,
        group: &str,
        needle: &str,
        since_ms: i64,
    ) -> Result<Vec<String>, Failure> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({"logGroupName": group, "startTime": since_ms, "limit": 10000});
            if let Some(t) = &token {
                body["nextToken"] = json!(t);
            }
            let page = self.call("FilterLogEvents", body).await?;
            found.extend(
                page["events"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e["message"].as_str())
                    .filter(|m| m.contains(needle))
                    .map(str::to_string),
            );
            match page["nextToken"].as_str() {
                Some(t) if !t.is_empty() && token.as_deref() != Some(t) => token = Some(t.into()),
                _ => return Ok(found),
            }
        }
    }
}
