//! The `/files` routes: direct multipart upload, presigned upload and its completion, listing
//! and metadata with a presigned download. An object never exists without its row: the row is
//! reserved `pending` first and only turns `available` once the object is written.

mod disposition;
mod multipart;

use std::convert::Infallible;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use mecapy_shared::api::{
    FileView, Page, PresignRequest, PresignResponse, PresignedUpload, UploadHeaders,
};
use mecapy_shared::db::{self, files::Expected, files::FileRow, files::Stored, DbError};
use mecapy_shared::http::{self, ApiError};
use mecapy_shared::storage::{self, FileName};
use mecapy_shared::{uploads, AppState};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use multipart::valid_content_type;

pub async fn handle(state: AppState, req: Request) -> Result<Response<Body>, Infallible> {
    http::serve(state, req, "upload", route).await
}

async fn route(state: AppState, req: Request) -> Result<Response<Body>, ApiError> {
    let r = http::Route::of(&req, "files")?;
    match (&r.method, r.segments().as_slice()) {
        (&Method::POST, []) => upload(state, req).await,
        (&Method::GET, []) => list(state, req).await,
        (&Method::POST, ["presign"]) => presign(state, req).await,
        (&Method::POST, [id, "complete"]) => complete(state, req, parse_id(id)?).await,
        (_, ["presign"]) | (_, [_, "complete"]) => Err(r.not_allowed("POST, OPTIONS")),
        (&Method::GET, [id]) => get(state, req, parse_id(id)?).await,
        (_, []) => Err(r.not_allowed("GET, POST, OPTIONS")),
        (_, [_]) => Err(r.not_allowed("GET, OPTIONS")),
        _ => Err(r.not_found()),
    }
}

/// An id that is not a UUID names no file: 404, like another user's file.
fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::NotFound("no such file".into()))
}

fn conflict(filename: &str) -> ApiError {
    ApiError::Conflict(format!("a file named {filename:?} already exists"))
}

/// `POST /files` (multipart/form-data, field `file`).
async fn upload(state: AppState, req: Request) -> Result<Response<Body>, ApiError> {
    let user = state.current_user(&req).await?;
    let file = multipart::parse(&req, state.config.max_upload_bytes).await?;
    let key = storage::user_file_key(user.id, &file.filename);
    let db = state.db.get().await.map_err(DbError::from)?;

    let reserved = db::files::reserve(
        &**db,
        user.id,
        file.filename.as_str(),
        &key,
        &file.content_type,
        None,
    )
    .await?
    .ok_or_else(|| conflict(file.filename.as_str()))?;

    let etag = match state
        .storage
        .put(&key, file.data.clone(), &file.content_type)
        .await
    {
        Ok(etag) => etag,
        Err(e) => {
            if let Err(release) = db::files::release(&**db, &reserved).await {
                tracing::warn!(error = %release, file_id = %reserved.id, "pending row left for a failed upload");
            }
            return Err(e.into());
        }
    };
    let sha256 = hex::encode(Sha256::digest(&file.data));
    let stored = Stored {
        size_bytes: file.data.len() as i64,
        sha256: &sha256,
        etag: etag.as_deref(),
        content_type: &file.content_type,
    };
    match db::files::mark_available(&**db, &reserved, &stored).await {
        Ok(Some(row)) => {
            drop(db);
            // The upload recorded its FileUploaded event: sent now (what fails stays in the outbox).
            state.publish_events().await;
            Ok(http::json(StatusCode::CREATED, &view(&state, row).await?))
        }
        // Its object's S3 event may have finished it first.
        Ok(None) => {
            let row = uploads::finished_meanwhile(&**db, &reserved).await?;
            Ok(http::json(StatusCode::CREATED, &view(&state, row).await?))
        }
        Err(e) => {
            // The row could not be completed: take the object back so none exists without it.
            if let Err(delete) = state.storage.delete(&key).await {
                tracing::error!(error = %delete, key, "object left behind after a failed row update");
            }
            Err(e.into())
        }
    }
}

/// `POST /files/presign {filename, content_type?, size, sha256}` → a presigned PUT URL bound to
/// that size and sha256, usable once.
async fn presign(state: AppState, req: Request) -> Result<Response<Body>, ApiError> {
    let user = state.current_user(&req).await?;
    let body: PresignRequest = http::json_body(&req, state.edge.max_json_bytes)?;
    let filename = FileName::parse(&body.filename)?;
    let content_type = match &body.content_type {
        Some(ct) => valid_content_type(ct)?,
        None => "application/octet-stream".to_string(),
    };
    if body.size > state.config.max_presigned_bytes {
        return Err(ApiError::PayloadTooLarge(format!(
            "files are limited to {} bytes",
            state.config.max_presigned_bytes
        )));
    }
    let expected = Expected {
        size_bytes: body.size as i64,
        sha256: uploads::sha256_hex(&body.sha256)?,
    };
    let checksum = storage::checksum_sha256(&expected.sha256)?;
    let key = storage::user_file_key(user.id, &filename);
    let db = state.db.get().await.map_err(DbError::from)?;
    let reserved = db::files::reserve(
        &**db,
        user.id,
        filename.as_str(),
        &key,
        &content_type,
        Some(&expected),
    )
    .await?
    .ok_or_else(|| conflict(filename.as_str()))?;
    let ttl = state.config.presign_ttl;
    let signed = state
        .storage
        .presign_put(&key, &content_type, body.size, &expected.sha256, ttl)
        .await;
    let url = match signed {
        Ok(url) => url,
        Err(e) => {
            let _ = db::files::release(&**db, &reserved).await;
            return Err(e.into());
        }
    };
    let complete_url = format!("/files/{}/complete", reserved.id);
    Ok(http::json(
        StatusCode::CREATED,
        &PresignResponse {
            file: reserved,
            upload: PresignedUpload {
                url,
                method: "PUT".into(),
                headers: UploadHeaders {
                    content_type,
                    content_length: body.size.to_string(),
                    checksum_sha256: checksum,
                    if_none_match: "*".into(),
                },
                expires_in: ttl.as_secs(),
            },
            complete_url,
        },
    ))
}

/// `POST /files/{id}/complete`: records a presigned upload once its object exists (its S3 event
/// may have done so already: then this only answers).
async fn complete(state: AppState, req: Request, id: Uuid) -> Result<Response<Body>, ApiError> {
    let user = state.current_user(&req).await?;
    let db = state.db.get().await.map_err(DbError::from)?;
    let row = http::found(db::files::get(&**db, user.id, id).await?, "file")?;
    let done = uploads::finalise(&state, &**db, row).await?;
    drop(db);
    // A completion records the file's FileUploaded event: sent now.
    state.publish_events().await;
    Ok(http::json(StatusCode::OK, &view(&state, done).await?))
}

/// `GET /files/{id}`: metadata, and a presigned GET once the file is available.
async fn get(state: AppState, req: Request, id: Uuid) -> Result<Response<Body>, ApiError> {
    let user = state.current_user(&req).await?;
    let db = state.db.get().await.map_err(DbError::from)?;
    let row = http::found(db::files::get(&**db, user.id, id).await?, "file")?;
    Ok(http::json(StatusCode::OK, &view(&state, row).await?))
}

/// `GET /files?limit=&offset=`: the caller's available files, newest first.
async fn list(state: AppState, req: Request) -> Result<Response<Body>, ApiError> {
    let user = state.current_user(&req).await?;
    let (limit, offset) = http::pagination(&req)?;
    let db = state.db.get().await.map_err(DbError::from)?;
    let rows = db::files::list(&**db, user.id, limit + 1, offset).await?;
    Ok(http::json(
        StatusCode::OK,
        &Page::of("/files", rows, limit, offset),
    ))
}

async fn view(state: &AppState, file: FileRow) -> Result<FileView, ApiError> {
    if file.status != "available" {
        return Ok(FileView {
            file,
            download_url: None,
            download_expires_in: None,
        });
    }
    let ttl = state.config.presign_ttl;
    let url = state
        .storage
        .presign_get(&file.s3_key, &file.filename, ttl)
        .await?;
    Ok(FileView {
        file,
        download_url: Some(url),
        download_expires_in: Some(ttl.as_secs()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_content_types_are_refused() {
        assert_eq!(valid_content_type("text/csv").unwrap(), "text/csv");
        assert!(valid_content_type("not a type").is_err());
    }
}
