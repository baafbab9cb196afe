//! Presigned POST policies against the real S3 API (LocalStack, started by
//! `infra/services.sh`): an upload under the policy's prefix within its size is stored; one
//! outside the prefix, or larger, is refused and nothing is stored. (LocalStack does not check
//! signatures: the SigV4 key derivation is checked against AWS's documented example instead, in
//! `storage::post_policy`.)

use std::time::Duration;

use mecapy_shared::storage::{PostPolicy, Storage};

async fn storage() -> Storage {
    let bucket = std::env::var("UPLOAD_BUCKET").unwrap_or_else(|_| "mecapy-uploads".into());
    let storage = Storage::from_env(&bucket).await;
    storage
        .get("post-policy-probe", 1)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "LocalStack S3 (bucket {bucket}) does not answer ({e}): start it with \
             `infra/services.sh up localstack` (make test does)"
            )
        });
    storage
}

/// Posts `body` as `key` with the policy's form (multipart/form-data, the file last), as a
/// browser or the stager does.
async fn post(policy: &PostPolicy, key: &str, body: Vec<u8>) -> (u16, String) {
    let boundary = format!("mecapy-{}", uuid::Uuid::new_v4().simple());
    let mut form = Vec::new();
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
    for (name, value) in &policy.fields {
        field(name, value.as_bytes(), false);
    }
    field("key", key.as_bytes(), false);
    field("file", &body, true);
    form.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let reply = reqwest::Client::new()
        .post(&policy.url)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(form)
        .send()
        .await
        .expect("S3 answers the form upload");
    let status = reply.status().as_u16();
    (status, reply.text().await.unwrap_or_default())
}

#[tokio::test]
async fn a_policy_admits_its_prefix_and_size_only() {
    let storage = storage().await;
    let job = uuid::Uuid::new_v4();
    let prefix = format!("results/{job}/");
    let policy = storage
        .presign_post(&prefix, 1000, Duration::from_secs(60))
        .await
        .expect("a policy");

    let key = format!("{prefix}out/a.txt");
    let (status, body) = post(&policy, &key, b"hello".to_vec()).await;
    assert!((200..300).contains(&status), "{status} {body}");
    let stored = storage.get(&key, 100).await.expect("S3").expect("stored");
    assert_eq!(&stored[..], b"hello");

    let outside = format!("results/{}/out/a.txt", uuid::Uuid::new_v4());
    let (status, body) = post(&policy, &outside, b"x".to_vec()).await;
    assert_eq!(status, 403, "{body}");
    assert!(storage.get(&outside, 100).await.expect("S3").is_none());

    let large = format!("{prefix}out/large.bin");
    let (status, body) = post(&policy, &large, vec![0u8; 1001]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("EntityTooLarge"), "{body}");
    assert!(storage.get(&large, 2000).await.expect("S3").is_none());
}
