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

    /// Every item of the array `field` in the pages `action` answers to `body`, following
    /// `nextToken` to the last page (or until a token repeats).
    async fn all_pages(
        &self,
        action: &str,
        body: Value,
        field: &str,
    ) -> Result<Vec<Value>, Failure> {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = body.clone();
            if let Some(t) = &token {
                body["nextToken"] = json!(t);
            }
            let page = self.call(action, body).await?;
            items.extend(page[field].as_array().into_iter().flatten().cloned());
            match page["nextToken"].as_str() {
                Some(t) if !t.is_empty() && token.as_deref() != Some(t) => token = Some(t.into()),
                _ => return Ok(items),
            }
        }
    }

    /// The names of the log groups starting with `prefix`.
    pub async fn groups(&self, prefix: &str) -> Result<Vec<String>, Failure> {
        let groups = self
            .all_pages(
                "DescribeLogGroups",
                json!({"logGroupNamePrefix": prefix}),
                "logGroups",
            )
            .await?;
        Ok(groups
            .iter()
            .filter_map(|g| g["logGroupName"].as_str().map(str::to_string))
            .collect())
    }

    /// Every message of the group logged since `since_ms` (milliseconds since the epoch) whose
    /// text contains `needle`.
    pub async fn messages(
        &self,
        group: &str,
        needle: &str,
        since_ms: i64,
    ) -> Result<Vec<String>, Failure> {
        let body = json!({"logGroupName": group, "startTime": since_ms, "limit": 10000});
        let events = self.all_pages("FilterLogEvents", body, "events").await?;
        Ok(events
            .iter()
            .filter_map(|e| e["message"].as_str())
            .filter(|m| m.contains(needle))
            .map(str::to_string)
            .collect())
    }
}
