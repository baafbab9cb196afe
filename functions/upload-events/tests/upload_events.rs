//! `upload-events` on the REAL stack: LocalStack S3 sends the test bucket's events to
//! EventBridge, a rule routes them to a real SQS queue, and the handler gets them as Lambda's
//! event source would. PostgreSQL and the OIDC provider are the real ones too.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use bytes::Bytes;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Response};
use mecapy_shared::db::{files, outbox};
use mecapy_shared::AppState;
use mecapy_testkit::{
    assert_created, body_json, get_request, multipart_request, presign_body, presign_request,
    put_presigned, receive, request, TestContext,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use upload_events::ObjectCreated;

async fn call(state: &AppState, req: lambda_http::Request) -> Response<Body> {
    upload::handle(state.clone(), req).await.unwrap()
}

struct Setup {
    ctx: TestContext,
    sqs: aws_sdk_sqs::Client,
    uploads: String,
    events: String,
}

async fn setup() -> Setup {
    let ctx = TestContext::new().await;
    let sqs = ctx.sqs_client().await;
    let uploads = ctx
        .upload_events_queue(&sqs, &ctx.queue_name("uploads"))
        .await;
    let events = ctx.events_queue(&sqs, &ctx.queue_name("events")).await;
    Setup {
        ctx,
        sqs,
        uploads,
        events,
    }
}

impl Setup {
    /// The upload events received until one names each of `keys` (and any others that came).
    async fn events_for(&self, keys: &[&str]) -> SqsEvent {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut want: HashSet<String> = keys.iter().map(|k| k.to_string()).collect();
        let mut all = SqsEvent::default();
        while !want.is_empty() {
            assert!(
                Instant::now() < deadline,
                "no S3 event within 30 s for {want:?} (LocalStack S3 → EventBridge → SQS)"
            );
            let batch = receive(&self.sqs, &self.uploads, 2).await;
            for record in batch.records {
                let created = ObjectCreated::parse(record.body.as_deref().unwrap())
                    .expect("the rule routes S3 Object Created events only");
                assert_eq!(created.bucket, self.ctx.bucket);
                for k in created.keys() {
                    want.remove(&k);
                }
                all.records.push(record);
            }
        }
        all
    }

    /// The bus's envelopes for `subject` received within a few seconds.
    async fn published_about(&self, subject: &str) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut found = Vec::new();
        while Instant::now() < deadline && found.is_empty() {
            for record in receive(&self.sqs, &self.events, 1).await.records {
                let envelope: Value =
                    serde_json::from_str(record.body.as_deref().unwrap()).unwrap();
                if envelope["detail"]["file_id"] == subject {
                    found.push(envelope);
                }
            }
        }
        found
    }

    /// A direct upload (`POST /files`) of `data` named `name` by `token`: the file.
    async fn uploaded(&self, token: &str, name: &str, data: &[u8]) -> Value {
        let form = multipart_request("/files", Some(token), name, "text/csv", data);
        assert_created(&call(&self.ctx.state, form).await)
    }

    async fn file(&self, token: &str, id: &str) -> Value {
        let r = call(&self.ctx.state, get_request(&format!("/files/{id}"), token)).await;
        assert_eq!(r.status(), StatusCode::OK, "{:?}", r.body());
        body_json(&r)
    }
}

#[tokio::test]
async fn a_presigned_upload_nobody_completes_becomes_available_from_its_event() {
    let s = setup().await;
    let token = s.ctx.token_for("event-uploader").await;
    let data = b"x,y\n1,2\n3,4\n".to_vec();
    let r = call(
        &s.ctx.state,
        presign_request(&token, &presign_body("my data é+1.csv", "text/csv", &data)),
    )
    .await;
    let grant = assert_created(&r);
    let id = grant["file"]["id"].as_str().unwrap().to_string();
    let key: String = s
        .ctx
        .query_value(
            "SELECT s3_key FROM files WHERE id = $1",
            &[&uuid::Uuid::parse_str(&id).unwrap()],
        )
        .await;
    put_presigned(&grant, &data).await;

    // The client stops here: no /complete. The object's event finishes the upload.
    let event = s.events_for(&[&key]).await;
    let response = upload_events::handle(s.ctx.state.context.clone(), event.clone()).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let file = s.file(&token, &id).await;
    assert_eq!(file["status"], "available", "{file}");
    assert_eq!(file["size_bytes"], data.len());
    assert_eq!(file["sha256"], hex::encode(Sha256::digest(&data)));
    let published = s.published_about(&id).await;
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0]["detail-type"], "FileUploaded");

    // The same event again (SQS delivers at least once), then the late /complete: no change.
    let response = upload_events::handle(s.ctx.state.context.clone(), event).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let r = call(
        &s.ctx.state,
        request(
            Method::POST,
            &format!("/files/{id}/complete"),
            Some(&token),
            Body::Empty,
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.body());
    let again = body_json(&r);
    assert_eq!(again["sha256"], file["sha256"]);
    assert_eq!(again["completed_at"], file["completed_at"]);
    let db = s.ctx.db().await;
    let kinds = outbox::of_subject(&**db, uuid::Uuid::parse_str(&id).unwrap())
        .await
        .unwrap();
    assert_eq!(
        kinds.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["FileUploaded"],
        "one upload, one event"
    );
}

#[tokio::test]
async fn an_object_nobody_reserved_is_recorded_and_removed_and_the_rest_is_left_alone() {
    let s = setup().await;
    let token = s.ctx.token_for("event-bystander").await;
    // A direct upload: its row is available before (or as) its event arrives.
    s.uploaded(&token, "kept.csv", b"a,b\n").await;
    let kept_key = s
        .ctx
        .object_keys()
        .await
        .into_iter()
        .find(|k| k.ends_with("/kept.csv"))
        .expect("the direct upload's object");

    // Written to the bucket behind the API's back: in a user's space, and a job's object.
    let stray = format!("{}/stray.csv", uuid::Uuid::new_v4());
    let job_object = format!("jobs/{}/main.py", uuid::Uuid::new_v4());
    for key in [&stray, &job_object] {
        s.ctx
            .state
            .storage
            .put(key, Bytes::from_static(b"stray"), "text/plain")
            .await
            .unwrap();
    }
    let mut event = s.events_for(&[&kept_key, &stray]).await;
    // Garbage and another bucket's event ride along: acknowledged, nothing done.
    for body in [
        "not json".to_string(),
        json!({"source": "aws.s3", "detail-type": "Object Created",
               "detail": {"bucket": {"name": "someone-else"}, "object": {"key": stray}}})
        .to_string(),
    ] {
        let mut m = SqsMessage::default();
        m.message_id = Some(uuid::Uuid::new_v4().to_string());
        m.body = Some(body);
        event.records.push(m);
    }

    // The database down: every real record comes back, nothing is removed.
    let down = upload_events::handle(s.ctx.state_without_database().context, event.clone()).await;
    assert_eq!(down.batch_item_failures.len(), event.records.len() - 2);
    assert!(s.ctx.state.storage.head(&stray).await.unwrap().is_some());

    let response = upload_events::handle(s.ctx.state.context.clone(), event).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let storage = &s.ctx.state.storage;
    assert!(
        storage.head(&stray).await.unwrap().is_none(),
        "the orphan is removed"
    );
    assert!(
        storage.head(&kept_key).await.unwrap().is_some(),
        "the file stays"
    );
    assert!(
        storage.head(&job_object).await.unwrap().is_some(),
        "jobs/ is not touched"
    );
    let db = s.ctx.db().await;
    assert_eq!(files::orphans_of(&**db, &stray).await.unwrap(), [true]);
    assert!(files::orphans_of(&**db, &kept_key)
        .await
        .unwrap()
        .is_empty());
    let r = call(&s.ctx.state, get_request("/files", &token)).await;
    assert_eq!(body_json(&r)["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_object_replaced_under_an_available_file_marks_it_altered() {
    let s = setup().await;
    let token = s.ctx.token_for("event-altered").await;
    let file = s.uploaded(&token, "kept.csv", b"a,b\n1,2\n").await;
    let id = file["id"].as_str().unwrap().to_string();
    let key = s.ctx.object_keys().await[0].clone();
    // Its own event: the object recorded, nothing changes.
    let event = s.events_for(&[&key]).await;
    let response = upload_events::handle(s.ctx.state.context.clone(), event).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(s.file(&token, &id).await["status"], "available");

    // Replaced behind the API's back (AWS refuses a presigned URL's second PUT; the bucket's
    // owner, a misconfigured tool, can still write).
    s.ctx
        .state
        .storage
        .put(&key, Bytes::from_static(b"other bytes\n"), "text/csv")
        .await
        .unwrap();
    let event = s.events_for(&[&key]).await;
    let response = upload_events::handle(s.ctx.state.context.clone(), event.clone()).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let file = s.file(&token, &id).await;
    assert_eq!(file["status"], "altered", "{file}");
    assert!(
        file["altered_reason"]
            .as_str()
            .unwrap()
            .contains("replaced after it was recorded"),
        "{file}"
    );
    assert!(file.get("download_url").is_none(), "not served: {file}");
    assert_eq!(file["sha256"], hex::encode(Sha256::digest(b"a,b\n1,2\n")));
    // Listed, so its owner sees it; the same event again changes nothing.
    let r = call(&s.ctx.state, get_request("/files", &token)).await;
    assert_eq!(body_json(&r)["items"][0]["status"], "altered");
    let response = upload_events::handle(s.ctx.state.context.clone(), event).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(s.file(&token, &id).await["status"], "altered");
}
