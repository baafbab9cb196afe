//! The job lifecycle events (`CalculationStarted`, `CalculationFinished`) on their SQS queue:
//! the seed's event bus, for the notification service to come.

use chrono::Utc;
use mecapy_shared::db::jobs::Job;
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub job_id: Uuid,
    pub user_id: Uuid,
    pub status: String,
    pub duration_ms: Option<i64>,
    pub at: chrono::DateTime<Utc>,
}

impl Event {
    pub fn started(job: &Job) -> Self {
        Event {
            kind: "CalculationStarted",
            job_id: job.id,
            user_id: job.user_id,
            status: job.status.clone(),
            duration_ms: None,
            at: Utc::now(),
        }
    }

    pub fn finished(job: &Job) -> Self {
        Event {
            kind: "CalculationFinished",
            job_id: job.id,
            user_id: job.user_id,
            status: job.status.clone(),
            duration_ms: job.duration_ms,
            at: Utc::now(),
        }
    }
}

pub struct EventsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl EventsQueue {
    pub fn new(config: &aws_config::SdkConfig, url: &str) -> Self {
        Self::with_client(aws_sdk_sqs::Client::new(config), url)
    }

    pub fn with_client(client: aws_sdk_sqs::Client, url: &str) -> Self {
        EventsQueue {
            client,
            url: url.to_string(),
        }
    }

    /// Publishes one event. A lost notification must not fail or re-run the job: logged only.
    pub async fn send(&self, event: &Event) {
        let body = match serde_json::to_string(event) {
            Ok(body) => body,
            Err(e) => return tracing::error!(error = %e, "event not serialisable"),
        };
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body);
        if let Ok(kind) = aws_sdk_sqs::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value(event.kind)
            .build()
        {
            request = request.message_attributes("type", kind);
        }
        let sent = request.send().await;
        if let Err(e) = sent {
            tracing::warn!(job_id = %event.job_id, kind = event.kind, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "lifecycle event not sent");
        }
    }
}
