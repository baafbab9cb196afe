//! Sending a finished job's webhook: one attempt of a delivery (`attempt`), and the sweep that
//! sends what is due when its own retry message was lost (`sweep`).
//!
//! An attempt claims its delivery first (`db::webhooks::claim`), so the retry message and the
//! sweep never send it twice at once, then checks the target's addresses again (a name may have
//! moved somewhere private since it was accepted), POSTs the signed `CalculationFinished` body,
//! and records the outcome. A failed attempt is retried after `backoff` until `MAX_ATTEMPTS`;
//! a target the policy refuses is given up at once, since retrying cannot change that.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_postgres::GenericClient;
use url::Url;
use uuid::Uuid;

use super::{backoff, deliver, resolve_target, user_secret, WebhookError};
use crate::db::webhooks::{self as rows, Delivery};
use crate::db::DbError;
use crate::events::Event;
use crate::Context;

/// Attempts of one delivery: about 8.5 minutes of retries (2 s, 4 s … 256 s apart).
pub const MAX_ATTEMPTS: i32 = 9;
/// The receiver's time to answer one attempt.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claimed attempt is held: the lookup, the POST, and a margin. A deliverer that
/// has not recorded its outcome by then is presumed dead, and the delivery is due again.
const LEASE: Duration = Duration::from_secs(45);
/// Deliveries the sweep sends per run, and at once.
const SWEEP_LIMIT: i64 = 16;
const SWEEP_CONCURRENCY: usize = 4;

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing was sent: the delivery is not pending, not due yet, or taken by another deliverer.
    NotDue,
    Delivered {
        attempt: i32,
        status: u16,
    },
    /// Failed; sent again after `after`.
    Retry {
        attempt: i32,
        after: Duration,
        status: Option<u16>,
        error: String,
    },
    /// Failed for good: the attempts ran out, or the target is refused.
    GaveUp {
        attempt: i32,
        status: Option<u16>,
        error: String,
    },
}

/// One attempt of delivery `id`, if it is due.
pub async fn attempt(
    state: &Context,
    db: &impl GenericClient,
    id: Uuid,
) -> Result<Outcome, DbError> {
    let Some(delivery) = rows::claim(db, id, LEASE, MAX_ATTEMPTS).await? else {
        return Ok(Outcome::NotDue);
    };
    let outcome = send(state, &delivery).await;
    match &outcome {
        Outcome::NotDue => {}
        Outcome::Delivered { status, .. } => rows::delivered(db, id, *status as i32).await?,
        Outcome::Retry {
            after,
            status,
            error,
            ..
        } => rows::retry_later(db, id, status.map(i32::from), error, *after).await?,
        Outcome::GaveUp { status, error, .. } => {
            rows::give_up(db, id, status.map(i32::from), error).await?
        }
    }
    tracing::info!(
        delivery_id = %id,
        job_id = %delivery.job_id,
        outcome = ?outcome,
        "webhook attempt"
    );
    Ok(outcome)
}

/// The attempt itself, from a claimed delivery; never fails, its failure is its outcome.
async fn send(state: &Context, delivery: &Delivery) -> Outcome {
    let attempt = delivery.attempts;
    let give_up = |status, error: String| Outcome::GaveUp {
        attempt,
        status,
        error,
    };
    let failed = |status, error: String| {
        if attempt >= MAX_ATTEMPTS {
            Outcome::GaveUp {
                attempt,
                status,
                error: format!("{error} (attempt {attempt} of {MAX_ATTEMPTS}: given up)"),
            }
        } else {
            Outcome::Retry {
                attempt,
                after: backoff(attempt as u32),
                status,
                error,
            }
        }
    };

    let Some(key) = &state.config.webhook_secret else {
        return give_up(
            None,
            "webhooks are no longer enabled (WEBHOOK_SECRET)".into(),
        );
    };
    let body = match Event::from_outbox(
        "CalculationFinished",
        delivery.event_id,
        delivery.occurred_at,
        delivery.snapshot.clone(),
    ) {
        Ok(event) => event.detail().to_string(),
        Err(e) => return give_up(None, format!("the job's event could not be built: {e}")),
    };
    let url = match Url::parse(&delivery.url) {
        Ok(url) => url,
        Err(e) => return give_up(None, format!("callback_url is not a valid URL ({e})")),
    };
    let addrs = match resolve_target(&url, &state.config.webhook_policy).await {
        Ok(addrs) => addrs,
        // A name that does not resolve now may later; anything else is the policy's answer.
        Err(e @ WebhookError::Unresolvable { .. }) => return failed(None, e.to_string()),
        Err(e) => return give_up(None, e.to_string()),
    };
    let secret = user_secret(key, delivery.user_id);
    let sent = deliver(
        &url,
        &addrs,
        &secret,
        &delivery.event_id.to_string(),
        body.as_bytes(),
        TIMEOUT,
    )
    .await;
    match (sent.status, sent.error) {
        (Some(status), None) => Outcome::Delivered { attempt, status },
        (status, Some(error)) => failed(status, error),
        (None, None) => failed(None, "no answer".into()),
    }
}

/// Sends the deliveries that are due (their retry message lost, or their deliverer dead), and
/// gives up the ones whose last attempt never reported. Returns each attempt's outcome.
pub async fn sweep(state: &Context) -> Result<Vec<(Uuid, Outcome)>, DbError> {
    let db = state.db.get().await.map_err(DbError::from)?;
    let exhausted = rows::give_up_exhausted(&**db, MAX_ATTEMPTS).await?;
    if exhausted > 0 {
        tracing::warn!(
            exhausted,
            "webhooks given up: their last attempt never reported"
        );
    }
    let due = rows::due(&**db, MAX_ATTEMPTS, SWEEP_LIMIT).await?;
    drop(db);
    let results: Vec<Result<(Uuid, Outcome), DbError>> =
        futures_util::stream::iter(due.into_iter().map(|id| async move {
            let db = state.db.get().await.map_err(DbError::from)?;
            Ok((id, attempt(state, &**db, id).await?))
        }))
        .buffer_unordered(SWEEP_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// The retry message of a delivery (on the webhooks queue, delayed by its backoff): the one
/// place that builds it.
pub fn retry_message(delivery_id: Uuid) -> String {
    serde_json::json!({"type": "WebhookDue", "version": 1, "delivery_id": delivery_id}).to_string()
}

/// The delivery a [`retry_message`] names; `None` for any other message.
pub fn retry_of(message: &serde_json::Value) -> Option<Uuid> {
    (message["type"] == "WebhookDue")
        .then(|| message["delivery_id"].as_str()?.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_messages_round_trip() {
        let id = Uuid::new_v4();
        let body: serde_json::Value = serde_json::from_str(&retry_message(id)).unwrap();
        assert_eq!(retry_of(&body), Some(id));
        assert_eq!(
            retry_of(&serde_json::json!({"type": "DispatchJob", "job_id": id})),
            None
        );
        assert_eq!(
            retry_of(&serde_json::json!({"type": "WebhookDue", "delivery_id": 3})),
            None
        );
    }

    #[test]
    fn the_attempts_span_minutes_not_hours() {
        let total: Duration = (1..MAX_ATTEMPTS as u32).map(backoff).sum();
        assert!(total > Duration::from_secs(300), "{total:?}");
        assert!(total < Duration::from_secs(900), "{total:?}");
    }
}
