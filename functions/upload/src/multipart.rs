//! Reads the `file` field of a multipart/form-data body, refusing bad names and oversize files
//! before anything is written. Each part's Content-Disposition is parsed by [`disposition`]
//! (multer's own reading of it is lenient and lossy), and the name checked and normalised by
//! [`FileName::parse`].

use bytes::Bytes;
use lambda_http::http::header;
use lambda_http::Request;
use mecapy_shared::http::ApiError;
use mecapy_shared::storage::FileName;

use crate::disposition::{self, DispositionError};

/// Room for the multipart framing around the file.
const FRAMING_ALLOWANCE: u64 = 64 * 1024;

#[derive(Debug)]
pub struct UploadedFile {
    pub filename: FileName,
    pub content_type: String,
    pub data: Bytes,
}

/// Checks a declared content type (`type/subtype`, parameters allowed) and normalises it.
pub fn valid_content_type(value: &str) -> Result<String, ApiError> {
    let parsed: mime::Mime = value.trim().parse().map_err(|_| {
        ApiError::bad_field("content_type", format!("{value:?} is not a media type"))
    })?;
    if value.len() > 255 {
        return Err(ApiError::bad_field(
            "content_type",
            "content type is too long",
        ));
    }
    Ok(parsed.to_string())
}

pub async fn parse(req: &Request, max_bytes: u64) -> Result<UploadedFile, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        ApiError::UnsupportedMediaType(format!(
            "send the file as multipart/form-data with a boundary (got {:?})",
            content_type
        ))
    })?;
    let body: &[u8] = req.body().as_ref();
    if body.len() as u64 > max_bytes + FRAMING_ALLOWANCE {
        return Err(too_large(max_bytes));
    }
    let stream = futures_util::stream::once(futures_util::future::ready(
        Ok::<Bytes, std::io::Error>(Bytes::copy_from_slice(body)),
    ));
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(max_bytes + FRAMING_ALLOWANCE)
            .for_field("file", max_bytes),
    );
    let mut multipart = multer::Multipart::with_constraints(stream, boundary, constraints);

    let mut found: Option<UploadedFile> = None;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| multer_error(e, max_bytes))?
    {
        let part = disposition::of_part(field.headers()).map_err(malformed)?;
        let Some(part) = part.filter(|p| p.name.as_deref() == Some("file")) else {
            continue;
        };
        if found.is_some() {
            return Err(ApiError::bad_field("file", "send exactly one `file` field"));
        }
        let raw = part
            .filename
            .ok_or_else(|| ApiError::bad_field("filename", "the `file` field has no filename"))?;
        let filename = FileName::parse(&raw)?;
        let content_type = match field.content_type() {
            Some(m) => valid_content_type(m.as_ref())?,
            None => "application/octet-stream".to_string(),
        };
        let data = field
            .bytes()
            .await
            .map_err(|e| multer_error(e, max_bytes))?;
        if data.len() as u64 > max_bytes {
            return Err(too_large(max_bytes));
        }
        found = Some(UploadedFile {
            filename,
            content_type,
            data,
        });
    }
    found.ok_or_else(|| ApiError::bad_field("file", "the form has no `file` field"))
}

fn malformed(e: DispositionError) -> ApiError {
    ApiError::bad_field(e.field(), format!("malformed Content-Disposition: {e}"))
}

fn too_large(max_bytes: u64) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "the file is larger than {max_bytes} bytes; ask POST /files/presign for a direct upload URL"
    ))
}

fn multer_error(e: multer::Error, max_bytes: u64) -> ApiError {
    match e {
        multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => {
            too_large(max_bytes)
        }
        other => ApiError::bad_request(format!("malformed multipart body: {other}")),
    }
}
