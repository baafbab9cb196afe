//! Finishing an upload: a pending row whose object is in the bucket becomes `available`, with
//! the object's size and sha256, and its `FileUploaded` event. `POST /files/{id}/complete` and
//! the object's S3 event (the `upload-events` function) both come here, in either order or at
//! once: whichever is second finds the file available and changes nothing.

use tokio_postgres::GenericClient;

use crate::db::{self, files::Expected, files::FileRow, files::Stored};
use crate::Context;
use mecapy_domain::error::DomainError;

/// Finalises `row` (pending or available) from its object.
///
/// Errors: `Conflict` when the object is not in the bucket yet (or another upload took the
/// reservation over), or is not what its client declared (the object is then removed and the
/// reservation kept, so the declared bytes can still be PUT); `PayloadTooLarge` when it exceeds
/// the presigned limit (the object is then removed and the reservation dropped); and the
/// storage's or database's own failures.
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
    if let Some(expected) = row.expected.as_ref().filter(|e| e.size_bytes != info.size) {
        return Err(discard(state, &row, expected, format!("{} bytes", info.size)).await?);
    }
    let sha256 = state.storage.sha256(&row.s3_key).await?;
    if let Some(expected) = row.expected.as_ref().filter(|e| e.sha256 != sha256) {
        return Err(discard(state, &row, expected, format!("sha256 {sha256}")).await?);
    }
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

/// Removes an object that is not what its upload declared: the refusal to answer with.
async fn discard(
    state: &Context,
    row: &FileRow,
    expected: &Expected,
    found: String,
) -> Result<DomainError, DomainError> {
    state.storage.delete(&row.s3_key).await?;
    tracing::warn!(file_id = %row.id, found, "an upload that is not what was declared was discarded");
    Ok(DomainError::Conflict(format!(
        "the uploaded object is not the declared one ({found}; declared {} bytes, sha256 {}): it was discarded; PUT the declared bytes to the upload URL",
        expected.size_bytes, expected.sha256
    )))
}

/// A declared SHA-256: 64 hex digits, kept lowercase.
pub fn sha256_hex(declared: &str) -> Result<String, DomainError> {
    if declared.len() == 64 && declared.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(declared.to_ascii_lowercase())
    } else {
        Err(DomainError::invalid(
            "sha256",
            "sha256 must be the 64 hex digits of the file's SHA-256",
        ))
    }
}

/// A file a job may read: `what` (e.g. `input file {id}`) must exist and be available; an
/// altered one is refused with why.
pub fn usable(file: Option<FileRow>, what: &str) -> Result<FileRow, DomainError> {
    match file {
        Some(f) if f.status == "available" => Ok(f),
        Some(f) if f.status == "altered" => Err(DomainError::Conflict(format!(
            "{what} cannot be used: {}",
            f.altered_reason
                .as_deref()
                .unwrap_or("its object changed after it was recorded")
        ))),
        _ => Err(DomainError::NotFound(format!("no such {what}"))),
    }
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

    #[test]
    fn only_an_available_file_is_usable_and_an_altered_one_says_why() {
        let now = chrono::Utc::now();
        let file = |status: &str, reason: Option<&str>| FileRow {
            id: uuid::Uuid::new_v4(),
            user_id: uuid::Uuid::new_v4(),
            filename: "a.csv".into(),
            s3_key: "u/a.csv".into(),
            content_type: "text/csv".into(),
            size_bytes: Some(1),
            sha256: Some("0".repeat(64)),
            etag: None,
            status: status.into(),
            altered_reason: reason.map(str::to_string),
            expected: None,
            upload_id: uuid::Uuid::new_v4(),
            created_at: now,
            updated_at: now,
            completed_at: Some(now),
        };
        assert!(usable(Some(file("available", None)), "input file x").is_ok());
        let altered = usable(Some(file("altered", Some("replaced"))), "input file x");
        assert!(
            matches!(&altered, Err(DomainError::Conflict(m)) if m == "input file x cannot be used: replaced"),
            "{altered:?}"
        );
        assert!(matches!(
            usable(Some(file("pending", None)), "file"),
            Err(DomainError::NotFound(_))
        ));
        assert!(matches!(
            usable(None, "file"),
            Err(DomainError::NotFound(_))
        ));
        assert_eq!(sha256_hex(&"AB".repeat(32)).unwrap(), "ab".repeat(32));
        assert!(sha256_hex("ab").is_err());
    }

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
