//! Upload rules on the REAL stack: `/rules` against PostgreSQL and the OIDC provider, uploads
//! through the upload function, their `FileUploaded` events read from a real EventBridge bus
//! (a test rule → SQS queue), and `upload-rules` handling them as Lambda's event source would.

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Response};
use mecapy_shared::db::{jobs, outbox};
use mecapy_shared::jobs::{keys, JobStatus};
use mecapy_testkit::{
    assert_created, assert_problem, body_json, get_request, json_request, multipart_request,
    receive, request, TestContext,
};
use serde_json::{json, Value};
use uuid::Uuid;

struct Setup {
    ctx: TestContext,
    sqs: aws_sdk_sqs::Client,
    events: String,
    token: String,
}

async fn setup(user: &str) -> Setup {
    let ctx = TestContext::new().await;
    let sqs = ctx.sqs_client().await;
    let events = ctx.events_queue(&sqs, &ctx.queue_name("events")).await;
    let token = ctx.token_for(user).await;
    Setup {
        ctx,
        sqs,
        events,
        token,
    }
}

impl Setup {
    /// `POST /rules` of `body`.
    async fn post_rule(&self, body: Value) -> Response<Body> {
        self.rules(Method::POST, "/rules", Some(body)).await
    }

    async fn rules(&self, method: Method, path: &str, body: Option<Value>) -> Response<Body> {
        let req = match body {
            Some(b) => json_request(method, path, Some(&self.token), &b),
            None => request(method, path, Some(&self.token), Body::Empty),
        };
        rules::handle(self.ctx.state.clone(), req).await.unwrap()
    }

    async fn upload(&self, name: &str, content_type: &str, data: &[u8]) -> String {
        let r = upload::handle(
            self.ctx.state.clone(),
            multipart_request("/files", Some(&self.token), name, content_type, data),
        )
        .await
        .unwrap();
        assert_created(&r)["id"].as_str().unwrap().to_string()
    }

    /// The bus's `FileUploaded` records for these files, as the rules' queue would hold them.
    async fn uploaded_events(&self, files: &[&str]) -> SqsEvent {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut found = SqsEvent::default();
        let mut missing: Vec<String> = files.iter().map(|f| f.to_string()).collect();
        while !missing.is_empty() {
            assert!(
                Instant::now() < deadline,
                "no FileUploaded on the bus within 30 s for {missing:?}"
            );
            for record in receive(&self.sqs, &self.events, 1).await.records {
                let envelope: Value =
                    serde_json::from_str(record.body.as_deref().unwrap()).unwrap();
                if envelope["detail-type"] != "FileUploaded" {
                    continue;
                }
                let id = envelope["detail"]["file_id"].as_str().unwrap().to_string();
                if let Some(i) = missing.iter().position(|m| *m == id) {
                    missing.remove(i);
                    found.records.push(record);
                }
            }
        }
        found
    }

    async fn jobs(&self) -> Vec<jobs::Job> {
        let user = self
            .ctx
            .state
            .db
            .get()
            .await
            .unwrap()
            .query_one(
                "SELECT user_id FROM files ORDER BY created_at DESC LIMIT 1",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let db = self.ctx.db().await;
        jobs::list(&**db, user, 100, 0).await.unwrap()
    }
}

/// A python rule for the text uploads named `mesure-*.csv`, running `code` with `args`.
fn mesure_rule(code: &str, args: &[&str]) -> Value {
    json!({
        "filename_glob": "mesure-*.csv",
        "content_type": "text/*",
        "tool": "python",
        "code": code,
        "args": args,
    })
}

#[tokio::test]
async fn a_matching_upload_runs_its_rule_once_even_when_its_event_comes_twice() {
    let s = setup("rule-owner").await;
    let r = s
        .post_rule(mesure_rule(
            "import csv\nprint('rows', sum(1 for _ in open('inputs/' + __import__('sys').argv[1])))\n",
            &["x"],
        ))
        .await;
    // `__import__` is refused by static validation, as it would be by POST /compute.
    let problem = assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(problem["findings"]
        .as_array()
        .is_some_and(|f| !f.is_empty()));
    let mut rule = mesure_rule(
        "import csv\nprint('rows', len(list(csv.reader(open('inputs/mesure-1.csv')))))\n",
        &["mesure-1.csv"],
    );
    // The development setting lets the docker bridge's address through.
    rule["callback_url"] = json!("http://172.17.0.1:9/rule-hook");
    let r = s.post_rule(rule).await;
    let rule = assert_created(&r);
    assert_eq!(rule["callback_url"], "http://172.17.0.1:9/rule-hook");
    let rule_id: Uuid = rule["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(rule["enabled"], true);

    let matching = s.upload("mesure-1.csv", "text/csv", b"t,v\n0,1\n").await;
    let other_name = s.upload("notes.csv", "text/csv", b"t,v\n").await;
    let other_type = s
        .upload("mesure-2.csv", "application/octet-stream", b"\x00\x01")
        .await;
    let mut event = s
        .uploaded_events(&[&matching, &other_name, &other_type])
        .await;
    // The matching upload's event twice in one batch, then the whole batch again.
    let twice = event
        .records
        .iter()
        .find(|r| r.body.as_deref().unwrap().contains(&matching))
        .unwrap()
        .clone();
    event.records.push(twice);
    for _ in 0..2 {
        let response = upload_rules::handle(s.ctx.state.context.clone(), event.clone()).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }

    let all = s.jobs().await;
    assert_eq!(all.len(), 1, "one job for one matching upload: {all:?}");
    let job = &all[0];
    assert_eq!(job.rule_id, Some(rule_id));
    assert_eq!(
        job.upload_file_id.map(|u| u.to_string()),
        Some(matching.clone())
    );
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.inputs[0].file_id.to_string(), matching);
    assert_eq!(job.args, ["mesure-1.csv"]);
    assert_eq!(
        job.callback_url.as_deref(),
        Some("http://172.17.0.1:9/rule-hook"),
        "the rule's jobs report their end to its callback_url"
    );
    assert!(
        s.ctx
            .state
            .storage
            .head(&keys::manifest(job.id))
            .await
            .unwrap()
            .is_some(),
        "its manifest, which dispatches it, is written"
    );
    let db = s.ctx.db().await;
    let kinds = outbox::of_subject(&**db, job.id).await.unwrap();
    assert_eq!(
        kinds.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["CalculationQueued"]
    );

    // Deleted, the rule fires no more; its job stays.
    let r = s
        .rules(Method::DELETE, &format!("/rules/{rule_id}"), None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let again = s.upload("mesure-3.csv", "text/csv", b"t,v\n").await;
    let event = s.uploaded_events(&[&again]).await;
    let response = upload_rules::handle(s.ctx.state.context.clone(), event).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(s.jobs().await.len(), 1);
    let r = s
        .rules(Method::GET, &format!("/rules/{rule_id}"), None)
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_rules_are_refused_and_a_rule_whose_code_stops_passing_is_disabled() {
    let s = setup("rule-critic").await;
    let base = json!({"filename_glob": "*.csv", "tool": "python", "code": "print(1)"});
    let with = |patch: Value| {
        let mut b = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                b.as_object_mut().unwrap().remove(k);
            } else {
                b[k] = v.clone();
            }
        }
        b
    };
    for (body, field) in [
        (with(json!({"filename_glob": "a/b.csv"})), "filename_glob"),
        (with(json!({"filename_glob": ""})), "filename_glob"),
        (with(json!({"content_type": "csv"})), "content_type"),
        (with(json!({"tool": "fortran"})), "tool"),
        (with(json!({"code_file_id": Uuid::new_v4()})), "code"),
        (with(json!({"code": null})), "code"),
        (with(json!({"args": ["a\u{0}b"]})), "args"),
    ] {
        let r = s.post_rule(body.clone()).await;
        let problem = assert_problem(&r, StatusCode::BAD_REQUEST);
        assert_eq!(problem["field"], field, "{body} → {problem}");
    }
    let r = s.post_rule(json!({"glob": "*"})).await;
    assert_problem(&r, StatusCode::BAD_REQUEST);
    let r = s
        .post_rule(with(json!({"code": null, "code_file_id": Uuid::new_v4()})))
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND);

    // numpy is allowed today; a rule using it is kept.
    let r = s
        .post_rule(with(json!({"code": "import numpy\nprint(numpy.pi)\n"})))
        .await;
    let rule_id = assert_created(&r)["id"].as_str().unwrap().to_string();
    // Up to the limit, then 409.
    for _ in 1..mecapy_shared::rules::MAX_RULES_PER_USER {
        let r = s
            .post_rule(with(json!({"filename_glob": "never-*.bin"})))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.body());
    }
    let r = s.post_rule(base.clone()).await;
    assert_problem(&r, StatusCode::CONFLICT);
    let r = s.rules(Method::GET, "/rules", None).await;
    let listed = body_json(&r);
    assert_eq!(
        listed["items"].as_array().unwrap().len() as i64,
        mecapy_shared::rules::MAX_RULES_PER_USER
    );
    assert_eq!(listed["items"][0]["id"], rule_id.as_str(), "oldest first");

    // The tool stops allowing numpy: the rule's next upload disables it, with the reason.
    s.ctx
        .db()
        .await
        .execute(
            "UPDATE tools SET allowed_imports = array_remove(allowed_imports, 'numpy')",
            &[],
        )
        .await
        .unwrap();
    let file = s.upload("data.csv", "text/csv", b"1\n").await;
    let event = s.uploaded_events(&[&file]).await;
    let response = upload_rules::handle(s.ctx.state.context.clone(), event).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let r = s
        .rules(Method::GET, &format!("/rules/{rule_id}"), None)
        .await;
    let rule = body_json(&r);
    assert_eq!(rule["enabled"], false, "{rule}");
    assert!(
        rule["disabled_reason"]
            .as_str()
            .is_some_and(|r| r.contains("data.csv") && r.contains("static validation")),
        "{rule}"
    );
    assert!(s.jobs().await.is_empty());

    // Another user sees none of it.
    let stranger = s.ctx.token_for("rule-stranger").await;
    let r = rules::handle(
        s.ctx.state.clone(),
        get_request(&format!("/rules/{rule_id}"), &stranger),
    )
    .await
    .unwrap();
    assert_problem(&r, StatusCode::NOT_FOUND);
}
