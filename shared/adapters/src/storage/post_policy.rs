//! A presigned POST (S3's form upload, signed with SigV4): whoever holds it may upload objects
//! under one key prefix, each of at most a given size, until it expires, and nothing else. A
//! job's stage-out container gets one, so it stores the job's results without any AWS
//! credentials of its own.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;

/// What the uploader needs: the form's URL and fields; it adds `key` (under `prefix`) and
/// `file`, the file last.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PostPolicy {
    pub url: String,
    pub fields: BTreeMap<String, String>,
    pub prefix: String,
    pub max_bytes: u64,
    pub expires_at: DateTime<Utc>,
}

impl PostPolicy {
    /// The upload of `body` as the object `key` (under the policy's prefix): the request's
    /// `Content-Type` header and its multipart/form-data body (the policy's fields, the key, the
    /// object's content type, the file last, as S3 requires).
    pub fn form(&self, key: &str, content_type: &str, body: &[u8]) -> (String, Vec<u8>) {
        let boundary = format!("mecapy-{}", uuid::Uuid::new_v4().simple());
        let mut form = Vec::with_capacity(body.len() + 2048);
        let mut field = |name: &str, value: &[u8], file: bool| {
            let filename = if file { "; filename=\"f\"" } else { "" };
            form.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"{filename}\r\n\r\n"
                )
                .as_bytes(),
            );
            form.extend_from_slice(value);
            form.extend_from_slice(b"\r\n");
        };
        for (name, value) in &self.fields {
            field(name, value.as_bytes(), false);
        }
        field("key", key.as_bytes(), false);
        field("Content-Type", content_type.as_bytes(), false);
        field("file", body, true);
        form.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        (format!("multipart/form-data; boundary={boundary}"), form)
    }
}

/// The signing inputs of a policy.
pub(crate) struct Signer<'a> {
    pub access_key: &'a str,
    pub secret_key: &'a str,
    pub session_token: Option<&'a str>,
    pub region: &'a str,
    pub bucket: &'a str,
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any size");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

impl Signer<'_> {
    /// The policy for uploads under `prefix` of at most `max_bytes` each, valid for `ttl` from
    /// `now`, posted to `url`.
    pub(crate) fn sign(
        &self,
        url: &str,
        prefix: &str,
        max_bytes: u64,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> PostPolicy {
        let date = now.format("%Y%m%d").to_string();
        let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
        let credential = format!("{}/{date}/{}/s3/aws4_request", self.access_key, self.region);
        let expires_at = now + chrono::Duration::from_std(ttl).unwrap_or_default();
        let mut conditions = vec![
            json!({"bucket": self.bucket}),
            json!(["starts-with", "$key", prefix]),
            json!(["content-length-range", 0, max_bytes]),
            // The uploader says what each object is (stdout is text, an output is bytes).
            json!(["starts-with", "$Content-Type", ""]),
            json!({"x-amz-algorithm": "AWS4-HMAC-SHA256"}),
            json!({"x-amz-credential": credential}),
            json!({"x-amz-date": amz_date}),
        ];
        if let Some(token) = self.session_token {
            conditions.push(json!({"x-amz-security-token": token}));
        }
        let policy = json!({
            "expiration": expires_at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            "conditions": conditions,
        });
        let policy = base64::engine::general_purpose::STANDARD.encode(policy.to_string());
        let key = [date.as_str(), self.region, "s3", "aws4_request"]
            .iter()
            .fold(
                format!("AWS4{}", self.secret_key).into_bytes(),
                |key, part| hmac(&key, part.as_bytes()),
            );
        let signature = hex::encode(hmac(&key, policy.as_bytes()));
        let mut fields = BTreeMap::from([
            ("policy".to_string(), policy),
            (
                "x-amz-algorithm".to_string(),
                "AWS4-HMAC-SHA256".to_string(),
            ),
            ("x-amz-credential".to_string(), credential),
            ("x-amz-date".to_string(), amz_date),
            ("x-amz-signature".to_string(), signature),
        ]);
        if let Some(token) = self.session_token {
            fields.insert("x-amz-security-token".into(), token.into());
        }
        PostPolicy {
            url: url.to_string(),
            fields,
            prefix: prefix.to_string(),
            max_bytes,
            expires_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SigV4 signing-key derivation gives the key of AWS's documented example.
    #[test]
    fn the_signature_follows_sigv4() {
        // The signing-key derivation of AWS's SigV4 documentation example (secret
        // wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, 20120215, us-east-1, iam).
        let key = ["20120215", "us-east-1", "iam", "aws4_request"]
            .iter()
            .fold(
                b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_vec(),
                |key, part| hmac(&key, part.as_bytes()),
            );
        assert_eq!(
            hex::encode(key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn the_policy_binds_the_bucket_prefix_size_and_expiry() {
        let signer = Signer {
            access_key: "AKID",
            secret_key: "secret",
            session_token: Some("token"),
            region: "eu-west-3",
            bucket: "b",
        };
        let now: DateTime<Utc> = "2026-12-02T10:00:00Z".parse().unwrap();
        let p = signer.sign(
            "http://s3/b",
            "results/j/",
            100,
            now,
            Duration::from_secs(600),
        );
        assert_eq!(
            p.fields["x-amz-credential"],
            "AKID/20261202/eu-west-3/s3/aws4_request"
        );
        assert_eq!(p.fields["x-amz-date"], "20261202T100000Z");
        assert_eq!(p.fields["x-amz-security-token"], "token");
        assert_eq!(p.fields["x-amz-signature"].len(), 64);
        let policy: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(&p.fields["policy"])
                .unwrap(),
        )
        .unwrap();
        assert_eq!(policy["expiration"], "2026-12-02T10:10:00.000Z");
        let conditions = policy["conditions"].as_array().unwrap();
        assert!(conditions.contains(&json!({"bucket": "b"})));
        assert!(conditions.contains(&json!(["starts-with", "$key", "results/j/"])));
        assert!(conditions.contains(&json!(["content-length-range", 0, 100])));
        assert!(conditions.contains(&json!({"x-amz-security-token": "token"})));
        assert!(
            !p.fields.contains_key("key"),
            "the uploader names each object"
        );
    }
}
