//! The compute flow on the REAL services: `compute-submit` in-process, the manifest's S3
//! notification to a LocalStack SQS queue, the batch handed to `compute-dispatch` in-process,
//! the job run by the Docker engine in the `mecapy-python:bookworm` image.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::compute_api;
use compute_dispatch::Dispatcher;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request};
use mecapy_sandbox::DockerRuntime;
use mecapy_shared::db;
use mecapy_testkit::{
    assert_problem, body_json, get_request, json_request, multipart_request, request,
    ComputeQueues, TestContext,
};
use serde_json::{json, Value};

const IMAGE_HINT: &str = "build the compute image with `infra/images.sh` (make test does)";

struct Compute {
    ctx: TestContext,
    queues: ComputeQueues,
    dispatcher: Dispatcher,
}

async fn compute(max_receives: u32) -> Compute {
    let ctx = TestContext::with(|c| c.max_receives = max_receives).await;
    let queues = ctx.compute_queues(max_receives, 1).await;
    let image = std::process::Command::new("docker")
        .args(["image", "inspect", "mecapy-python:bookworm"])
        .output();
    assert!(
        image.is_ok_and(|o| o.status.success()),
        "the image mecapy-python:bookworm is missing: {IMAGE_HINT}"
    );
    let runtime = DockerRuntime::connect().await.unwrap_or_else(|e| {
        panic!("Docker engine unavailable ({e}): start it with `infra/services.sh up`")
    });
    let dispatcher = Dispatcher {
        state: ctx.state.context.clone(),
        compute: compute_dispatch::Compute::Engine(Arc::new(runtime)),
        retries: None,
        compute_queue: None,
        concurrency: 2,
    };
    Compute {
        ctx,
        queues,
        dispatcher,
    }
}

impl Compute {
    async fn call(&self, req: Request) -> lambda_http::Response<Body> {
        compute_api(&self.ctx.state, req).await
    }

    async fn submit(&self, token: &str, body: Value) -> lambda_http::Response<Body> {
        self.call(json_request(Method::POST, "/compute", Some(token), &body))
            .await
    }

    /// A token for `user` and the id of the python job of `code` it submitted.
    async fn submitted(&self, user: &str, code: &str) -> (String, String) {
        let token = self.ctx.token_for(user).await;
        let id = job_id(
            &self
                .submit(&token, json!({"tool": "python", "code": code}))
                .await,
        );
        (token, id)
    }

    async fn job(&self, token: &str, id: &str) -> Value {
        let r = self
            .call(get_request(&format!("/compute/{id}"), token))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        body_json(&r)
    }

    /// Hands every message the queue delivers to the dispatcher until `job` reaches a final
    /// state (or the deadline passes); returns the number of batches handled.
    async fn dispatch_until_final(&self, token: &str, job: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let batch = self.queues.receive_batch(1).await;
            if !batch.records.is_empty() {
                let response = self.dispatcher.handle(batch.clone()).await.unwrap();
                self.queues.acknowledge(&batch, &response).await;
            }
            let state = self.job(token, job).await;
            if !matches!(state["status"].as_str(), Some("queued" | "running")) {
                return state;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "job {job} never finished: {state}"
            );
        }
    }
}

fn job_id(r: &lambda_http::Response<Body>) -> String {
    assert_eq!(
        r.status(),
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(r.body().as_ref())
    );
    body_json(r)["job_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn numpy_job_reads_its_input_and_writes_an_output() {
    let c = compute(3).await;
    let token = c.ctx.token_for("scientist").await;
    let csv = b"x,y\n1,2\n3,4\n5,6\n";
    let r = upload::handle(
        c.ctx.state.clone(),
        multipart_request("/files", Some(&token), "data.csv", "text/csv", csv),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let file_id = body_json(&r)["id"].as_str().unwrap().to_string();
    let code = r#"
import json
import numpy as np

data = np.loadtxt("inputs/data.csv", delimiter=",", skiprows=1)
result = {"mean_y": float(data[:, 1].mean()), "n": int(data.shape[0])}
with open("out/result.json", "w") as f:
    json.dump(result, f)
print("mean", result["mean_y"])
"#;
    let id = job_id(
        &c.submit(
            &token,
            json!({"tool": "python", "code": code, "input_file_ids": [file_id]}),
        )
        .await,
    );
    let job = c.dispatch_until_final(&token, &id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["exit_code"], 0);
    assert!(
        job["image_digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{job}"
    );
    assert_eq!(job["limits"]["memory_mb"], 256);
    assert_eq!(job["attempts"], 1);
    let stdout = reqwest::get(job["links"]["stdout"].as_str().unwrap())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(stdout.trim(), "mean 4.0");
    let outputs = job["links"]["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 1, "{job}");
    assert_eq!(outputs[0]["name"], "result.json");
    let result: Value = reqwest::get(outputs[0]["url"].as_str().unwrap())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(result, json!({"mean_y": 4.0, "n": 3}));

    // Every change of the job is on the bus, after its commit, each with its schema.
    let events = c
        .queues
        .events_until("CalculationFinished", &id, Duration::from_secs(30))
        .await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["detail-type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        [
            "CalculationQueued",
            "CalculationStarted",
            "CalculationFinished"
        ],
        "{events:?}"
    );
    for e in &events {
        assert_eq!(e["source"], "mecapy");
        let kind = e["detail-type"].as_str().unwrap();
        mecapy_shared::events::Event::parse(kind, e["detail"].clone())
            .unwrap_or_else(|err| panic!("{kind} does not follow its schema: {err}"));
    }
    let finished = &events[2]["detail"];
    assert_eq!(finished["status"], "succeeded");
    assert_eq!(finished["job_id"], id.as_str());
    assert_eq!(finished["exit_code"], 0);
    assert_eq!(finished["links"]["self"], format!("/compute/{id}"));
    assert!(finished["duration_ms"].as_i64().is_some(), "{finished}");
    assert_eq!(events[1]["detail"]["attempt"], 1);
}

/// The python tool allows matplotlib (migrations/0007_matplotlib.sql) and its image has it: a
/// plot saved to /work/out is stored as the job's output, a PNG, with nothing on stderr (no
/// warning about unwritable config or cache directories, no font cache built), and the two
/// strings matplotlib would turn into code (a `module://` backend, a cycler string) are refused
/// by the image even though the validator cannot see them.
#[tokio::test]
async fn matplotlib_job_saves_a_png_plot_as_its_output() {
    let c = compute(3).await;
    let token = c.ctx.token_for("plotter").await;
    let code = r#"
import numpy as np
import matplotlib
import matplotlib.pyplot as plt

x = np.linspace(0, 10, 20)
fig, ax = plt.subplots()
ax.scatter(x, 2.5 * x + 1 + np.sin(x), label="measured")
ax.plot(x, 2.5 * x + 1, "r-", label="fit")
ax.set_title("tensile test")
ax.legend()
fig.savefig("/work/out/plot.png")
print(matplotlib.get_backend())
for refused in (
    lambda: matplotlib.use("module://main"),
    lambda: matplotlib.rcParams.update({"axes.prop_cycle": "[(g := (g.gi_frame for _ in [1])), *g][1]"}),
):
    try:
        refused()
        print("accepted")
    except ValueError:
        print("refused")
"#;
    let id = job_id(
        &c.submit(&token, json!({"tool": "python", "code": code}))
            .await,
    );
    let job = c.dispatch_until_final(&token, &id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    eprintln!("matplotlib job ran {} ms", job["duration_ms"]);
    let fetch = |url: &str| {
        let url = url.to_string();
        async move {
            reqwest::get(&url)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .to_vec()
        }
    };
    let stdout = fetch(job["links"]["stdout"].as_str().unwrap()).await;
    assert_eq!(
        String::from_utf8_lossy(&stdout).trim(),
        "agg\nrefused\nrefused",
        "{job}"
    );
    if let Some(url) = job["links"]["stderr"].as_str() {
        let stderr = fetch(url).await;
        assert_eq!(
            String::from_utf8_lossy(&stderr).trim(),
            "",
            "stderr of {job}"
        );
    }
    let outputs = job["links"]["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 1, "{job}");
    assert_eq!(outputs[0]["name"], "plot.png");
    let png = fetch(outputs[0]["url"].as_str().unwrap()).await;
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "plot.png is not a PNG: {:?}",
        &png[..png.len().min(16)]
    );
    assert!(png.len() > 1000, "{} bytes", png.len());
}

#[tokio::test]
async fn static_validation_refuses_with_a_report() {
    let c = compute(3).await;
    let token = c.ctx.token_for("sneaky").await;
    for (code, rule) in [
        ("import os\nos.system('id')\n", "import-not-allowed"),
        ("x = eval('1+1')\n", "forbidden-call"),
        ("print(().__class__.__bases__)\n", "dunder-access"),
        ("import random\nrandom._os.system('id')\n", "private-access"),
        (
            "import statistics\nstatistics.sys.modules\n",
            "forbidden-attribute",
        ),
        (
            "import numpy as np\nd = np.load('x.npy', allow_pickle=True)\n",
            "unsafe-call",
        ),
        ("def f(:\n", "syntax-error"),
    ] {
        let r = c
            .submit(&token, json!({"tool": "python", "code": code}))
            .await;
        let body = assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
        let findings = body["findings"].as_array().unwrap();
        assert!(
            findings.iter().any(|f| f["rule"] == rule),
            "{code:?}: {body}"
        );
        assert!(findings[0]["line"].as_u64().unwrap() >= 1);
    }
    let count: i64 = c.ctx.query_value("SELECT count(*) FROM jobs", &[]).await;
    assert_eq!(count, 0, "no refused job is recorded");
}

#[tokio::test]
async fn bad_submissions_get_clear_errors() {
    let c = compute(3).await;
    let alice = c.ctx.token_for("alice-c").await;
    let bob = c.ctx.token_for("bob-c").await;
    let r = c
        .submit(&alice, json!({"tool": "fortran", "code": "print(1)"}))
        .await;
    assert_eq!(assert_problem(&r, StatusCode::BAD_REQUEST)["field"], "tool");
    let r = c.submit(&alice, json!({"tool": "python"})).await;
    assert_problem(&r, StatusCode::BAD_REQUEST);
    let r = c
        .submit(
            &alice,
            json!({"tool": "python", "code": "x = 1\n".repeat(100_000)}),
        )
        .await;
    assert_problem(&r, StatusCode::PAYLOAD_TOO_LARGE);

    let r = upload::handle(
        c.ctx.state.clone(),
        multipart_request("/files", Some(&bob), "b.csv", "text/csv", b"1"),
    )
    .await
    .unwrap();
    let bobs_file = body_json(&r)["id"].as_str().unwrap().to_string();
    let r = c
        .submit(
            &alice,
            json!({"tool": "python", "code": "print(1)", "input_file_ids": [bobs_file]}),
        )
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND);
    let r = c
        .submit(&alice, json!({"tool": "python", "file_id": bobs_file}))
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND);

    let id = job_id(
        &c.submit(&bob, json!({"tool": "python", "code": "print(1)"}))
            .await,
    );
    for (method, path) in [
        (Method::GET, format!("/compute/{id}")),
        (Method::DELETE, format!("/compute/{id}")),
    ] {
        let r = c
            .call(request(method, &path, Some(&alice), Body::Empty))
            .await;
        assert_problem(&r, StatusCode::NOT_FOUND);
    }
    let r = c.call(get_request("/compute", &alice)).await;
    assert_eq!(body_json(&r)["items"], json!([]));
    let r = c
        .call(request(Method::GET, "/compute", None, Body::Empty))
        .await;
    assert_problem(&r, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn cancelled_job_never_runs() {
    let c = compute(3).await;
    let (token, id) = c.submitted("canceller", "print('ran')").await;
    let r = c
        .call(request(
            Method::DELETE,
            &format!("/compute/{id}"),
            Some(&token),
            Body::Empty,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body_json(&r)["status"], "cancelled");
    // The manifest's event still arrives: the dispatcher must leave the job alone.
    for _ in 0..3 {
        let batch = c.queues.receive_batch(1).await;
        let response = c.dispatcher.handle(batch.clone()).await.unwrap();
        assert!(response.batch_item_failures.is_empty());
        c.queues.acknowledge(&batch, &response).await;
    }
    let job = c.job(&token, &id).await;
    assert_eq!(job["status"], "cancelled");
    assert_eq!(job["attempts"], 0);
    let r = c
        .call(request(
            Method::DELETE,
            &format!("/compute/{id}"),
            Some(&token),
            Body::Empty,
        ))
        .await;
    assert_problem(&r, StatusCode::CONFLICT);
}

#[tokio::test]
async fn the_same_event_delivered_twice_runs_the_job_once() {
    let c = compute(3).await;
    let (token, id) = c.submitted("twice", "print('once')").await;
    let batch = c.queues.batch_with(&id, Duration::from_secs(60)).await;
    let first = c.dispatcher.handle(batch.clone()).await.unwrap();
    let second = c.dispatcher.handle(batch.clone()).await.unwrap();
    assert!(first.batch_item_failures.is_empty() && second.batch_item_failures.is_empty());
    let job = c.job(&token, &id).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["attempts"], 1);
    let started = c
        .queues
        .events_until("CalculationFinished", &id, Duration::from_secs(30))
        .await
        .iter()
        .filter(|e| e["detail-type"] == "CalculationStarted")
        .count();
    assert_eq!(started, 1);
}

#[tokio::test]
async fn endless_loop_times_out() {
    let c = compute(3).await;
    db::tools::set_timeout(&**c.ctx.db().await, "python", 2)
        .await
        .unwrap();
    let (token, id) = c.submitted("looper", "while True:\n    pass\n").await;
    let job = c.dispatch_until_final(&token, &id).await;
    assert_eq!(job["status"], "timeout", "{job}");
    assert_eq!(job["limits"]["timeout_seconds"].as_f64(), Some(2.0));
}

#[tokio::test]
async fn failing_code_is_failed_with_its_exit_code_and_stderr() {
    let c = compute(3).await;
    let (token, id) = c.submitted("crasher", "raise SystemExit(3)\n").await;
    let job = c.dispatch_until_final(&token, &id).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["exit_code"], 3);
    let id = job_id(
        &c.submit(&token, json!({"tool": "python", "code": "1/0\n"}))
            .await,
    );
    let job = c.dispatch_until_final(&token, &id).await;
    let stderr = reqwest::get(job["links"]["stderr"].as_str().unwrap())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(stderr.contains("ZeroDivisionError"), "{stderr}");
}

#[tokio::test]
async fn unreadable_manifest_is_a_permanent_error_and_acknowledged() {
    let c = compute(3).await;
    let (token, id) = c.submitted("poisoner", "print(1)").await;
    // Overwrite the manifest with garbage: a second event for the same job.
    let key = format!("jobs/{id}/manifest.json");
    c.ctx
        .state
        .storage
        .put(
            &key,
            bytes::Bytes::from_static(b"{not json"),
            "application/json",
        )
        .await
        .unwrap();
    // Drop the first (valid) event so the garbage one is what the dispatcher reads.
    let job = c.dispatch_until_final(&token, &id).await;
    assert_eq!(job["status"], "error", "{job}");
    assert!(job["error"].as_str().unwrap().contains("manifest"), "{job}");
}

#[tokio::test]
async fn a_job_left_running_by_a_dead_dispatcher_is_claimed_again_after_its_lease() {
    let c = compute(3).await;
    let (token, id) = c.submitted("abandoned", "print('again')").await;
    let uuid: uuid::Uuid = id.parse().unwrap();
    let client = c.ctx.state.db.get().await.unwrap();
    // A dispatcher claimed it and died: within its lease, a redelivery leaves it alone and asks
    // to come back when the lease ends.
    client
        .execute(
            "UPDATE jobs SET status = 'running', attempts = 1, started_at = now(),
                 lease_expires_at = now() + interval '1 minute' WHERE id = $1",
            &[&uuid],
        )
        .await
        .unwrap();
    match c.dispatcher.run_job(uuid).await {
        Err(compute_dispatch::DispatchError::Later { after, .. }) => {
            assert!(
                after > Duration::from_secs(50) && after <= Duration::from_secs(61),
                "{after:?}"
            )
        }
        other => panic!("a held job must be left to its dispatcher: {other:?}"),
    }
    let job = c.job(&token, &id).await;
    assert_eq!(job["status"], "running", "{job}");
    // Past the lease, the next delivery runs it.
    client
        .execute(
            "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
            &[&uuid],
        )
        .await
        .unwrap();
    c.dispatcher.run_job(uuid).await.unwrap();
    let job = c.job(&token, &id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
    assert!(job["lease_expires_at"].is_null(), "{job}");
}

#[tokio::test]
async fn a_job_abandoned_max_attempts_times_is_given_up() {
    let c = compute(3).await;
    let (token, id) = c.submitted("abandoned-thrice", "print('never')").await;
    let uuid: uuid::Uuid = id.parse().unwrap();
    let client = c.ctx.state.db.get().await.unwrap();
    client
        .execute(
            "UPDATE jobs SET status = 'running', attempts = 3, started_at = now() - interval '5 minutes',
                 lease_expires_at = now() - interval '1 minute' WHERE id = $1",
            &[&uuid],
        )
        .await
        .unwrap();
    c.dispatcher.run_job(uuid).await.unwrap();
    let job = c.job(&token, &id).await;
    assert_eq!(job["status"], "error", "{job}");
    assert!(
        job["error"].as_str().unwrap().contains("3 attempts"),
        "{job}"
    );
}

#[tokio::test]
async fn a_failed_record_comes_back_after_the_backoff_not_the_visibility_timeout() {
    // The queue's visibility timeout is 1 h; the backoff makes the record visible after 1 s.
    let mut c = compute(3).await;
    c.dispatcher.retries = Some(compute_dispatch::RetryBackoff::new(
        c.queues.sqs.clone(),
        Duration::from_secs(1),
        Duration::from_secs(60),
    ));
    c.queues
        .sqs
        .set_queue_attributes()
        .queue_url(&c.queues.jobs_url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "3600",
        )
        .send()
        .await
        .unwrap();
    let token = c.ctx.token_for("backoff").await;
    let tool = format!("missing-image-{}", uuid::Uuid::new_v4().simple());
    let client = c.ctx.state.db.get().await.unwrap();
    client
        .execute(
            "INSERT INTO tools (name, image, memory_mb, cpus, timeout_seconds, pids_limit)
             VALUES ($1, 'mecapy-missing:never-built', 128, 0.5, 10, 64)",
            &[&tool],
        )
        .await
        .unwrap();
    let id = job_id(
        &c.submit(&token, json!({"tool": tool, "code": "print(1)"}))
            .await,
    );
    let batch = c.queues.batch_with(&id, Duration::from_secs(60)).await;
    let response = c.dispatcher.handle(batch.clone()).await.unwrap();
    assert_eq!(
        response.batch_item_failures.len(),
        1,
        "a missing image is retried"
    );
    let job = c.job(&token, &id).await;
    assert_eq!(job["status"], "queued", "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap_or("")
            .contains("mecapy-missing"),
        "{job}"
    );
    // Not acknowledged, yet back within seconds.
    let started = std::time::Instant::now();
    let again = c.queues.batch_with(&id, Duration::from_secs(30)).await;
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(
        again.records[0]
            .attributes
            .get("ApproximateReceiveCount")
            .map(String::as_str),
        Some("2")
    );
}
