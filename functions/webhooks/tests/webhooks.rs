//! Signed webhooks on the REAL services: jobs accepted by compute-submit against PostgreSQL and
//! the OIDC provider, their final state's CalculationFinished read from a real EventBridge bus
//! (a test rule → SQS queue, as the stack's WebhooksRule), the webhooks function handling them
//! as Lambda's event source would, and a receiver this test starts on the docker bridge
//! (172.17.0.1) checking every signature.

use std::sync::Arc;
use std::time::Duration;

use lambda_http::http::{Method, StatusCode};
use mecapy_shared::db::{jobs, webhooks as rows};
use mecapy_shared::jobs::JobStatus;
use mecapy_shared::webhooks::send::{self, Outcome};
use mecapy_shared::webhooks::{secret_from, verify, TargetPolicy};
use mecapy_shared::AppState;
use mecapy_testkit::receiver::{Received, WebhookReceiver};
use mecapy_testkit::{
    assert_problem, body_json, json_request, receive, request, send_message, TestContext,
};
use serde_json::{json, Value};
use uuid::Uuid;
use webhooks::{RetryQueue, Webhooks};

struct Setup {
    ctx: TestContext,
    sqs: aws_sdk_sqs::Client,
    queue: String,
    webhooks: Webhooks,
    token: String,
}

async fn setup(user: &str) -> Setup {
    let ctx = TestContext::new().await;
    let sqs = ctx.sqs_client().await;
    let queue = ctx.webhooks_queue(&sqs, &ctx.queue_name("webhooks")).await;
    let webhooks = Webhooks {
        state: ctx.state.context.clone(),
        retries: Some(RetryQueue::new(sqs.clone(), &queue)),
    };
    let token = ctx.token_for(user).await;
    Setup {
        ctx,
        sqs,
        queue,
        webhooks,
        token,
    }
}

impl Setup {
    async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> lambda_http::Response<lambda_http::Body> {
        self.api_as(&self.token, method, path, body).await
    }

    async fn api_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> lambda_http::Response<lambda_http::Body> {
        let req = match body {
            Some(b) => json_request(method, path, Some(token), &b),
            None => request(method, path, Some(token), lambda_http::Body::Empty),
        };
        compute_submit::handle(self.ctx.state.clone(), req)
            .await
            .unwrap()
    }

    async fn submit(&self, callback_url: &str) -> Uuid {
        let r = self
            .api(
                Method::POST,
                "/compute",
                Some(json!({"tool": "python", "code": "print(1)", "callback_url": callback_url})),
            )
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{:?}", r.body());
        body_json(&r)["job_id"].as_str().unwrap().parse().unwrap()
    }

    /// What a dispatcher records: the job claimed, then finished with exit code 0.
    async fn finish(&self, id: Uuid) {
        let db = self.ctx.db().await;
        jobs::claim(&**db, id, Duration::from_secs(30), 3)
            .await
            .unwrap()
            .expect("the job is claimed");
        let finished = jobs::finish(
            &**db,
            id,
            &jobs::Finished {
                status: JobStatus::Succeeded,
                exit_code: Some(0),
                duration_ms: 1234,
                image_digest: None,
                limits: &mecapy_sandbox::Limits::default(),
                stdout_truncated: false,
                stderr_truncated: false,
                outputs: &[],
                outputs_truncated: false,
            },
        )
        .await
        .unwrap();
        assert!(finished.is_some(), "the job finishes");
        // As the dispatcher does after each step: the outbox goes to the bus.
        self.ctx.state.publish_events().await;
    }

    /// The next batch on the webhooks queue (the bus's events, or retries), handled by the
    /// function; the batch must have no item failure.
    async fn deliver_next(&self, wait_seconds: i32) -> usize {
        let batch = receive(&self.sqs, &self.queue, wait_seconds).await;
        let n = batch.records.len();
        if n == 0 {
            return 0;
        }
        let response = self
            .webhooks
            .handle(serde_json::to_value(&batch).unwrap())
            .await
            .unwrap();
        assert_eq!(response["batchItemFailures"], json!([]), "{response}");
        for m in &batch.records {
            self.sqs
                .delete_message()
                .queue_url(&self.queue)
                .receipt_handle(m.receipt_handle.clone().unwrap())
                .send()
                .await
                .unwrap();
        }
        n
    }

    async fn webhook_of(&self, id: Uuid) -> Value {
        let r = self.api(Method::GET, &format!("/compute/{id}"), None).await;
        assert_eq!(r.status(), StatusCode::OK);
        body_json(&r)["webhook"].clone()
    }

    async fn secret(&self, token: &str) -> Vec<u8> {
        let r = self
            .api_as(token, Method::GET, "/webhooks/secret", None)
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{:?}", r.body());
        let body = body_json(&r);
        assert_eq!(body["scheme"], "v1");
        let secret = body["secret"].as_str().unwrap();
        assert!(secret.starts_with("whsec_"), "{secret}");
        secret_from(secret)
    }
}

/// The receiver's checks: a signed JSON POST of the job's CalculationFinished, recent.
fn check_signed(got: &Received, secret: &[u8], job: Uuid) -> Value {
    assert_eq!(got.method, "POST");
    assert_eq!(got.header("content-type"), "application/json");
    let id = got.header("webhook-id");
    let timestamp = got.timestamp();
    assert!(
        (chrono::Utc::now().timestamp() - timestamp).abs() < 300,
        "timestamp {timestamp} is far from now"
    );
    let body = got.signed_calculation_finished(secret);
    assert_eq!(body["job_id"], job.to_string());
    assert_eq!(body["event_id"], id, "webhook-id is the event's id");
    body
}

#[tokio::test]
async fn a_finished_job_is_posted_signed_and_retried_after_a_500() {
    let s = setup("webhook-alice").await;
    let mut receiver = WebhookReceiver::start(vec![500, 200]).await;
    let job = s.submit(&receiver.url("/hooks/alice?job=1")).await;
    let secret = s.secret(&s.token).await;
    assert_eq!(
        s.webhook_of(job).await,
        Value::Null,
        "nothing to send before the end"
    );

    s.finish(job).await;
    assert_eq!(
        s.deliver_next(10).await,
        1,
        "CalculationFinished reaches the webhooks queue"
    );

    // First attempt: signed, answered 500, recorded.
    let first = receiver
        .next(Duration::from_secs(15))
        .await
        .expect("the receiver gets the first attempt");
    assert_eq!(first.path, "/hooks/alice?job=1");
    assert_eq!(first.answered, 500);
    let body = check_signed(&first, &secret, job);
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["exit_code"], 0);
    assert_eq!(body["duration_ms"], 1234);
    assert_eq!(body["links"]["self"], format!("/compute/{job}"));
    let hook = s.webhook_of(job).await;
    assert_eq!(hook["state"], "pending", "{hook}");
    assert_eq!(hook["attempts"], 1);
    assert_eq!(hook["last_status"], 500);
    assert!(hook["next_attempt_at"].is_string(), "{hook}");

    // Another user's secret does not verify it: each user has their own.
    let bob = s.ctx.token_for("webhook-bob").await;
    let bob_secret = s.secret(&bob).await;
    assert_ne!(bob_secret, secret);
    let ts: i64 = first.header("webhook-timestamp").parse().unwrap();
    assert!(!verify(
        &bob_secret,
        first.header("webhook-id"),
        ts,
        &first.body,
        first.header("webhook-signature")
    ));

    // The retry comes back from the queue after its backoff (2 s): the same message, answered 200.
    let mut handled = 0;
    for _ in 0..5 {
        handled += s.deliver_next(5).await;
        if handled > 0 {
            break;
        }
    }
    assert_eq!(handled, 1, "the retry message arrives");
    let second = receiver
        .next(Duration::from_secs(15))
        .await
        .expect("the receiver gets the retry");
    assert_eq!(second.answered, 200);
    let again = check_signed(&second, &secret, job);
    assert_eq!(again, body, "the retry carries the same event");
    assert_eq!(second.header("webhook-id"), first.header("webhook-id"));
    let hook = s.webhook_of(job).await;
    assert_eq!(hook["state"], "delivered", "{hook}");
    assert_eq!(hook["attempts"], 2);
    assert_eq!(hook["last_status"], 200);
    assert!(hook["delivered_at"].is_string(), "{hook}");
    assert_eq!(hook["next_attempt_at"], Value::Null);

    // A duplicate of either message sends nothing more.
    let db = s.ctx.db().await;
    let delivery = rows::of_event(&**db, again["event_id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    for body in [
        send::retry_message(delivery),
        json!({"source": "mecapy", "detail-type": "CalculationFinished", "detail": again})
            .to_string(),
    ] {
        send_message(&s.sqs, &s.queue, body).await;
    }
    while s.deliver_next(1).await > 0 {}
    assert!(
        receiver.next(Duration::from_secs(2)).await.is_none(),
        "sent once"
    );
    assert_eq!(s.webhook_of(job).await["attempts"], 2);

    // A job without callback_url has no delivery: its event is acknowledged.
    let r = s
        .api(
            Method::POST,
            "/compute",
            Some(json!({"tool": "python", "code": "print(2)"})),
        )
        .await;
    let plain: Uuid = body_json(&r)["job_id"].as_str().unwrap().parse().unwrap();
    s.finish(plain).await;
    assert_eq!(s.deliver_next(10).await, 1);
    assert_eq!(s.webhook_of(plain).await, Value::Null);
    assert!(receiver.next(Duration::from_secs(1)).await.is_none());
}

#[tokio::test]
async fn private_and_malformed_callback_urls_are_refused_with_400() {
    let s = setup("webhook-carol").await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.0.0.5/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://192.168.1.1/hook",
        "http://100.64.0.1/hook",
        "http://0.0.0.0/hook",
        "http://172.17.0.2/hook",
        "http://2130706433/hook",
        "ftp://172.17.0.1/hook",
        "http://user:pw@172.17.0.1/hook",
        "not a url",
        "http:///hook",
    ] {
        let r = s
            .api(Method::POST, "/compute", Some(job_calling_back(url)))
            .await;
        let problem = assert_problem(&r, StatusCode::BAD_REQUEST);
        assert_eq!(problem["field"], "callback_url", "{url}: {problem}");
    }
    let too_long = format!("http://172.17.0.1/{}", "a".repeat(2100));
    let r = s
        .api(Method::POST, "/compute", Some(job_calling_back(&too_long)))
        .await;
    assert_callback_refused(&r);

    // Rules check their callback_url the same way.
    let req = json_request(
        Method::POST,
        "/rules",
        Some(&s.token),
        &json!({"filename_glob": "*.csv", "tool": "python", "code": "print(1)",
                "callback_url": "http://169.254.169.254/"}),
    );
    let r = rules::handle(s.ctx.state.clone(), req).await.unwrap();
    assert_callback_refused(&r);

    // Nothing was accepted.
    let r = s.api(Method::GET, "/compute", None).await;
    assert_eq!(body_json(&r)["items"], json!([]));

    // Production's policy: https only, and the development address is private like any other.
    let strict = with_policy(&s.ctx.state, TargetPolicy::default());
    for (url, says) in [
        ("http://172.17.0.1/hook", "https"),
        ("https://172.17.0.1/hook", "private"),
    ] {
        let r = submit_api(&strict, compute_calling_back(&s.token, url)).await;
        let problem = assert_problem(&r, StatusCode::BAD_REQUEST);
        assert!(
            problem["detail"].as_str().unwrap().contains(says),
            "{url}: {problem}"
        );
    }

    // Without a webhook secret the platform has no webhooks.
    let mut config = (*s.ctx.state.config).clone();
    config.webhook_secret = None;
    let mut off = s.ctx.state.clone();
    off.config = Arc::new(config);
    let r = submit_api(&off, compute_calling_back(&s.token, "http://172.17.0.1/x")).await;
    assert_callback_refused(&r);
    let secret = |method: Method, token: Option<&str>| {
        request(method, "/webhooks/secret", token, lambda_http::Body::Empty)
    };
    for (state, req, status) in [
        (
            &off,
            secret(Method::GET, Some(&s.token)),
            StatusCode::BAD_REQUEST,
        ),
        (
            &s.ctx.state,
            secret(Method::POST, Some(&s.token)),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            &s.ctx.state,
            secret(Method::GET, None),
            StatusCode::UNAUTHORIZED,
        ),
    ] {
        assert_problem(&submit_api(state, req).await, status);
    }
}

/// A trivial python job that reports its end to `url`.
fn job_calling_back(url: &str) -> Value {
    json!({"tool": "python", "code": "print(1)", "callback_url": url})
}

/// `POST /compute` of `job_calling_back(url)` by the bearer of `token`.
fn compute_calling_back(token: &str, url: &str) -> lambda_http::Request {
    json_request(
        Method::POST,
        "/compute",
        Some(token),
        &job_calling_back(url),
    )
}

/// compute-submit's answer to `req` with `state`.
async fn submit_api(
    state: &AppState,
    req: lambda_http::Request,
) -> lambda_http::Response<lambda_http::Body> {
    compute_submit::handle(state.clone(), req).await.unwrap()
}

/// Asserts `r` refuses the request for its `callback_url`.
fn assert_callback_refused(r: &lambda_http::Response<lambda_http::Body>) {
    assert_eq!(
        assert_problem(r, StatusCode::BAD_REQUEST)["field"],
        "callback_url"
    );
}

fn with_policy(state: &AppState, policy: TargetPolicy) -> AppState {
    let mut config = (*state.config).clone();
    config.webhook_policy = policy;
    let mut state = state.clone();
    state.config = Arc::new(config);
    state
}

/// Makes a pending delivery due now (instead of waiting out its backoff).
async fn make_due(s: &Setup, job: Uuid) -> Uuid {
    let db = s.ctx.db().await;
    let row = db
        .query_one(
            "UPDATE webhook_deliveries SET next_attempt_at = now() WHERE job_id = $1 RETURNING id",
            &[&job],
        )
        .await
        .unwrap();
    row.get(0)
}

#[tokio::test]
async fn redirects_dead_receivers_and_refused_targets_are_never_followed_and_end_recorded() {
    let s = setup("webhook-dave").await;

    // A redirect is a failure, never followed (its location is a private address).
    let mut receiver = WebhookReceiver::start(vec![302]).await;
    let job = s.submit(&receiver.url("/moved")).await;
    s.finish(job).await;
    let db = s.ctx.db().await;
    let id = make_due(&s, job).await;
    match send::attempt(&s.ctx.state, &**db, id).await.unwrap() {
        Outcome::Retry {
            attempt: 1,
            status: Some(302),
            error,
            after,
        } => {
            assert!(error.contains("redirects are not followed"), "{error}");
            assert_eq!(after, Duration::from_secs(2));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        receiver
            .next(Duration::from_secs(5))
            .await
            .unwrap()
            .answered,
        302
    );
    assert!(
        receiver.next(Duration::from_secs(1)).await.is_none(),
        "the redirect was followed"
    );
    // Not due yet: a second deliverer sends nothing.
    assert_eq!(
        send::attempt(&s.ctx.state, &**db, id).await.unwrap(),
        Outcome::NotDue
    );

    // The same delivery, its target now refused (as when a name moves to a private address):
    // given up at once, with the reason.
    make_due(&s, job).await;
    let strict = with_policy(&s.ctx.state, TargetPolicy::default());
    match send::attempt(&strict, &**db, id).await.unwrap() {
        Outcome::GaveUp {
            attempt: 2, error, ..
        } => assert!(error.contains("https"), "{error}"),
        other => panic!("{other:?}"),
    }
    let hook = s.webhook_of(job).await;
    assert_eq!(hook["state"], "failed", "{hook}");
    assert_eq!(hook["attempts"], 2);
    assert!(receiver.next(Duration::from_secs(1)).await.is_none());

    // A receiver that is gone: retried until the attempts run out, then failed; the sweep
    // sends what is due.
    let gone = WebhookReceiver::start(vec![200]).await;
    let url = gone.url("/gone");
    drop(gone);
    let job = s.submit(&url).await;
    s.finish(job).await;
    let id = make_due(&s, job).await;
    for n in 1..send::MAX_ATTEMPTS {
        let outcomes = send::sweep(&s.ctx.state).await.unwrap();
        let mine: Vec<&Outcome> = outcomes
            .iter()
            .filter(|(d, _)| *d == id)
            .map(|(_, o)| o)
            .collect();
        assert!(
            matches!(mine.as_slice(), [Outcome::Retry { attempt, status: None, .. }] if *attempt == n),
            "attempt {n}: {mine:?}"
        );
        make_due(&s, job).await;
    }
    let outcomes = send::sweep(&s.ctx.state).await.unwrap();
    assert!(
        outcomes
            .iter()
            .any(|(d, o)| *d == id && matches!(o, Outcome::GaveUp { .. })),
        "{outcomes:?}"
    );
    let hook = s.webhook_of(job).await;
    assert_eq!(hook["state"], "failed", "{hook}");
    assert_eq!(hook["attempts"], send::MAX_ATTEMPTS);
    assert!(
        hook["last_error"].as_str().unwrap().contains("given up"),
        "{hook}"
    );

    // A cancelled job's end is sent too.
    let mut receiver = WebhookReceiver::start(vec![204]).await;
    let job = s.submit(&receiver.url("/cancelled")).await;
    let r = s
        .api(Method::DELETE, &format!("/compute/{job}"), None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let secret = s.secret(&s.token).await;
    let id = make_due(&s, job).await;
    assert!(matches!(
        send::attempt(&s.ctx.state, &**db, id).await.unwrap(),
        Outcome::Delivered { status: 204, .. }
    ));
    let got = receiver.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(check_signed(&got, &secret, job)["status"], "cancelled");
}
