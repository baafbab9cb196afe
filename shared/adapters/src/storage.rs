//! S3: the only place that builds an object key, and the object operations the API needs.

use std::time::Duration;

use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use sha2::{Digest, Sha256};

mod post_policy;
pub use mecapy_domain::files::{FileName, FilenameError, MAX_FILENAME_BYTES};
pub use mecapy_domain::keys::{is_user_file_key, user_file_key, USER_KEY_FIRST_CHARS};
pub use post_policy::PostPolicy;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object storage unavailable: {0}")]
    Unavailable(String),
    #[error("object storage request failed: {0}")]
    Failed(String),
}

/// What S3 knows of an object.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub size: i64,
    pub etag: Option<String>,
    pub content_type: Option<String>,
}

#[derive(Clone)]
pub struct Storage {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// What presigned POST policies are signed with (the SDK signs everything else itself).
    credentials: Option<aws_sdk_s3::config::SharedCredentialsProvider>,
}

impl Storage {
    /// The S3 client from the standard AWS environment (`AWS_ENDPOINT_URL` included).
    pub async fn from_env(bucket: &str) -> Self {
        Self::new(&aws_config::load_from_env().await, bucket)
    }

    /// With path-style addressing whenever an endpoint is set, as LocalStack needs.
    pub fn new(shared: &aws_config::SdkConfig, bucket: &str) -> Self {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(Duration::from_secs(60))
            .build();
        let mut builder = aws_sdk_s3::config::Builder::from(shared)
            .timeout_config(timeouts)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3))
            // Checksums only where S3 requires them: presigned URLs must stay plain for curl.
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .interceptor(crate::telemetry::AwsResources);
        if shared.endpoint_url().is_some() {
            builder = builder.force_path_style(true);
        }
        Storage {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
            bucket: bucket.to_string(),
            credentials: shared.credentials_provider(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    #[tracing::instrument(skip(self, body), fields(bytes = body.len()), err(Display))]
    pub async fn put(
        &self,
        key: &str,
        body: bytes::Bytes,
        content_type: &str,
    ) -> Result<Option<String>, StorageError> {
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(classify)?;
        Ok(out.e_tag().map(str::to_string))
    }

    /// `None` when the object does not exist.
    #[tracing::instrument(skip(self), err(Display))]
    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectInfo {
                size: out.content_length().unwrap_or(0),
                etag: out.e_tag().map(str::to_string),
                content_type: out.content_type().map(str::to_string),
            })),
            Err(SdkError::ServiceError(e)) if e.err().is_not_found() || absent(e.raw()) => Ok(None),
            Err(e) => Err(classify(e)),
        }
    }

    /// The whole object, `None` if it does not exist; refused above `max_bytes`.
    #[tracing::instrument(skip(self), err(Display))]
    pub async fn get(
        &self,
        key: &str,
        max_bytes: u64,
    ) -> Result<Option<bytes::Bytes>, StorageError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(SdkError::ServiceError(e)) if e.err().is_no_such_key() || absent(e.raw()) => {
                return Ok(None)
            }
            Err(e) => return Err(classify(e)),
        };
        if out.content_length().unwrap_or(0) as u64 > max_bytes {
            return Err(StorageError::Failed(format!(
                "{key} is larger than {max_bytes} bytes"
            )));
        }
        let data = out
            .body
            .collect()
            .await
            .map_err(|e| StorageError::Unavailable(e.to_string()))?;
        Ok(Some(data.into_bytes()))
    }

    /// Streams the object and returns its hex SHA-256.
    #[tracing::instrument(skip(self), err(Display))]
    pub async fn sha256(&self, key: &str) -> Result<String, StorageError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(classify)?;
        let mut body = out.body;
        let mut hasher = Sha256::new();
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| StorageError::Unavailable(e.to_string()))?
        {
            hasher.update(&chunk);
        }
        Ok(hex::encode(hasher.finalize()))
    }

    #[tracing::instrument(skip(self), err(Display))]
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Removes every object under `prefix` (e.g. what a failed job's task stored before it
    /// failed), a page at a time; the number removed.
    #[tracing::instrument(skip(self), err(Display))]
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, StorageError> {
        let mut removed = 0;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .send()
                .await
                .map_err(classify)?;
            let keys: Vec<&str> = page.contents().iter().filter_map(|o| o.key()).collect();
            if keys.is_empty() {
                return Ok(removed);
            }
            for key in &keys {
                self.delete(key).await?;
            }
            removed += keys.len();
        }
    }

    /// A URL the client PUTs the object to before `ttl` runs out, once: its signature binds the
    /// content type, the exact length and the SHA-256 (`x-amz-checksum-sha256`, which S3 checks
    /// against the bytes), and `If-None-Match: *`, so S3 refuses other bytes and refuses to
    /// replace an object already there. The client sends these same headers.
    pub async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        sha256_hex: &str,
        ttl: Duration,
    ) -> Result<String, StorageError> {
        let config = presigning(ttl)?;
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_length(size as i64)
            .checksum_sha256(checksum_sha256(sha256_hex)?)
            .if_none_match("*")
            .presigned(config)
            .await
            .map_err(classify)?;
        Ok(req.uri().to_string())
    }

    /// A form upload (presigned POST) of objects under `prefix`, each of at most `max_bytes`,
    /// valid for `ttl`: signed with this client's credentials, posted to the bucket's address
    /// as the SDK builds it (path-style on LocalStack, virtual-hosted on AWS).
    pub async fn presign_post(
        &self,
        prefix: &str,
        max_bytes: u64,
        ttl: Duration,
    ) -> Result<PostPolicy, StorageError> {
        use aws_sdk_s3::config::ProvideCredentials;
        let config = self.client.config();
        let credentials = self
            .credentials
            .as_ref()
            .ok_or_else(|| StorageError::Failed("no AWS credentials to sign with".into()))?
            .provide_credentials()
            .await
            .map_err(|e| StorageError::Unavailable(format!("AWS credentials: {e}")))?;
        let region = config
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| StorageError::Failed("no AWS region to sign for".into()))?;
        // The bucket's address: a presigned GET of the prefix, without the prefix and query.
        let probe = presigning(ttl)?;
        let probe = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(prefix)
            .presigned(probe)
            .await
            .map_err(classify)?;
        let address = probe.uri().split('?').next().unwrap_or_default();
        let url = address.strip_suffix(&format!("/{prefix}")).ok_or_else(|| {
            StorageError::Failed(format!("unexpected presigned address {address}"))
        })?;
        let signer = post_policy::Signer {
            access_key: credentials.access_key_id(),
            secret_key: credentials.secret_access_key(),
            session_token: credentials.session_token(),
            region: &region,
            bucket: &self.bucket,
        };
        Ok(signer.sign(url, prefix, max_bytes, chrono::Utc::now(), ttl))
    }

    /// A URL that downloads the object as an attachment named `filename`.
    pub async fn presign_get(
        &self,
        key: &str,
        filename: &str,
        ttl: Duration,
    ) -> Result<String, StorageError> {
        let config = presigning(ttl)?;
        let disposition = attachment_disposition(filename);
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .response_content_disposition(disposition)
            .presigned(config)
            .await
            .map_err(classify)?;
        Ok(req.uri().to_string())
    }
}

/// S3's answer to a role that may read a key but not list the bucket, when the object does not
/// exist: 403, not 404. No function is granted `s3:ListBucket` on the uploads (it would list every
/// user's files), and the least-privilege test (`infra/e2e/tests/least_privilege.rs`) holds that
/// each function reading keys is granted `s3:GetObject` on them, so a 403 there means absent.
fn absent(response: &aws_sdk_s3::config::http::HttpResponse) -> bool {
    response.status().as_u16() == 403
}

/// S3's `x-amz-checksum-sha256` value (base64) of a hex SHA-256.
pub fn checksum_sha256(sha256_hex: &str) -> Result<String, StorageError> {
    use base64::Engine as _;
    let digest = hex::decode(sha256_hex)
        .ok()
        .filter(|d| d.len() == 32)
        .ok_or_else(|| StorageError::Failed(format!("not a hex SHA-256: {sha256_hex:?}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(digest))
}

/// A presigned request's lifetime.
fn presigning(ttl: Duration) -> Result<PresigningConfig, StorageError> {
    PresigningConfig::expires_in(ttl).map_err(|e| StorageError::Failed(e.to_string()))
}

/// `attachment; filename*=UTF-8''…` (RFC 6266, RFC 8187) with every byte outside `attr-char`
/// percent-encoded, so that the browser saves the file under its exact name (a space is `%20`:
/// `+` would be read as a plus sign).
pub fn attachment_disposition(filename: &str) -> String {
    let mut value = String::from("attachment; filename*=UTF-8''");
    for &byte in filename.as_bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            value.push(char::from(byte));
        } else {
            value.push_str(&format!("%{byte:02X}"));
        }
    }
    value
}

/// Connection failures, timeouts and 5xx answers mean S3 is unavailable (503 to the client);
/// anything else is a failed request (500).
fn classify<E>(err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> StorageError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let text = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            StorageError::Unavailable(text)
        }
        SdkError::ServiceError(e) if e.raw().status().as_u16() >= 500 => {
            StorageError::Unavailable(text)
        }
        _ => StorageError::Failed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_disposition_percent_encodes_everything_but_attr_chars() {
        assert_eq!(
            attachment_disposition("my data+é \"1\".csv"),
            "attachment; filename*=UTF-8''my%20data+%C3%A9%20%221%22.csv"
        );
        assert_eq!(
            attachment_disposition("📈;x'y%.csv"),
            "attachment; filename*=UTF-8''%F0%9F%93%88%3Bx%27y%25.csv"
        );
    }
}
