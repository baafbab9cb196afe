//! Presigned access against the real S3 API (LocalStack, started by `infra/services.sh`): a POST
//! policy stores an upload under its prefix within its size, and refuses one outside the prefix,
//! or larger, storing nothing; a job's stage document gives URLs that fetch each file as its
//! sha256 says, and an upload form for the job's results only. (LocalStack does not check
//! signatures: the SigV4 key derivation is checked against AWS's documented example instead, in
//! `storage::post_policy`.)

use std::time::Duration;

use mecapy_adapters::storage::{PostPolicy, Storage};
use mecapy_domain::{job::Input, keys};
use mecapy_sandbox::manifest::Manifest;
use mecapy_sandbox::stage::StageDocument;
use mecapy_sandbox::Limits;
use sha2::{Digest, Sha256};

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

/// Posts `body` as `key` with the policy's form, as a browser or the stager does.
async fn post(policy: &PostPolicy, key: &str, body: Vec<u8>) -> (u16, String) {
    let (content_type, form) = policy.form(key, "application/octet-stream", &body);
    let reply = reqwest::Client::new()
        .post(&policy.url)
        .header("content-type", content_type)
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

#[tokio::test]
async fn a_stage_document_fetches_each_file_as_checked_and_uploads_only_results() {
    let storage = storage().await;
    let job = uuid::Uuid::new_v4();
    let user = uuid::Uuid::new_v4();
    let code = b"print(open('/work/inputs/data.csv').read())\n".to_vec();
    let data = b"a,b\n1,2\n".to_vec();
    let sha = |b: &[u8]| hex::encode(Sha256::digest(b));
    storage
        .put(&keys::code(job), code.clone().into(), "text/x-python")
        .await
        .expect("code stored");
    let input_key = format!("{user}/data.csv");
    storage
        .put(&input_key, data.clone().into(), "text/csv")
        .await
        .expect("input stored");
    let manifest = Manifest {
        job_id: job,
        user_id: user,
        tool: "python".into(),
        image: "mecapy-python:bookworm".into(),
        command: vec!["python3".into(), "/work/main.py".into()],
        code_key: keys::code(job),
        code_sha256: sha(&code),
        inputs: vec![Input {
            file_id: uuid::Uuid::new_v4(),
            filename: "data.csv".into(),
            key: input_key,
            sha256: sha(&data),
            size: data.len() as i64,
            path: "inputs/data.csv".into(),
        }],
        limits: Limits::default(),
    };
    let document = StageDocument::for_job(
        &manifest,
        code.len() as i64,
        &storage,
        Duration::from_secs(60),
    )
    .await
    .expect("a stage document");
    let paths: Vec<_> = document.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["main.py", "inputs/data.csv"]);
    for file in &document.files {
        let body = reqwest::get(&file.url)
            .await
            .expect("S3 answers the presigned GET")
            .bytes()
            .await
            .expect("body");
        assert_eq!(sha(&body), file.sha256, "{}", file.path);
        assert_eq!(body.len() as i64, file.size, "{}", file.path);
    }
    assert_eq!(document.upload.prefix, keys::results_prefix(job));
    let out = format!("{}out/fit.csv", keys::results_prefix(job));
    let (status, body) = post(&document.upload, &out, b"1,2".to_vec()).await;
    assert!((200..300).contains(&status), "{status} {body}");
    let (status, _) = post(&document.upload, &keys::manifest(job), b"{}".to_vec()).await;
    assert_eq!(status, 403, "the manifest is out of stage-out's reach");
    // It travels as JSON to the staging containers.
    let json = serde_json::to_string(&document).unwrap();
    assert_eq!(
        serde_json::from_str::<StageDocument>(&json).unwrap(),
        document
    );
}
