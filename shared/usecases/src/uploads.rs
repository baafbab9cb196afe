//! Finishing an upload: a pending row whose object is in the bucket becomes `available`, with
//! the object's size and sha256, and its `FileUploaded` event. `POST /files/{id}/complete` and
//! the object's S3 event (the `upload-events` function) both come here, in either order or at
//! once: whichever is second finds the file available and changes nothing.

use tokio_postgres::GenericClient;

use crate::db::{self, files::FileRow, files::Stored};
use crate::Context;
use mecapy_domain::error::DomainError;

/// Finalises `row` (pending or available) from its object.
///
/// Errors: `Conflict` when the object is not in the bucket yet (or another upload took the
/// reservation over), `PayloadTooLarge` when it exceeds the presigned limit (the object is then
/// removed and the reservation dropped), and the storage's or database's own failures.
pub async fn finalise(
    state: &Context,
    db: &impl GenericClient,
    row: FileRow,
) -> Result<FileRow, DomainError> {
    if row.status == "available" {
        return Ok(row);
    }
    let info = state.storage.head(&row.s3_key).await?.ok_or_else(|| {
        DomainError::Conflict(
            "the object has not been uploaded yet: PUT it to the presigned URL first".into(),
        )
    })?;
    if info.size as u64 > state.config.max_presigned_bytes {
        state.storage.delete(&row.s3_key).await?;
        db::files::release(db, &row).await?;
        return Err(DomainError::TooLarge(format!(
            "files are limited to {} bytes; the upload was discarded",
            state.config.max_presigned_bytes
        )));
    }
    let sha256 = state.storage.sha256(&row.s3_key).await?;
    let content_type = info
        .content_type
        .unwrap_or_else(|| row.content_type.clone());
    let stored = Stored {
        size_bytes: info.size,
        sha256: &sha256,
        etag: info.etag.as_deref(),
        content_type: &content_type,
    };
    if let Some(done) = db::files::mark_available(db, &row, &stored).await? {
        return Ok(done);
    }
    finished_meanwhile(db, &row).await
}

/// After `mark_available` found `row` no longer pending: the upload as someone else finished it
/// (the object's event and `/complete`, or a direct upload, at once), or `Conflict` when another
/// upload took the name over.
pub async fn finished_meanwhile(
    db: &impl GenericClient,
    row: &FileRow,
) -> Result<FileRow, DomainError> {
    match db::files::get(db, row.user_id, row.id).await? {
        Some(now) if now.status == "available" && now.upload_id == row.upload_id => Ok(now),
        _ => Err(DomainError::Conflict(format!(
            "a file named {:?} already exists",
            row.filename
        ))),
    }
}

/// The EventBridge pattern for the objects whose events come here: S3's "Object Created" in
/// `bucket`, keys in the users' space only (the template's `UploadEventsRule` is the same).
pub fn object_created_pattern(bucket: &str) -> serde_json::Value {
    let first: Vec<serde_json::Value> = crate::storage::USER_KEY_FIRST_CHARS
        .chars()
        .map(|c| serde_json::json!({"prefix": c.to_string()}))
        .collect();
    serde_json::json!({
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [bucket]}, "object": {"key": first}}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The template cannot call [`object_created_pattern`]: its rule is checked against it.
    #[test]
    fn the_template_rule_matches_the_users_keys_only() {
        let template = include_str!("../../../template.yaml");
        let pattern = object_created_pattern("BUCKET");
        let prefixes: Vec<&str> = pattern["detail"]["object"]["key"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["prefix"].as_str().unwrap())
            .collect();
        let rule = template
            .split("UploadEventsRule:")
            .nth(1)
            .expect("template.yaml has an UploadEventsRule");
        let rule = &rule[..rule.find("\n  UploadEvents").unwrap_or(rule.len())];
        for p in &prefixes {
            assert!(
                rule.contains(&format!("- prefix: \"{p}\"")),
                "the rule lacks prefix {p}"
            );
        }
        for outside in ["jobs/x/manifest.json", "results/x/out/a.csv"] {
            assert!(!prefixes.iter().any(|p| outside.starts_with(p)));
        }
    }
}
