//! The `event_outbox` table: the events of committed state changes, until the bus has them.
//!
//! A change that is an event writes its outbox row in the same SQL statement (a data-modifying
//! CTE built by [`emit`]), so the row exists if and only if the change was committed. Publishers
//! take due rows with `FOR UPDATE SKIP LOCKED` (two publishers never send the same row at once),
//! and stamp them published, or failed with a later `next_attempt_at`.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::DbError;

/// A row is given up (left unpublished, visible to an operator) after this many failed sends.
pub const MAX_ATTEMPTS: i32 = 20;

/// The CTE (to append after the statement's own `WITH x AS (...)`) that records one `kind`
/// event per row of `rows`. `kind` is one of `events::KINDS` (checked by the table).
pub(crate) fn emit(kind: &'static str, rows: &str) -> String {
    format!(
        ", emitted AS (INSERT INTO event_outbox (kind, subject_id, snapshot)
             SELECT '{kind}', r.id, to_jsonb(r) FROM {rows} r
             RETURNING id, subject_id, snapshot, created_at)"
    )
}

/// An event waiting for the bus.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: Uuid,
    pub kind: String,
    pub snapshot: Value,
    pub created_at: DateTime<Utc>,
    pub attempts: i32,
}

/// Locks up to `limit` due rows, oldest first, for the caller's transaction.
pub async fn lock_due(db: &impl GenericClient, limit: i64) -> Result<Vec<Pending>, DbError> {
    let rows = db
        .query(
            "SELECT id, kind, snapshot, created_at, attempts FROM event_outbox
             WHERE published_at IS NULL AND next_attempt_at <= now() AND attempts < $2
             ORDER BY created_at, id LIMIT $1 FOR UPDATE SKIP LOCKED",
            &[&limit, &MAX_ATTEMPTS],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Pending {
            id: r.get("id"),
            kind: r.get("kind"),
            snapshot: r.get("snapshot"),
            created_at: r.get("created_at"),
            attempts: r.get("attempts"),
        })
        .collect())
}

pub async fn mark_published(db: &impl GenericClient, ids: &[Uuid]) -> Result<(), DbError> {
    if ids.is_empty() {
        return Ok(());
    }
    db.execute(
        "UPDATE event_outbox SET published_at = now(), attempts = attempts + 1, last_error = NULL
         WHERE id = ANY($1)",
        &[&ids],
    )
    .await?;
    Ok(())
}

/// A failed send: tried again after 2^attempts seconds, at most five minutes.
pub async fn mark_failed(db: &impl GenericClient, id: Uuid, error: &str) -> Result<(), DbError> {
    db.execute(
        "UPDATE event_outbox SET attempts = attempts + 1, last_error = $2,
             next_attempt_at = now() + make_interval(secs => least(power(2, attempts), 300))
         WHERE id = $1",
        &[&id, &error],
    )
    .await?;
    Ok(())
}

/// The events of `subject_id` that never reached the bus (a job that was never accepted).
pub async fn discard_unpublished(db: &impl GenericClient, subject_id: Uuid) -> Result<(), DbError> {
    db.execute(
        "DELETE FROM event_outbox WHERE subject_id = $1 AND published_at IS NULL",
        &[&subject_id],
    )
    .await?;
    Ok(())
}

/// A subject's events, oldest first: `(kind, published)`.
pub async fn of_subject(
    db: &impl GenericClient,
    subject_id: Uuid,
) -> Result<Vec<(String, bool)>, DbError> {
    let rows = db
        .query(
            "SELECT kind, published_at IS NOT NULL AS published FROM event_outbox
             WHERE subject_id = $1 ORDER BY created_at, id",
            &[&subject_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get("kind"), r.get("published")))
        .collect())
}
