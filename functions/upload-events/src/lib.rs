//! `upload-events`: S3's "Object Created" events for the upload bucket, through EventBridge and
//! an SQS queue. They make the bucket, not the client, the source of truth for uploads:
//!
//! - an object whose row is `pending` (a presigned PUT whose client never called
//!   `/files/{id}/complete`) is finalised exactly as `/complete` would: size checked, sha256
//!   recorded, `available`, and its `FileUploaded` event;
//! - an object whose row is already `available` changes nothing (the event came second, or twice);
//! - an object no row reserved (written to the bucket directly) is recorded in `orphan_objects`
//!   and removed, so no object lives without its row.
//!
//! Keys outside the users' space (`jobs/`, `results/`) are not uploads and are acknowledged
//! untouched. A record whose storage or database was unreachable is a batch item failure: SQS
//! delivers it again, then moves it to the dead-letter queue.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use mecapy_shared::db::{self, files::FileRow, DbError};
use mecapy_shared::http::error_chain;
use mecapy_shared::{sqs_batch, storage, uploads};
use mecapy_usecases::Context;
use serde::Deserialize;
use tokio_postgres::GenericClient;

/// Records of one batch handled at once (each holds a database connection while it works).
const CONCURRENCY: usize = 4;

/// What became of one "Object Created" event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A pending upload is now available.
    Completed,
    /// The file was available already: nothing to do.
    AlreadyAvailable,
    /// The object of an available (or already altered) file is no longer the one recorded:
    /// the file is `altered`, neither served nor used as an input.
    Altered,
    /// The upload was refused as `/complete` would refuse it (too large, taken over, or its
    /// object gone again); the reason is logged.
    Refused(String),
    /// No row reserved the object: it was recorded as an orphan and removed.
    OrphanRemoved,
    /// The object the event names is no longer there (or was replaced: the newer object has its
    /// own event).
    Gone,
    /// Not an upload: another bucket, a key outside the users' space, or an unreadable message.
    Ignored(String),
}

/// Handles a batch; the records that should come back are its item failures.
pub async fn handle(state: Context, event: SqsEvent) -> SqsBatchResponse {
    let state = &state;
    // The events the records wrote (uploads finished, jobs queued) are published after.
    sqs_batch::handle_and_publish(
        state,
        event,
        CONCURRENCY,
        "upload event",
        |message| async move { handle_message(state, &message).await },
    )
    .await
}

async fn handle_message(state: &Context, message: &SqsMessage) -> Result<Outcome, String> {
    let body = message.body.as_deref().unwrap_or_default();
    let outcome = match ObjectCreated::parse(body) {
        Ok(created) => handle_object(state, &created).await?,
        Err(reason) => {
            tracing::error!(reason, "unreadable upload event acknowledged");
            Outcome::Ignored(reason)
        }
    };
    tracing::info!(outcome = ?outcome, "upload event handled");
    Ok(outcome)
}

/// One object's event: finalise its upload, leave it, or remove it as an orphan.
pub async fn handle_object(state: &Context, created: &ObjectCreated) -> Result<Outcome, String> {
    if created.bucket != state.storage.bucket() {
        return Ok(Outcome::Ignored(format!(
            "bucket {:?} is not the upload bucket",
            created.bucket
        )));
    }
    let candidates: Vec<String> = created
        .keys()
        .into_iter()
        .filter(|k| storage::is_user_file_key(k))
        .collect();
    if candidates.is_empty() {
        return Ok(Outcome::Ignored(format!(
            "{:?} is not a user's file",
            created.key
        )));
    }
    let db = state.db.get().await.map_err(|e| retry(DbError::from(e)))?;
    for key in &candidates {
        if let Some(row) = db::files::by_key(&**db, key).await.map_err(retry)? {
            return finish(state, &**db, row, created).await;
        }
    }
    for key in &candidates {
        let Some(info) = state.storage.head(key).await.map_err(retry)? else {
            continue;
        };
        if created
            .etag
            .as_deref()
            .zip(info.etag.as_deref())
            .is_some_and(|(event, now)| unquote(event) != unquote(now))
        {
            // Replaced since: the object now there has its own event.
            return Ok(Outcome::Gone);
        }
        // Reserved meanwhile (an upload started between the lookup and the HEAD): not an orphan.
        if let Some(row) = db::files::by_key(&**db, key).await.map_err(retry)? {
            return finish(state, &**db, row, created).await;
        }
        let orphan = db::files::record_orphan(&**db, key, Some(info.size), info.etag.as_deref())
            .await
            .map_err(retry)?;
        state.storage.delete(key).await.map_err(retry)?;
        db::files::orphan_removed(&**db, orphan)
            .await
            .map_err(retry)?;
        tracing::warn!(key, size = info.size, "object without a row removed");
        return Ok(Outcome::OrphanRemoved);
    }
    Ok(Outcome::Gone)
}

async fn finish(
    state: &Context,
    db: &impl GenericClient,
    row: FileRow,
    created: &ObjectCreated,
) -> Result<Outcome, String> {
    if row.status == "altered" {
        return Ok(Outcome::Altered);
    }
    if row.status == "available" {
        return recorded_or_altered(state, db, row, created).await;
    }
    match uploads::finalise(state, db, row).await {
        Ok(_) => Ok(Outcome::Completed),
        // The upload can never complete (too large, its name taken meanwhile): not retried.
        Err(e) if e.is_refusal() => Ok(Outcome::Refused(e.to_string())),
        Err(e) => Err(error_chain(&e)),
    }
}

/// An event of an available file's key: its own upload's (the same object), or a write outside
/// the API that replaced it, which marks the file `altered`.
async fn recorded_or_altered(
    state: &Context,
    db: &impl GenericClient,
    row: FileRow,
    created: &ObjectCreated,
) -> Result<Outcome, String> {
    let recorded = row.etag.as_deref().map(unquote);
    let same = |etag: Option<&str>| etag.map(unquote) == recorded;
    if created.etag.is_some() && same(created.etag.as_deref()) {
        return Ok(Outcome::AlreadyAvailable);
    }
    // The event alone does not tell: what is there now does.
    let Some(info) = state.storage.head(&row.s3_key).await.map_err(retry)? else {
        return Ok(Outcome::Gone);
    };
    let etag_matches = recorded.is_none() || same(info.etag.as_deref());
    if etag_matches && Some(info.size) == row.size_bytes {
        return Ok(Outcome::AlreadyAvailable);
    }
    let reason = format!(
        "its object was replaced after it was recorded ({} bytes now; recorded {} bytes, sha256 {})",
        info.size,
        row.size_bytes.unwrap_or_default(),
        row.sha256.as_deref().unwrap_or_default()
    );
    db::files::mark_altered(db, &row, &reason)
        .await
        .map_err(retry)?;
    tracing::warn!(file_id = %row.id, key = row.s3_key, reason, "file altered");
    Ok(Outcome::Altered)
}

fn retry(e: impl std::error::Error) -> String {
    error_chain(&e)
}

fn unquote(etag: &str) -> &str {
    etag.trim_matches('"')
}

/// The part of S3's EventBridge "Object Created" event this function reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectCreated {
    pub bucket: String,
    /// As the event carries it (S3 may percent-encode it).
    pub key: String,
    pub etag: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    source: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    detail: Detail,
}

#[derive(Deserialize)]
struct Detail {
    bucket: Bucket,
    object: Object,
}

#[derive(Deserialize)]
struct Bucket {
    name: String,
}

#[derive(Deserialize)]
struct Object {
    key: String,
    etag: Option<String>,
}

impl ObjectCreated {
    /// Reads an SQS message body holding an EventBridge envelope from `aws.s3`.
    pub fn parse(body: &str) -> Result<Self, String> {
        let envelope: Envelope =
            serde_json::from_str(body).map_err(|e| format!("not an S3 EventBridge event: {e}"))?;
        if envelope.source != "aws.s3" || envelope.detail_type != "Object Created" {
            return Err(format!(
                "not an S3 \"Object Created\" event: {} / {}",
                envelope.source, envelope.detail_type
            ));
        }
        Ok(ObjectCreated {
            bucket: envelope.detail.bucket.name,
            key: envelope.detail.object.key,
            etag: envelope.detail.object.etag,
        })
    }

    /// The keys the event may mean: as given, then percent-decoded (S3 encodes keys in some of
    /// its events, with `+` for a space in its notifications), without repeats.
    pub fn keys(&self) -> Vec<String> {
        let mut keys = vec![self.key.clone()];
        let decoded = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .ok()
                .map(|d| d.into_owned())
        };
        for k in [decoded(&self.key), decoded(&self.key.replace('+', " "))]
            .into_iter()
            .flatten()
        {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(source: &str, detail_type: &str, key: &str) -> String {
        serde_json::json!({
            "version": "0", "id": "e1", "source": source, "detail-type": detail_type,
            "account": "000000000000", "time": "2026-12-03T10:00:00Z", "region": "us-east-1",
            "resources": ["arn:aws:s3:::uploads"],
            "detail": {"version": "0", "bucket": {"name": "uploads"},
                       "object": {"key": key, "size": 3, "etag": "\"abc\""}, "reason": "PutObject"}
        })
        .to_string()
    }

    #[test]
    fn an_object_created_event_is_read() {
        let created = ObjectCreated::parse(&body("aws.s3", "Object Created", "u/a.csv")).unwrap();
        assert_eq!(created.bucket, "uploads");
        assert_eq!(created.key, "u/a.csv");
        assert_eq!(created.etag.as_deref(), Some("\"abc\""));
        assert_eq!(created.keys(), ["u/a.csv"]);
    }

    #[test]
    fn other_events_and_garbage_are_refused_with_a_reason() {
        for bad in [
            body("mecapy", "Object Created", "k"),
            body("aws.s3", "Object Deleted", "k"),
            "{}".to_string(),
            "not json".to_string(),
        ] {
            let err = ObjectCreated::parse(&bad).unwrap_err();
            assert!(err.contains("S3"), "{err}");
        }
    }

    #[test]
    fn encoded_keys_are_also_tried_decoded() {
        let created =
            ObjectCreated::parse(&body("aws.s3", "Object Created", "u/my+data%C3%A9.csv")).unwrap();
        assert_eq!(
            created.keys(),
            ["u/my+data%C3%A9.csv", "u/my+dataé.csv", "u/my dataé.csv"]
        );
    }
}
