//! End-to-end tests through the stack deployed to LocalStack (`make deploy`) and nothing else:
//! HTTP to its REST API, objects in its bucket, messages on its queues, the Lambdas running
//! inside LocalStack. A missing stack or service FAILS naming the command that fixes it.
//!
//! The tests run concurrently, except the redeployment and the killed dispatcher: they take
//! [`STACK`] exclusively, the others share it, so no request of another test meets the API while
//! it is being updated, and no other test's job is in the batch of the dispatcher that is killed.

use std::time::Duration;

use mecapy_e2e::api::{clip, Api, Payload, Reply};
use mecapy_e2e::auth::{self, forged_tokens, Provider};
use mecapy_e2e::journey::{
    demo_expected_stdout, submit, wait_final, DEMO_INTERCEPT, DEMO_SLOPE, PNG_SIGNATURE,
};
use mecapy_e2e::lambda::Lambda;
use mecapy_e2e::queues::Queues;
use mecapy_e2e::{demo_journey, DemoOptions, StackEnv};
use mecapy_testkit::{presign_body, put_presigned};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::RwLock;

/// Shared by every test, taken exclusively by the redeployment.
static STACK: RwLock<()> = RwLock::const_new(());

async fn ready() -> StackEnv {
    StackEnv::ready().await.unwrap_or_else(|e| panic!("{e}"))
}

/// The deployed stack, ready, and a client of its API.
async fn ready_api() -> (StackEnv, Api) {
    let env = ready().await;
    let api = Api::new(&env.api_url);
    (env, api)
}

fn ok<T>(result: Result<T, mecapy_e2e::Failure>, env: &StackEnv) -> T {
    result.unwrap_or_else(|f| panic!("{f}\nwhere to look: {}", env.where_to_look()))
}

/// An access token of the provider's for `sub`.
async fn token_for(env: &StackEnv, sub: &str) -> String {
    ok(Provider::new(env).token_for(sub).await, env)
}

/// A python job running `code`.
fn python_job(code: &str) -> Value {
    json!({"tool": "python", "code": code})
}

/// `submit`, which must succeed: the job's id.
async fn submitted(api: &Api, token: &str, body: &Value, env: &StackEnv) -> String {
    ok(submit(api, token, body).await, env)
}

/// `wait_final` within 120 s, polling `every`, which must succeed: the final job and the
/// statuses seen.
async fn final_job(
    api: &Api,
    token: &str,
    id: &str,
    every: Duration,
    env: &StackEnv,
) -> (Value, Vec<String>) {
    ok(
        wait_final(api, token, id, Duration::from_secs(120), every).await,
        env,
    )
}

/// A fresh name for a file, so that repeated runs never collide (409).
fn unique(prefix: &str, ext: &str) -> String {
    format!(
        "{prefix}-{}.{ext}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Takes the `count` events of `job` off the stack's events queue (the bus's rule target; other
/// tests' events are left alone): each one's detail, checked against its schema, with its
/// `DetailType` as `type`.
async fn take_events(env: &StackEnv, job: &str, count: usize) -> Vec<Value> {
    let queues = Queues::new(env).await;
    let bodies = queues
        .take_matching(&env.events_queue_url, count, Duration::from_secs(45), |b| {
            b.contains(job)
        })
        .await
        .unwrap_or_else(|e| panic!("events of job {job}: {e}"));
    bodies
        .iter()
        .map(|b| {
            let envelope: Value = serde_json::from_str(b).expect("events are JSON");
            assert_eq!(envelope["source"], "mecapy", "{envelope}");
            let kind = envelope["detail-type"].as_str().unwrap_or("").to_string();
            let mut detail = envelope["detail"].clone();
            mecapy_shared::events::Event::parse(&kind, detail.clone())
                .unwrap_or_else(|e| panic!("{kind} does not follow its schema ({e}): {envelope}"));
            detail["type"] = kind.into();
            detail
        })
        .collect()
}

fn assert_unauthorized(reply: &Reply, what: &str) -> Result<(), String> {
    let fail = |why: &str| {
        Err(format!(
            "{what}: {why} (got {} {}, body {})",
            reply.status,
            reply.header("content-type").unwrap_or("-"),
            clip(&reply.text(), 300)
        ))
    };
    if reply.status.as_u16() != 401 {
        return fail("expected 401");
    }
    if !reply
        .header("content-type")
        .is_some_and(|ct| ct.starts_with("application/problem+json"))
    {
        return fail("expected application/problem+json");
    }
    if !reply
        .header("www-authenticate")
        .is_some_and(|h| h.starts_with("Bearer"))
    {
        return fail("expected WWW-Authenticate: Bearer");
    }
    let Ok(body) = serde_json::from_slice::<Value>(&reply.body) else {
        return fail("the problem is not JSON");
    };
    if body["status"] != 401 || body["request_id"].as_str().is_none_or(|id| id.is_empty()) {
        return fail("the problem lacks status 401 or its request_id");
    }
    Ok(())
}

#[tokio::test]
async fn the_demo_journey_succeeds() {
    let _shared = STACK.read().await;
    let env = ready().await;
    let journey = demo_journey(&env, &DemoOptions::default()).await;
    for step in &journey.steps {
        eprintln!("{:>6} ms  {}", step.duration.as_millis(), step.name);
    }
    if let Some(step) = journey.failed_step() {
        let failure = step.outcome.as_ref().unwrap_err();
        panic!(
            "step \"{}\" failed: {failure}\nwhere to look: {}",
            step.name,
            env.where_to_look()
        );
    }
    let result = journey.result.expect("a result when no step failed");
    assert_eq!(result.user["email"], "alice@mecapy.dev");
    assert_eq!(result.job["status"], "succeeded", "{}", result.job);
    assert_eq!(result.job["exit_code"], 0);
    assert_eq!(result.stdout.trim(), demo_expected_stdout());
    assert_eq!(
        result.job["inputs"][0]["filename"], result.filename,
        "{}",
        result.job
    );
    let outputs = result.job["links"]["outputs"].as_array().expect("outputs");
    assert_eq!(outputs.len(), 2, "{}", result.job);
    let output = |name: &str| {
        outputs
            .iter()
            .find(|o| o["name"] == name)
            .and_then(|o| o["url"].as_str())
            .unwrap_or_else(|| panic!("no output {name}: {}", result.job))
            .to_string()
    };
    assert!(result.plot.starts_with(PNG_SIGNATURE));
    let api = Api::new(&env.api_url);
    let fit: Value = serde_json::from_str(&ok(api.fetch(&output("fit.json")).await, &env))
        .expect("fit.json is JSON");
    assert!(
        (fit["slope"].as_f64().unwrap() - DEMO_SLOPE).abs() < 1e-9,
        "{fit}"
    );
    assert!(
        (fit["intercept"].as_f64().unwrap() - DEMO_INTERCEPT).abs() < 1e-9,
        "{fit}"
    );
    take_events(&env, &result.job_id, 3).await;
}

#[tokio::test]
async fn a_manifest_in_the_bucket_runs_the_job_through_sqs_and_the_dispatch_lambda() {
    let _shared = STACK.read().await;
    let (env, api) = ready_api().await;
    let token = token_for(&env, "e2e-dispatch").await;
    // Long enough to be seen running while polling every 100 ms.
    let code = "import time\ntime.sleep(1.5)\nprint('dispatched', 6 * 7)\n";
    let id = submitted(&api, &token, &python_job(code), &env).await;
    let (job, polled) = final_job(&api, &token, &id, Duration::from_millis(100), &env).await;
    let mut seen = vec!["queued".to_string()];
    seen.extend(polled.into_iter().filter(|s| s != "queued"));
    assert_eq!(seen, ["queued", "running", "succeeded"], "{job}");
    assert_eq!(job["exit_code"], 0, "{job}");
    assert_eq!(job["attempts"], 1, "{job}");
    assert!(
        job["image_digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{job}"
    );
    let time = |field: &str| {
        chrono::DateTime::parse_from_rfc3339(
            job[field]
                .as_str()
                .unwrap_or_else(|| panic!("{field} is not set: {job}")),
        )
        .unwrap_or_else(|e| panic!("{field}: {e}"))
    };
    let (created, started, finished) =
        (time("created_at"), time("started_at"), time("finished_at"));
    assert!(created <= started && started <= finished, "{job}");
    assert!(
        finished - started >= chrono::Duration::milliseconds(1500),
        "the job slept 1.5 s: {job}"
    );
    let stdout = ok(
        api.fetch(job["links"]["stdout"].as_str().unwrap()).await,
        &env,
    );
    assert_eq!(stdout.trim(), "dispatched 42");

    // The objects are in the stack's bucket: the manifest whose notification started it all,
    // and the results compute-dispatch wrote.
    let storage = mecapy_testkit::storage_at(env.endpoint(), &env.bucket, &env.local).await;
    let uuid: uuid::Uuid = id.parse().unwrap();
    use mecapy_shared::jobs::keys;
    let manifest = storage
        .get(&keys::manifest(uuid), 1 << 20)
        .await
        .expect("S3 get")
        .unwrap_or_else(|| panic!("no manifest of {id} in bucket {}", env.bucket));
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(manifest["job_id"], id.as_str());
    let stored = storage
        .get(&keys::stdout(uuid), 1 << 20)
        .await
        .expect("S3 get")
        .unwrap_or_else(|| panic!("no stdout of {id} in bucket {}", env.bucket));
    assert_eq!(stored.as_ref(), stdout.as_bytes());

    let events = take_events(&env, &id, 3).await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or(""))
        .collect();
    assert!(
        kinds.contains(&"CalculationStarted") && kinds.contains(&"CalculationFinished"),
        "{events:?}"
    );
    let finished_event = events
        .iter()
        .find(|e| e["type"] == "CalculationFinished")
        .unwrap();
    assert_eq!(finished_event["status"], "succeeded");
    assert_eq!(finished_event["duration_ms"], job["duration_ms"]);
}

/// A job's end reaches its callback_url through the deployed stack: the dispatcher's final
/// state -> outbox -> bus -> WebhooksRule -> SQS -> the webhooks Lambda (in its container on the
/// docker bridge) -> this test's receiver on 172.17.0.1, which answers 500 first and then sees
/// the retry (its delayed message), both signed with the user's secret.
#[tokio::test]
async fn a_jobs_end_reaches_its_callback_url_signed_and_retried_after_a_500() {
    use mecapy_testkit::receiver::WebhookReceiver;
    let _shared = STACK.read().await;
    let (env, api) = ready_api().await;
    let token = token_for(&env, "e2e-webhooks").await;
    let mut receiver = WebhookReceiver::start(vec![500, 200]).await;
    let secret = ok(api.get("/webhooks/secret", Some(&token)).await, &env);
    let secret = ok(secret.expect(200), &env);
    let secret = mecapy_shared::webhooks::secret_from(secret["secret"].as_str().unwrap());

    let id = submitted(
        &api,
        &token,
        &json!({"tool": "python", "code": "print('hooked')",
                    "callback_url": receiver.url("/e2e")}),
        &env,
    )
    .await;
    let (job, _) = final_job(&api, &token, &id, Duration::from_millis(200), &env).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let finished = std::time::Instant::now();

    let mut attempts = Vec::new();
    for _ in 0..2 {
        let got = receiver
            .next(Duration::from_secs(90))
            .await
            .unwrap_or_else(|| {
                panic!(
                    "the receiver got {} of 2 attempts for job {id}\nwhere to look: {}",
                    attempts.len(),
                    env.where_to_look()
                )
            });
        let body = got.signed_calculation_finished(&secret);
        assert_eq!(body["job_id"], id.as_str());
        assert_eq!(body["status"], "succeeded");
        eprintln!(
            "webhook attempt answered {} at {} ms after the job was seen final",
            got.answered,
            finished.elapsed().as_millis()
        );
        attempts.push(got);
    }
    assert_eq!(attempts[0].answered, 500);
    assert_eq!(attempts[1].answered, 200);
    assert_eq!(
        attempts[0].header("webhook-id"),
        attempts[1].header("webhook-id")
    );
    assert_eq!(attempts[0].body, attempts[1].body);

    // Recorded on the job.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let job = ok(
            ok(api.get(&format!("/compute/{id}"), Some(&token)).await, &env).expect(200),
            &env,
        );
        let hook = &job["webhook"];
        if hook["state"] == "delivered" {
            assert_eq!(hook["attempts"], 2, "{hook}");
            assert_eq!(hook["last_status"], 200, "{hook}");
            assert_eq!(job["callback_url"], receiver.url("/e2e"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not recorded delivered: {hook}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        receiver.next(Duration::from_secs(3)).await.is_none(),
        "delivered once"
    );

    // A private target is refused by the deployed API with a problem+json 400.
    let reply = ok(
        api.post_json(
            "/compute",
            Some(&token),
            &json!({"tool": "python", "code": "print(1)",
                    "callback_url": "http://169.254.169.254/latest/meta-data/"}),
        )
        .await,
        &env,
    );
    assert_eq!(reply.status.as_u16(), 400, "{}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(ok(reply.json(), &env)["field"], "callback_url");
}

/// The bucket is the source of truth: through S3 -> EventBridge -> SQS -> the upload-events
/// Lambda, a presigned PUT nobody completes becomes available (and announced), and an object
/// written behind the API's back is removed.
#[tokio::test]
async fn uploads_are_finished_and_strays_removed_by_the_buckets_own_events() {
    let _shared = STACK.read().await;
    let (env, api) = ready_api().await;
    let token = token_for(&env, "e2e-bucket-events").await;
    let name = unique("no complete", "csv");
    let data = b"t,v\n0,1\n1,3\n".to_vec();
    let grant = ok(
        ok(
            api.post_json(
                "/files/presign",
                Some(&token),
                &presign_body(&name, "text/csv", &data),
            )
            .await,
            &env,
        )
        .expect(201),
        &env,
    );
    let id = grant["file"]["id"].as_str().unwrap().to_string();
    put_presigned(&grant, &data).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let file = loop {
        let file = ok(
            ok(api.get(&format!("/files/{id}"), Some(&token)).await, &env).expect(200),
            &env,
        );
        if file["status"] == "available" {
            break file;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no /complete and still {file} after 60 s: upload-events did not finish it\nwhere to look: {}",
            env.where_to_look()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(file["size_bytes"], data.len());
    let events = take_events(&env, &id, 1).await;
    assert_eq!(events[0]["type"], "FileUploaded", "{events:?}");
    assert_eq!(events[0]["sha256"], file["sha256"]);

    let storage = mecapy_testkit::storage_at(env.endpoint(), &env.bucket, &env.local).await;
    let stray = format!("{}/{}", uuid::Uuid::new_v4(), unique("stray", "csv"));
    storage
        .put(&stray, bytes::Bytes::from_static(b"x"), "text/csv")
        .await
        .expect("S3 put");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while storage.head(&stray).await.expect("S3 head").is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "{stray} has no row and is still in the bucket after 60 s\nwhere to look: {}",
            env.where_to_look()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_poison_message_ends_in_the_dead_letter_queue_with_its_job_error() {
    let _shared = STACK.read().await;
    let env = ready().await;
    let url = env.var("DATABASE_URL").to_string();
    let db = mecapy_testkit::database_config(&url, &env.local)
        .connect()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {url} ({}): `make up`",
                mecapy_shared::http::error_chain(&e)
            )
        });
    let tool = format!(
        "e2e-missing-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let tool_id: uuid::Uuid = db
        .query_one(
            "INSERT INTO tools (name, description, image, memory_mb, cpus, timeout_seconds, pids_limit)
             VALUES ($1, 'e2e: an image the engine does not have', 'mecapy-missing:e2e', 128, 0.5, 10, 64)
             RETURNING id",
            &[&tool],
        )
        .await
        .unwrap_or_else(|e| panic!("insert tool {tool}: {e} (migrated? `make migrate`)"))
        .get(0);

    let body = {
        let env = env.clone();
        let tool = tool.clone();
        tokio::spawn(async move {
            let api = Api::new(&env.api_url);
            let token = token_for(&env, "e2e-poison").await;
            let id = submitted(
                &api,
                &token,
                &json!({"tool": tool, "code": "print(1)"}),
                &env,
            )
            .await;
            // Retries back off (RetryBaseSeconds) until MaxReceives, then the job is `error`.
            let (job, seen) = ok(
                wait_final(
                    &api,
                    &token,
                    &id,
                    Duration::from_secs(180),
                    Duration::from_millis(500),
                )
                .await,
                &env,
            );
            assert_eq!(job["status"], "error", "statuses {seen:?}: {job}");
            let error = job["error"].as_str().unwrap_or("");
            assert!(error.contains("attempts"), "{job}");
            assert!(error.contains("mecapy-missing:e2e"), "{job}");
            assert!(job["attempts"].as_i64().unwrap_or(0) >= 2, "{job}");

            let queues = Queues::new(&env).await;
            let dead = queues
                .take_matching(&env.compute_dlq_url, 1, Duration::from_secs(120), |b| {
                    b.contains(&id)
                })
                .await
                .unwrap_or_else(|e| panic!("dead-letter message of job {id}: {e}"));
            assert!(
                dead[0].contains(&format!("jobs/{id}/manifest.json")),
                "{}",
                dead[0]
            );
            // One CalculationStarted per claim, then the CalculationFinished of the give-up.
            let attempts = job["attempts"].as_u64().unwrap() as usize;
            let events = take_events(&env, &id, attempts + 2).await;
            let finished: Vec<&Value> = events
                .iter()
                .filter(|e| e["type"] == "CalculationFinished")
                .collect();
            assert_eq!(finished.len(), 1, "{events:?}");
            assert_eq!(finished[0]["status"], "error", "{events:?}");
        })
    };
    let outcome = body.await;
    // The tool is removed whatever happened (its jobs first: they reference it).
    db.execute("DELETE FROM jobs WHERE tool_id = $1", &[&tool_id])
        .await
        .expect("delete the test's jobs");
    db.execute("DELETE FROM tools WHERE id = $1", &[&tool_id])
        .await
        .expect("delete the test tool");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// `docker` with `args`; its stdout's lines.
fn docker(args: &[&str]) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("docker {args:?}: {e} (start the engine: `make up`)"));
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn a_dispatcher_killed_mid_job_leaves_no_container_and_its_job_still_ends() {
    // Alone: the kill takes down whatever batch the dispatcher holds, other tests' jobs included.
    let _exclusive = STACK.write().await;
    let (env, api) = ready_api().await;
    let token = token_for(&env, "e2e-killed").await;
    let id = submitted(&api, &token, &python_job("while True:\n    pass\n"), &env).await;
    let label = format!("label=org.mecapy.job-id={id}");
    let started = std::time::Instant::now();
    let seen = loop {
        if !docker(&["ps", "-q", "--filter", &label]).is_empty() {
            break std::time::Instant::now();
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "job {id} never got its container"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Kill the dispatcher: SIGKILL to the `bootstrap` process of each compute-dispatch Lambda
    // container (LocalStack names them `<main>-lambda-<function, lowercase>-<executor>`). The
    // function's init reports the crash as Runtime.ExitError and starts a new bootstrap, as Lambda
    // does.
    let name = format!("name=-lambda-{}-", env.dispatch_function.to_lowercase());
    let mut killed = 0;
    for container in docker(&["ps", "-q", "--filter", &name]) {
        for process in docker(&["top", &container, "-eo", "pid,args"]) {
            let mut fields = process.split_whitespace();
            let (Some(pid), Some(command)) = (fields.next(), fields.next()) else {
                continue;
            };
            if command.ends_with("/bootstrap") {
                let status = std::process::Command::new("kill")
                    .args(["-KILL", pid])
                    .status()
                    .expect("kill");
                assert!(status.success(), "kill -KILL {pid}");
                killed += 1;
            }
        }
    }
    assert!(killed > 0, "no compute-dispatch bootstrap running ({name})");
    let job = ok(api.get(&format!("/compute/{id}"), Some(&token)).await, &env)
        .expect(200)
        .unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(job["status"], "running", "{job}");
    let lease: chrono::DateTime<chrono::Utc> = job["lease_expires_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("a running job has its lease: {job}"));

    // Its container ends by itself: the python tool's 30 s limit + 5 s.
    loop {
        let left = docker(&["ps", "-aq", "--filter", &label]);
        if left.is_empty() {
            break;
        }
        assert!(
            seen.elapsed() < Duration::from_secs(35),
            "container {left:?} of job {id} outlived its limit + 5 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The claim's watchdog (or the sweep) gives the job to a new dispatcher: final within
    // lease + 60 s, `timeout` (it is an endless loop), claimed twice.
    let budget = (lease + chrono::Duration::seconds(60) - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    let (job, statuses) = ok(
        wait_final(&api, &token, &id, budget, Duration::from_millis(500)).await,
        &env,
    );
    assert_eq!(job["status"], "timeout", "statuses {statuses:?}: {job}");
    assert_eq!(job["attempts"], 2, "{job}");
}

#[tokio::test]
async fn every_protected_route_refuses_missing_and_forged_tokens() {
    let _shared = STACK.read().await;
    let (env, api) = ready_api().await;
    let provider = Provider::new(&env);
    let forged = ok(forged_tokens(&provider, "e2e-forger").await, &env);
    let some_id = uuid::Uuid::new_v4();
    let (multipart_type, multipart_body) =
        mecapy_e2e::api::multipart("forged.csv", "text/csv", b"1,2\n");
    let presign = presign_body("forged.csv", "text/csv", b"1,2\n");
    let compute = json!({"tool": "python", "code": "print(1)"});
    let routes: Vec<(Method, String, Payload)> = vec![
        (Method::GET, "/files".into(), Payload::Empty),
        (
            Method::POST,
            "/files".into(),
            Payload::Raw(multipart_type, multipart_body.clone()),
        ),
        (Method::GET, format!("/files/{some_id}"), Payload::Empty),
        (
            Method::POST,
            "/files/presign".into(),
            Payload::Json(&presign),
        ),
        (
            Method::POST,
            format!("/files/{some_id}/complete"),
            Payload::Empty,
        ),
        (Method::GET, "/compute".into(), Payload::Empty),
        (Method::POST, "/compute".into(), Payload::Json(&compute)),
        (Method::GET, format!("/compute/{some_id}"), Payload::Empty),
        (
            Method::DELETE,
            format!("/compute/{some_id}"),
            Payload::Empty,
        ),
        (Method::GET, "/webhooks/secret".into(), Payload::Empty),
    ];
    let mut failures = Vec::new();
    let mut checked = 0;
    for (method, path, payload) in &routes {
        for token in &forged {
            let payload = match payload {
                Payload::Empty => Payload::Empty,
                Payload::Json(v) => Payload::Json(v),
                Payload::Raw(ct, b) => Payload::Raw(ct, b.clone()),
            };
            let what = format!("{method} {path} with {}", token.name);
            match api
                .send_with(method.clone(), path, token.authorization.clone(), payload)
                .await
            {
                Ok(reply) => {
                    if let Err(e) = assert_unauthorized(&reply, &what) {
                        failures.push(e);
                    }
                }
                Err(f) => failures.push(format!("{what}: {f}")),
            }
            checked += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} refusals wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The same routes do answer a valid token: the refusals above are about the tokens.
    let token = ok(provider.token_for("e2e-forger").await, &env);
    for (path, status) in [
        ("/files".to_string(), 200),
        (format!("/files/{some_id}"), 404),
        ("/compute".to_string(), 200),
        (format!("/compute/{some_id}"), 404),
    ] {
        let reply = ok(api.get(&path, Some(&token)).await, &env);
        assert_eq!(
            reply.status.as_u16(),
            status,
            "GET {path}: {}",
            reply.text()
        );
    }
}

/// Runs `infra/deploy.sh deploy` as a user would; its output goes to a log file.
async fn redeploy(env: &StackEnv) {
    let log_path = mecapy_e2e::env::run_dir().join("logs/e2e-redeploy.log");
    std::fs::create_dir_all(log_path.parent().unwrap()).unwrap();
    let log = std::fs::File::create(&log_path).unwrap();
    let script = env.root.join("infra/deploy.sh");
    let mut command = tokio::process::Command::new(&script);
    command
        .arg("deploy")
        .current_dir(&env.root)
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    // A changed parameter makes it a real update of every function, not an empty change set:
    // the log filter gains a directive for a target that does not exist (no `=` in the value).
    command.env(
        "DEPLOY_PARAMETER_OVERRIDES",
        format!(
            "LogLevel=info,e2e_redeploy_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ),
    );
    let status = command
        .status()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    if !status.success() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        panic!(
            "{} deploy failed ({status}); last lines of {}:\n{}",
            script.display(),
            log_path.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

/// The API answers again after a deployment (functions restart with their new configuration).
/// Checks that `/{collection}` lists the item `id`, then returns `GET /{collection}/{id}`.
async fn listed(
    api: &Api,
    token: &str,
    collection: &str,
    id: &str,
) -> Result<Value, mecapy_e2e::Failure> {
    let page = api
        .get(&format!("/{collection}?limit=100"), Some(token))
        .await?
        .expect(200)?;
    let found = page["items"]
        .as_array()
        .is_some_and(|items| items.iter().any(|i| i["id"] == id));
    if !found {
        return Err(mecapy_e2e::Failure::new(format!(
            "{id} not listed in /{collection}: {page}"
        )));
    }
    api.get(&format!("/{collection}/{id}"), Some(token))
        .await?
        .expect(200)
}

async fn ready_again() -> StackEnv {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        match StackEnv::ready().await {
            Ok(env) => return env,
            Err(e) if std::time::Instant::now() > deadline => panic!("after the redeployment: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

#[tokio::test]
async fn a_redeployment_keeps_files_and_jobs() {
    let _exclusive = STACK.write().await;
    let (env, api) = ready_api().await;
    let session = ok(auth::login(&api, "bob", "bob-password").await, &env);
    let token = session.access_token.clone();

    let filename = unique("redeploy", "txt");
    let content = format!("kept across deployments: {filename}\n");
    let file = ok(
        ok(
            api.upload(&token, &filename, "text/plain", content.as_bytes())
                .await,
            &env,
        )
        .expect(201),
        &env,
    );
    let file_id = file["id"].as_str().unwrap().to_string();
    let code = format!("print(open('inputs/{filename}').read().upper(), end='')\n");
    let job_id = submitted(
        &api,
        &token,
        &json!({"tool": "python", "code": code, "input_file_ids": [file_id]}),
        &env,
    )
    .await;
    let (job, _) = final_job(&api, &token, &job_id, Duration::from_millis(250), &env).await;
    assert_eq!(job["status"], "succeeded", "{job}");

    let lambda = Lambda::new(&env);
    let login_fn = ok(
        lambda.function_of(&env.stack_name, "LoginFunction").await,
        &env,
    );
    let before = ok(lambda.configuration(&login_fn).await, &env);

    let started = std::time::Instant::now();
    redeploy(&env).await;
    eprintln!("redeployed in {:.1} s", started.elapsed().as_secs_f64());
    let after_env = ready_again().await;
    assert_eq!(after_env.api_id, env.api_id, "the update kept the REST API");
    assert_eq!(after_env.bucket, env.bucket);
    assert_eq!(after_env.compute_queue_url, env.compute_queue_url);
    assert_eq!(after_env.compute_dlq_url, env.compute_dlq_url);
    assert_eq!(after_env.events_queue_url, env.events_queue_url);
    let after = ok(lambda.configuration(&login_fn).await, &env);
    assert_ne!(
        after["LastModified"], before["LastModified"],
        "the redeployment did not update {login_fn} (empty change set): infra/deploy.sh should \
         honour DEPLOY_PARAMETER_OVERRIDES so that the test forces a real update"
    );

    let api = Api::new(&after_env.api_url);
    // The data: listed and downloadable.
    let file = ok(listed(&api, &token, "files", &file_id).await, &env);
    let downloaded = ok(
        api.fetch(file["download_url"].as_str().unwrap()).await,
        &env,
    );
    assert_eq!(downloaded, content);
    let job = ok(listed(&api, &token, "compute", &job_id).await, &env);
    assert_eq!(job["status"], "succeeded", "{job}");
    let stdout = ok(
        api.fetch(job["links"]["stdout"].as_str().unwrap()).await,
        &env,
    );
    assert_eq!(stdout, content.to_uppercase());

    // New requests work: a new login, a new upload, a new job run by the redeployed dispatcher,
    // its code read from the uploaded file.
    let session = ok(auth::login(&api, "bob", "bob-password").await, &env);
    let token = session.access_token;
    let second = unique("after-redeploy", "py");
    let script = ok(
        ok(
            api.upload(&token, &second, "text/x-python", b"print(sum([1, 2, 3]))\n")
                .await,
            &env,
        )
        .expect(201),
        &env,
    );
    let body = json!({"tool": "python", "file_id": script["id"]});
    let new_job = submitted(&api, &token, &body, &env).await;
    let (job, _) = final_job(&api, &token, &new_job, Duration::from_millis(250), &env).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let stdout = ok(
        api.fetch(job["links"]["stdout"].as_str().unwrap()).await,
        &env,
    );
    assert_eq!(stdout.trim(), "6");
    take_events(&env, &job_id, 3).await;
    take_events(&env, &new_job, 3).await;
}
