//! The stack's EventBridge bus: publishing the outbox.
//!
//! Events are never sent from a handler's own code path: the state change wrote its outbox row
//! (`db::outbox`), and [`EventBus::drain`] sends the due rows after the request (or in the
//! dispatcher's sweep), so an event is only ever published once its state is committed, and a
//! send that fails is retried later instead of failing the request.

use std::time::Duration;

use mecapy_domain::backoff::backoff;

use crate::db::{outbox, DbError, Pool};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use mecapy_domain::events::{self, Event};

/// PutEvents takes at most ten entries.
const BATCH: i64 = 10;
/// One drain sends at most this many batches (the rest waits for the next drain).
const MAX_BATCHES: usize = 10;
/// Attempts of one PutEvents call before its rows are left for a later drain.
const CALL_ATTEMPTS: u32 = 3;

#[derive(Clone)]
pub struct EventBus {
    client: aws_sdk_eventbridge::Client,
    name: String,
}

/// What one drain did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    pub published: usize,
    pub failed: usize,
}

impl EventBus {
    pub fn new(config: &aws_config::SdkConfig, name: &str) -> Self {
        Self::with_client(crate::sdk_client!(aws_sdk_eventbridge, config), name)
    }

    pub fn with_client(client: aws_sdk_eventbridge::Client, name: &str) -> Self {
        EventBus {
            client,
            name: name.to_string(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends the due outbox rows, ten at a time, until none is left (or `MAX_BATCHES`).
    pub async fn drain(&self, pool: &Pool) -> Result<Drained, DbError> {
        let mut total = Drained::default();
        for _ in 0..MAX_BATCHES {
            let (batch, done) = self.drain_batch(pool).await?;
            total.published += batch.published;
            total.failed += batch.failed;
            if done {
                break;
            }
        }
        Ok(total)
    }

    /// One batch in one transaction: the rows stay locked while they are sent, so no other
    /// publisher sends them too. `done` when fewer than a full batch was due.
    async fn drain_batch(&self, pool: &Pool) -> Result<(Drained, bool), DbError> {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        let due = outbox::lock_due(&*tx, BATCH).await?;
        let done = (due.len() as i64) < BATCH;
        let mut drained = Drained::default();
        let mut sendable = Vec::new();
        for row in due {
            match Event::from_outbox(&row.kind, row.id, row.created_at, row.snapshot.clone()) {
                Ok(event) => sendable.push(event),
                Err(e) => {
                    tracing::error!(event_id = %row.id, kind = row.kind, error = %e, "outbox row is not a valid event");
                    outbox::mark_failed(&*tx, row.id, &e.to_string()).await?;
                    drained.failed += 1;
                }
            }
        }
        if !sendable.is_empty() {
            let results = self.put(&sendable).await;
            let mut published = Vec::new();
            for (event, result) in sendable.iter().zip(results) {
                match result {
                    Ok(()) => published.push(event.event_id()),
                    Err(why) => {
                        tracing::warn!(event_id = %event.event_id(), kind = event.kind(), error = why, "event not published; retried later");
                        outbox::mark_failed(&*tx, event.event_id(), &why).await?;
                        drained.failed += 1;
                    }
                }
            }
            drained.published += published.len();
            outbox::mark_published(&*tx, &published).await?;
        }
        tx.commit().await?;
        Ok((drained, done))
    }

    /// Sends up to ten events; one result per event, in order.
    async fn put(&self, batch: &[Event]) -> Vec<Result<(), String>> {
        let entries: Vec<PutEventsRequestEntry> = batch.iter().map(|e| self.entry(e)).collect();
        let mut last_error = String::new();
        for attempt in 0..CALL_ATTEMPTS {
            if attempt > 0 {
                let wait = backoff(Duration::from_millis(200), Duration::from_secs(5), attempt);
                tokio::time::sleep(wait).await;
            }
            match self
                .client
                .put_events()
                .set_entries(Some(entries.clone()))
                .send()
                .await
            {
                Ok(out) => {
                    let results = out.entries();
                    return (0..batch.len())
                        .map(|i| match results.get(i) {
                            Some(r) if r.error_code().is_none() && r.event_id().is_some() => Ok(()),
                            Some(r) => Err(format!(
                                "{}: {}",
                                r.error_code().unwrap_or("no event id"),
                                r.error_message().unwrap_or("")
                            )),
                            None => Err("no result for the entry".into()),
                        })
                        .collect();
                }
                Err(e) => {
                    last_error = aws_sdk_eventbridge::error::DisplayErrorContext(&e).to_string();
                }
            }
        }
        batch.iter().map(|_| Err(last_error.clone())).collect()
    }

    fn entry(&self, event: &Event) -> PutEventsRequestEntry {
        PutEventsRequestEntry::builder()
            .event_bus_name(&self.name)
            .source(events::SOURCE)
            .detail_type(event.kind())
            .detail(event.detail().to_string())
            .build()
    }
}
