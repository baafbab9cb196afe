//! `webhooks`: sends the signed webhook of each finished job that named a `callback_url`.
//!
//! - The bus's `CalculationFinished` events (rule `WebhooksRule` → SQS) start the first attempt
//!   of the delivery their job's final state recorded (`db::webhooks`).
//! - A failed attempt puts a retry message on the same queue, delayed by its backoff.
//! - The schedule (every minute) runs the sweep: what is due and whose message was lost.
//!
//! Each attempt claims its delivery first (`shared::webhooks::send`), so a message delivered
//! twice, or a sweep racing a retry message, sends one attempt. A record whose database was
//! unreachable is a batch item failure and comes back.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use mecapy_shared::db::{self, DbError};
use mecapy_shared::events::Event;
use mecapy_shared::http::error_chain;
use mecapy_shared::queue::Queue;
use mecapy_shared::sqs_batch;
use mecapy_shared::webhooks::send::{self, Outcome};
use mecapy_usecases::Context;
use serde_json::Value;
use uuid::Uuid;

/// Records of one batch handled at once (each waits on a receiver for up to `send::TIMEOUT`).
const CONCURRENCY: usize = 4;

/// Where retries wait for their backoff.
pub struct RetryQueue(Queue);

impl RetryQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: &str) -> Self {
        RetryQueue(Queue::new(client, url))
    }

    async fn send(&self, delivery: Uuid, after: Duration) -> Result<(), String> {
        self.0
            .send(send::retry_message(delivery), after)
            .await
            .map_err(|e| format!("webhooks queue: {e}"))
    }
}

pub struct Webhooks {
    pub state: Context,
    /// None: a retry waits for the sweep.
    pub retries: Option<RetryQueue>,
}

impl Webhooks {
    /// An SQS batch (its response lists the records to deliver again) or the schedule's
    /// invocation (the sweep).
    pub async fn handle(&self, payload: Value) -> Result<Value, lambda_runtime::Error> {
        if payload.get("Records").is_some() {
            let event: SqsEvent = serde_json::from_value(payload)?;
            let response = sqs_batch::handle(event, CONCURRENCY, "webhook", |message| async move {
                self.handle_message(&message).await
            })
            .await;
            return Ok(serde_json::to_value(response)?);
        }
        let outcomes = send::sweep(&self.state)
            .await
            .map_err(|e| error_chain(&e))?;
        let mut retried = 0;
        for (id, outcome) in &outcomes {
            if let Outcome::Retry { after, .. } = outcome {
                retried += 1;
                if let Err(reason) = self.retry(*id, *after).await {
                    tracing::warn!(delivery_id = %id, reason, "retry left to the next sweep");
                }
            }
        }
        tracing::info!(attempts = outcomes.len(), retried, "webhook sweep");
        Ok(serde_json::json!({"attempts": outcomes.len(), "retried": retried}))
    }

    /// One record: a `CalculationFinished` event or a retry message. Returns the attempt's
    /// outcome (none when the record names no delivery).
    pub async fn handle_message(&self, message: &SqsMessage) -> Result<Option<Outcome>, String> {
        let body = message.body.as_deref().unwrap_or_default();
        let Some(target) = target(body) else {
            tracing::error!(
                body,
                "neither a CalculationFinished event nor a webhook retry: acknowledged"
            );
            return Ok(None);
        };
        let db = self
            .state
            .db
            .get()
            .await
            .map_err(|e| error_chain(&DbError::from(e)))?;
        let id = match target {
            Target::Delivery(id) => id,
            Target::Event(event_id) => {
                match db::webhooks::of_event(&**db, event_id)
                    .await
                    .map_err(|e| error_chain(&e))?
                {
                    Some(id) => id,
                    // Its job named no callback_url.
                    None => return Ok(None),
                }
            }
        };
        let outcome = send::attempt(&self.state, &**db, id)
            .await
            .map_err(|e| error_chain(&e))?;
        drop(db);
        if let Outcome::Retry { after, .. } = &outcome {
            // Not sent: the record comes back, and by then the sweep may have sent it anyway.
            self.retry(id, *after).await?;
        }
        Ok(Some(outcome))
    }

    async fn retry(&self, id: Uuid, after: Duration) -> Result<(), String> {
        match &self.retries {
            Some(queue) => queue.send(id, after).await,
            None => Ok(()),
        }
    }
}

/// What a record asks for.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// The first attempt of the delivery carrying this `CalculationFinished` event, if any.
    Event(Uuid),
    /// The next attempt of this delivery.
    Delivery(Uuid),
}

fn target(body: &str) -> Option<Target> {
    let value: Value = serde_json::from_str(body).ok()?;
    if let Some(id) = send::retry_of(&value) {
        return Some(Target::Delivery(id));
    }
    let kind = value["detail-type"].as_str()?;
    match Event::parse(kind, value["detail"].clone()).ok()? {
        Event::CalculationFinished(finished) => Some(Target::Event(finished.event_id)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_name_their_delivery_or_event() {
        let id = Uuid::new_v4();
        assert_eq!(target(&send::retry_message(id)), Some(Target::Delivery(id)));
        assert_eq!(target("not json"), None);
        assert_eq!(
            target(r#"{"detail-type": "FileUploaded", "detail": {}}"#),
            None
        );
        assert_eq!(target(r#"{"type": "DispatchJob"}"#), None);
    }
}
