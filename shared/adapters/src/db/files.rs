//! The `files` table: metadata of the objects stored at `{user_id}/{filename}`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use super::{outbox, DbError};

/// A stored file (`pending` while its upload is under way, then `available`; `altered` if its
/// object changed after it was recorded).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[schema(as = File)]
pub struct FileRow {
    pub id: Uuid,
    #[serde(skip)]
    pub user_id: Uuid,
    pub filename: String,
    #[serde(skip)]
    pub s3_key: String,
    pub content_type: String,
    /// Its size in bytes, once stored.
    pub size_bytes: Option<i64>,
    pub sha256: Option<String>,
    pub etag: Option<String>,
    /// `pending` (reserved, not uploaded yet), `available`, or `altered` (its object changed
    /// after it was recorded: neither served nor usable as an input; `altered_reason` says how).
    #[schema(pattern = "^(pending|available|altered)$")]
    pub status: String,
    /// Why the file is `altered`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub altered_reason: Option<String>,
    /// What a presigned upload's client declared (its object must match to complete).
    #[serde(skip)]
    pub expected: Option<Expected>,
    #[serde(skip)]
    pub upload_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<&Row> for FileRow {
    fn from(r: &Row) -> Self {
        FileRow {
            id: r.get("id"),
            user_id: r.get("user_id"),
            filename: r.get("filename"),
            s3_key: r.get("s3_key"),
            content_type: r.get("content_type"),
            size_bytes: r.get("size_bytes"),
            sha256: r.get("sha256"),
            etag: r.get("etag"),
            status: r.get("status"),
            altered_reason: r.get("altered_reason"),
            expected: match (r.get("expected_size"), r.get("expected_sha256")) {
                (Some(size_bytes), Some(sha256)) => Some(Expected { size_bytes, sha256 }),
                _ => None,
            },
            upload_id: r.get("upload_id"),
            created_at: r.get("created_at"),
            updated_at: r.get("updated_at"),
            completed_at: r.get("completed_at"),
        }
    }
}

/// The size and sha256 (hex) a presigned upload's client declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub size_bytes: i64,
    pub sha256: String,
}

/// What a finished upload proved about its object.
pub struct Stored<'a> {
    pub size_bytes: i64,
    pub sha256: &'a str,
    pub etag: Option<&'a str>,
    pub content_type: &'a str,
}

/// Reserves `filename` for the user as a pending row before its object is written, bound to what
/// its client declared (`expected`, for a presigned upload). A pending reservation of the same
/// name is taken over (a new `upload_id`); an available or altered file is kept, and `None` is
/// returned so the caller answers 409.
pub async fn reserve(
    db: &impl GenericClient,
    user_id: Uuid,
    filename: &str,
    s3_key: &str,
    content_type: &str,
    expected: Option<&Expected>,
) -> Result<Option<FileRow>, DbError> {
    let (size, sha256) = (
        expected.map(|e| e.size_bytes),
        expected.map(|e| e.sha256.as_str()),
    );
    let row = db
        .query_opt(
            "INSERT INTO files (user_id, filename, s3_key, content_type, expected_size, expected_sha256)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (user_id, filename) DO UPDATE SET
                 content_type = EXCLUDED.content_type,
                 expected_size = EXCLUDED.expected_size,
                 expected_sha256 = EXCLUDED.expected_sha256,
                 upload_id = gen_random_uuid(),
                 updated_at = now()
             WHERE files.status = 'pending'
             RETURNING *",
            &[&user_id, &filename, &s3_key, &content_type, &size, &sha256],
        )
        .await?;
    Ok(row.as_ref().map(FileRow::from))
}

/// Marks a reservation available once its object is known to exist, and records its
/// `FileUploaded` event. `None` if another upload
/// took the reservation over meanwhile (or it vanished).
pub async fn mark_available(
    db: &impl GenericClient,
    reserved: &FileRow,
    stored: &Stored<'_>,
) -> Result<Option<FileRow>, DbError> {
    let row = db
        .query_opt(
            &format!(
                "WITH changed AS (
                     UPDATE files SET status = 'available', size_bytes = $3, sha256 = $4,
                         etag = $5, content_type = $6, completed_at = now(), updated_at = now()
                     WHERE id = $1 AND upload_id = $2 AND status = 'pending'
                     RETURNING *)
                 {}
                 SELECT * FROM changed",
                outbox::emit("FileUploaded", "changed")
            ),
            &[
                &reserved.id,
                &reserved.upload_id,
                &stored.size_bytes,
                &stored.sha256,
                &stored.etag,
                &stored.content_type,
            ],
        )
        .await?;
    Ok(row.as_ref().map(FileRow::from))
}

/// Marks an available file `altered`: its object is no longer the one recorded. The row keeps
/// what was recorded; `None` if it was not available.
pub async fn mark_altered(
    db: &impl GenericClient,
    file: &FileRow,
    reason: &str,
) -> Result<Option<FileRow>, DbError> {
    let row = db
        .query_opt(
            "UPDATE files SET status = 'altered', altered_reason = $2, updated_at = now()
             WHERE id = $1 AND status = 'available' RETURNING *",
            &[&file.id, &reason],
        )
        .await?;
    Ok(row.as_ref().map(FileRow::from))
}

/// Drops a reservation whose object could not be written (only if nobody took it over).
pub async fn release(db: &impl GenericClient, reserved: &FileRow) -> Result<(), DbError> {
    db.execute(
        "DELETE FROM files WHERE id = $1 AND upload_id = $2 AND status = 'pending'",
        &[&reserved.id, &reserved.upload_id],
    )
    .await?;
    Ok(())
}

/// The user's file, pending or available; another user's file is `None`, like a missing one.
pub async fn get(
    db: &impl GenericClient,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<FileRow>, DbError> {
    let row = db
        .query_opt(
            "SELECT * FROM files WHERE id = $1 AND user_id = $2",
            &[&id, &user_id],
        )
        .await?;
    Ok(row.as_ref().map(FileRow::from))
}

/// The user's available and altered files (so an owner sees what changed), newest first; `limit + 1` rows are read to know if more follow.
pub async fn list(
    db: &impl GenericClient,
    user_id: Uuid,
    limit: i64,
    offset: i64,
) -> Result<Vec<FileRow>, DbError> {
    let rows = db
        .query(
            "SELECT * FROM files WHERE user_id = $1 AND status IN ('available', 'altered')
             ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
            &[&user_id, &limit, &offset],
        )
        .await?;
    Ok(rows.iter().map(FileRow::from).collect())
}

/// The row of an object key, whatever its status (an S3 event names only the key).
pub async fn by_key(db: &impl GenericClient, s3_key: &str) -> Result<Option<FileRow>, DbError> {
    let row = db
        .query_opt("SELECT * FROM files WHERE s3_key = $1", &[&s3_key])
        .await?;
    Ok(row.as_ref().map(FileRow::from))
}

/// Records an object that has no row (before it is removed): its id.
pub async fn record_orphan(
    db: &impl GenericClient,
    s3_key: &str,
    size_bytes: Option<i64>,
    etag: Option<&str>,
) -> Result<Uuid, DbError> {
    let row = db
        .query_one(
            "INSERT INTO orphan_objects (s3_key, size_bytes, etag) VALUES ($1, $2, $3) RETURNING id",
            &[&s3_key, &size_bytes, &etag],
        )
        .await?;
    Ok(row.get("id"))
}

/// The orphan's object is gone from the bucket.
pub async fn orphan_removed(db: &impl GenericClient, id: Uuid) -> Result<(), DbError> {
    db.execute(
        "UPDATE orphan_objects SET removed_at = now() WHERE id = $1",
        &[&id],
    )
    .await?;
    Ok(())
}

/// The orphans recorded for a key: `(removed)` each, oldest first.
pub async fn orphans_of(db: &impl GenericClient, s3_key: &str) -> Result<Vec<bool>, DbError> {
    let rows = db
        .query(
            "SELECT removed_at IS NOT NULL AS removed FROM orphan_objects
             WHERE s3_key = $1 ORDER BY found_at",
            &[&s3_key],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get("removed")).collect())
}
