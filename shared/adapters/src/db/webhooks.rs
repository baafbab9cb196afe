//! The `webhook_deliveries` table: one signed POST per finished job that named a `callback_url`.
//!
//! A delivery is recorded by the statement that records its job's final state ([`record`], a
//! CTE beside the outbox's), so it exists exactly when that state was committed. A deliverer
//! takes it with [`claim`], one conditional UPDATE: two deliverers (the retry message and the
//! sweep) never send the same attempt, and a deliverer that dies mid-attempt leaves it due again
//! once the claim's lease has passed. Each claim counts as an attempt, so a delivery that kills
//! its deliverer cannot be tried forever.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::{GenericClient, Row};
use utoipa::ToSchema;
use uuid::Uuid;

use super::DbError;

/// The CTE (to append after the outbox's `emitted`, see `outbox::emit`) recording a delivery
/// for each row of `rows` with a `callback_url`, carrying that row's event of `events`.
pub(crate) fn record(events: &str, rows: &str) -> String {
    format!(
        ", webhooked AS (INSERT INTO webhook_deliveries
                 (job_id, user_id, url, event_id, occurred_at, snapshot)
             SELECT r.id, r.user_id, r.callback_url, e.id, e.created_at, e.snapshot
             FROM {rows} r JOIN {events} e ON e.subject_id = r.id
             WHERE r.callback_url IS NOT NULL
             ON CONFLICT DO NOTHING)"
    )
}

/// A claimed delivery: what its attempt sends, and where.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: Uuid,
    pub job_id: Uuid,
    pub user_id: Uuid,
    pub url: String,
    /// The CalculationFinished event's id: the `webhook-id` of every attempt.
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub snapshot: Value,
    /// This attempt's number, from 1.
    pub attempts: i32,
}

impl From<&Row> for Delivery {
    fn from(r: &Row) -> Self {
        Delivery {
            id: r.get("id"),
            job_id: r.get("job_id"),
            user_id: r.get("user_id"),
            url: r.get("url"),
            event_id: r.get("event_id"),
            occurred_at: r.get("occurred_at"),
            snapshot: r.get("snapshot"),
            attempts: r.get("attempts"),
        }
    }
}

/// A job's webhook as its owner sees it (`GET /compute/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct WebhookStatus {
    pub url: String,
    /// `pending` (to be sent, or sent again after a failure), `delivered` (a 2xx answer), or
    /// `failed` (given up: the attempts ran out, or the target is not allowed).
    #[schema(pattern = "^(pending|delivered|failed)$")]
    pub state: String,
    pub attempts: i32,
    /// The HTTP status of the last answer; none when the receiver did not answer.
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// While pending: when it is sent next.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// The SQL expression of a joined delivery `w` as [`WebhookStatus`]'s JSON (null without one);
/// a macro so that `jobs`' SELECT can be one literal.
macro_rules! status_json {
    () => {
        "CASE WHEN w.id IS NULL THEN NULL ELSE jsonb_build_object(
            'url', w.url, 'state', w.state, 'attempts', w.attempts, 'last_status', w.last_status,
            'last_error', w.last_error, 'last_attempt_at', w.last_attempt_at,
            'next_attempt_at', CASE WHEN w.state = 'pending' THEN w.next_attempt_at END,
            'delivered_at', w.delivered_at) END"
    };
}
pub(crate) use status_json;
const STATUS_JSON: &str = status_json!();

impl WebhookStatus {
    /// From a row's [`STATUS_JSON`] column named `webhook`, if it has one.
    pub(crate) fn from_row(r: &Row) -> Option<Self> {
        let value: Option<Value> = r.try_get("webhook").ok().flatten();
        value.and_then(|v| serde_json::from_value(v).ok())
    }
}

/// Takes delivery `id` for one attempt if it is pending, due, and has attempts left: counts the
/// attempt and holds it for `lease` (past which it is due again, its deliverer presumed dead).
pub async fn claim(
    db: &impl GenericClient,
    id: Uuid,
    lease: std::time::Duration,
    max_attempts: i32,
) -> Result<Option<Delivery>, DbError> {
    let row = db
        .query_opt(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, last_attempt_at = now(),
                 next_attempt_at = now() + make_interval(secs => $2)
             WHERE id = $1 AND state = 'pending' AND next_attempt_at <= now()
                 AND attempts < $3
             RETURNING *",
            &[&id, &lease.as_secs_f64(), &max_attempts],
        )
        .await?;
    Ok(row.as_ref().map(Delivery::from))
}

/// The delivery carrying event `event_id`, if its job named a `callback_url`.
pub async fn of_event(db: &impl GenericClient, event_id: Uuid) -> Result<Option<Uuid>, DbError> {
    let row = db
        .query_opt(
            "SELECT id FROM webhook_deliveries WHERE event_id = $1",
            &[&event_id],
        )
        .await?;
    Ok(row.map(|r| r.get("id")))
}

/// A job's webhook, if it has one.
pub async fn of_job(
    db: &impl GenericClient,
    job_id: Uuid,
) -> Result<Option<WebhookStatus>, DbError> {
    let row = db
        .query_opt(
            &format!(
                "SELECT {STATUS_JSON} AS webhook FROM webhook_deliveries w WHERE w.job_id = $1"
            ),
            &[&job_id],
        )
        .await?;
    Ok(row.as_ref().and_then(WebhookStatus::from_row))
}

/// The attempt was answered with a 2xx.
pub async fn delivered(db: &impl GenericClient, id: Uuid, status: i32) -> Result<(), DbError> {
    db.execute(
        "UPDATE webhook_deliveries SET state = 'delivered', last_status = $2, last_error = NULL,
             delivered_at = now()
         WHERE id = $1 AND state = 'pending'",
        &[&id, &status],
    )
    .await?;
    Ok(())
}

/// The attempt failed: sent again after `after`.
pub async fn retry_later(
    db: &impl GenericClient,
    id: Uuid,
    status: Option<i32>,
    error: &str,
    after: std::time::Duration,
) -> Result<(), DbError> {
    db.execute(
        "UPDATE webhook_deliveries SET last_status = $2, last_error = $3,
             next_attempt_at = now() + make_interval(secs => $4)
         WHERE id = $1 AND state = 'pending'",
        &[&id, &status, &error, &after.as_secs_f64()],
    )
    .await?;
    Ok(())
}

/// The attempt failed and no other will be made.
pub async fn give_up(
    db: &impl GenericClient,
    id: Uuid,
    status: Option<i32>,
    error: &str,
) -> Result<(), DbError> {
    db.execute(
        "UPDATE webhook_deliveries SET state = 'failed', last_status = $2, last_error = $3
         WHERE id = $1 AND state = 'pending'",
        &[&id, &status, &error],
    )
    .await?;
    Ok(())
}

/// Pending deliveries due now, the longest-waiting first.
pub async fn due(
    db: &impl GenericClient,
    max_attempts: i32,
    limit: i64,
) -> Result<Vec<Uuid>, DbError> {
    let rows = db
        .query(
            "SELECT id FROM webhook_deliveries
             WHERE state = 'pending' AND next_attempt_at <= now() AND attempts < $1
             ORDER BY next_attempt_at LIMIT $2",
            &[&max_attempts, &limit],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get("id")).collect())
}

/// Gives up the deliveries whose last attempt's deliverer died with no attempt left (a claim
/// counts the attempt; only a deliverer that lives records the outcome).
pub async fn give_up_exhausted(db: &impl GenericClient, max_attempts: i32) -> Result<u64, DbError> {
    Ok(db
        .execute(
            "UPDATE webhook_deliveries SET state = 'failed',
                 last_error = coalesce(last_error || '; ', '')
                     || 'the last attempt never reported its outcome'
             WHERE state = 'pending' AND attempts >= $1 AND next_attempt_at <= now()",
            &[&max_attempts],
        )
        .await?)
}
