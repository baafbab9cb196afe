//! The API's wire types: what each route reads and what it answers, as the handlers
//! (de)serialise them. The OpenAPI document ([`openapi::document`]) is derived from these same
//! types (and from the rows they embed: `db::files::FileRow`, `db::jobs::Job`, `db::users::User`),
//! so the contract cannot drift from the code without its test failing.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::{files::FileRow, jobs::Job, users::User};
use crate::validation::Finding;
pub use mecapy_domain::job::JobOutput;

pub mod docs;
pub mod openapi;

/// `POST /auth/login`: where the provider should send the browser back.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Where the provider sends the browser back; must be one of the API's allowed redirect
    /// URIs. Omitted: the first of them.
    pub redirect_uri: Option<String>,
}

/// A login started: send the browser to `authorization_url`, keep `code_verifier` and `state`
/// for the callback.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    /// The provider's authorization endpoint with the PKCE S256 challenge and the signed state.
    pub authorization_url: String,
    /// The PKCE verifier to give back to `POST /auth/callback`.
    pub code_verifier: String,
    /// The signed login state (binds the redirect URI and the challenge; expires).
    pub state: String,
    pub redirect_uri: String,
    /// Seconds before `state` expires and the login must start again.
    pub expires_in: u64,
}

/// `POST /auth/callback`: what the provider sent back, with the login's verifier and state.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallbackRequest {
    /// The authorization code from the redirect.
    #[schema(min_length = 1, max_length = 4096)]
    pub code: String,
    /// The `code_verifier` of `POST /auth/login`.
    #[schema(pattern = "^[A-Za-z0-9._~-]{43,128}$")]
    pub code_verifier: String,
    /// The `state` of `POST /auth/login`, as the redirect carried it.
    #[schema(min_length = 1)]
    pub state: String,
}

/// A completed login: the provider's access token (a bearer token for every other route) and
/// the user it was issued to.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds the access token is valid for, as the provider said.
    pub expires_in: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub user: User,
}

/// A file as the API shows it, with a download URL once it is available.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileView {
    #[serde(flatten)]
    pub file: FileRow,
    /// A presigned GET of the file (`Content-Disposition` names it), once it is available.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_url: Option<String>,
    /// Seconds before `download_url` expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_expires_in: Option<u64>,
}

/// `POST /files`: a `multipart/form-data` body with one part named `file` (its
/// `Content-Disposition` filename is the file's name; its `Content-Type` the file's type).
#[derive(Debug, ToSchema)]
pub struct UploadForm {
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// `POST /files/presign`: reserve a name for a file uploaded straight to storage.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresignRequest {
    /// The file's name (the rules of `POST /files` apply).
    #[schema(min_length = 1, max_length = 255)]
    pub filename: String,
    /// Its media type (`type/subtype`); `application/octet-stream` when omitted.
    #[schema(max_length = 255)]
    pub content_type: Option<String>,
    /// Its exact size in bytes: the upload URL accepts no other length.
    pub size: u64,
    /// The hex SHA-256 of its bytes: storage refuses any other content.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub sha256: String,
}

/// A reserved name and where to PUT its bytes; then `POST complete_url`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PresignResponse {
    /// The reservation (`status: pending` until completed).
    pub file: FileRow,
    pub upload: PresignedUpload,
    /// The path to POST once the upload is done.
    pub complete_url: String,
}

/// A presigned upload: send the bytes with this method and these headers to `url`, once. The
/// URL binds the declared size and sha256 and refuses to replace an object already there.
#[derive(Debug, Serialize, ToSchema)]
pub struct PresignedUpload {
    pub url: String,
    /// Always `PUT`.
    pub method: String,
    pub headers: UploadHeaders,
    /// Seconds before `url` expires.
    pub expires_in: u64,
}

/// The headers a presigned upload must carry (they are part of its signature). A browser sets
/// `Content-Length` itself from the body.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadHeaders {
    #[serde(rename = "Content-Type")]
    pub content_type: String,
    #[serde(rename = "Content-Length")]
    pub content_length: String,
    /// The base64 SHA-256 of the bytes, which storage checks.
    #[serde(rename = "x-amz-checksum-sha256")]
    pub checksum_sha256: String,
    /// `*`: refused if an object is already there (a URL cannot replace what it uploaded).
    #[serde(rename = "If-None-Match")]
    pub if_none_match: String,
}

/// A page of a listing, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    pub items: Vec<T>,
    /// The path of the next page; `null` on the last one.
    pub next: Option<String>,
}

impl<T: ToSchema> Page<T> {
    /// The page of `items` read with `limit + 1` rows (the extra one says whether more follow).
    pub fn of(path: &str, mut items: Vec<T>, limit: i64, offset: i64) -> Self {
        let more = items.len() as i64 > limit;
        items.truncate(limit.max(0) as usize);
        let next = more.then(|| format!("{path}?limit={limit}&offset={}", offset + limit));
        Page { items, next }
    }
}

/// A job accepted by `POST /compute`: it runs once dispatched.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubmitAccepted {
    pub job_id: Uuid,
    /// `queued`.
    pub status: crate::jobs::JobStatus,
    pub links: JobLinks,
}

/// `GET /webhooks/secret`: the key the caller's webhooks are signed with.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookSecret {
    /// `whsec_<base64>`, as Standard Webhooks libraries take it: verify `webhook-signature`
    /// (`v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`) with it.
    #[schema(pattern = "^whsec_[A-Za-z0-9+/=]+$")]
    pub secret: String,
    /// The signature scheme: `v1` (HMAC-SHA256).
    pub scheme: String,
}

/// A job as the API shows it: its record and links to what it produced.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    #[serde(flatten)]
    pub job: Job,
    pub links: JobLinks,
}

/// Where a job and its results are. `stdout`, `stderr` and `outputs` are presigned GETs,
/// present once the job ran (succeeded, failed, timeout or oom).
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct JobLinks {
    /// The job's own path.
    #[serde(rename = "self")]
    pub self_: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<OutputLink>>,
}

impl JobLinks {
    pub fn of(job: Uuid) -> Self {
        JobLinks {
            self_: format!("/compute/{job}"),
            ..JobLinks::default()
        }
    }
}

/// One file the job wrote under `/work/out`, and its download link.
#[derive(Debug, Serialize, ToSchema)]
pub struct OutputLink {
    /// Its path under `/work/out`.
    pub name: String,
    /// Its size in bytes.
    pub size: i64,
    pub url: String,
}

/// An error, as RFC 9457 `application/problem+json`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// `urn:mecapy:problem:{slug}`, one per status.
    #[serde(rename = "type")]
    pub type_: String,
    /// The status's reason phrase.
    pub title: String,
    pub status: u16,
    /// What went wrong, for a person.
    pub detail: String,
    /// The request's path.
    pub instance: String,
    /// Quote it when reporting a problem: it names the request in the logs.
    pub request_id: String,
    /// The request field at fault (400).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Where the code was refused (422 of `POST /compute`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub findings: Option<Vec<Finding>>,
}
