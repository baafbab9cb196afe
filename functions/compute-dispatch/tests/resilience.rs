//! Jobs survive their dispatcher, a database outage and a batch longer than an invocation, on
//! the REAL services: the dispatcher killed is the real `compute-dispatch` binary (fed by a
//! minimal Lambda Runtime API this test serves), the database outage is a relay in front of the
//! real PostgreSQL that the test cuts, and every run is a container on the real engine, counted
//! from the engine's own events.

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{get_compute, post_compute};
use compute_dispatch::{ComputeQueue, Dispatcher, RetryBackoff};
use lambda_http::http::StatusCode;
use mecapy_sandbox::DockerRuntime;
use mecapy_testkit::{body_json, ComputeQueues, TcpRelay, TestContext};
use mecapy_usecases::Context;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use uuid::Uuid;

const JOB_LABEL: &str = "org.mecapy.job-id";

struct Harness {
    ctx: TestContext,
    queues: ComputeQueues,
    token: String,
    tool: String,
}

/// A context, its queues (visibility 1 h: only the backoff or the sweep bring a message back),
/// a user and a tool whose jobs are limited to `timeout_seconds`.
async fn harness(user: &str, max_receives: u32, timeout_seconds: i32) -> Harness {
    let ctx = TestContext::with(|c| {
        c.max_receives = max_receives;
        c.dispatch_lease_margin = Duration::from_secs(5);
    })
    .await;
    let queues = ctx.compute_queues(max_receives, 3600).await;
    assert!(
        std::process::Command::new("docker")
            .args(["image", "inspect", "mecapy-python:bookworm"])
            .output()
            .is_ok_and(|o| o.status.success()),
        "the image mecapy-python:bookworm is missing: build it with `infra/images.sh` (make test does)"
    );
    let tool = format!("short-{}", Uuid::new_v4().simple());
    ctx.db()
        .await
        .execute(
            "INSERT INTO tools (name, image, memory_mb, cpus, timeout_seconds, pids_limit, allowed_imports)
             SELECT $1, image, memory_mb, cpus, $2, pids_limit, allowed_imports FROM tools WHERE name = 'python'",
            &[&tool, &timeout_seconds],
        )
        .await
        .unwrap();
    let token = ctx.token_for(user).await;
    Harness {
        ctx,
        queues,
        token,
        tool,
    }
}

impl Harness {
    /// A dispatcher on `state` (this context's unless given), with the queues, a 1 s backoff and
    /// a lease margin of 5 s.
    async fn dispatcher(&self, state: Option<Context>) -> Dispatcher {
        let state = state.unwrap_or_else(|| self.ctx.state.context.clone());
        let runtime = DockerRuntime::connect().await.unwrap_or_else(|e| {
            panic!("Docker engine unavailable ({e}): start it with `infra/services.sh up`")
        });
        let mut d = Dispatcher::new(state, Arc::new(runtime), 2);
        d.retries = Some(RetryBackoff::new(
            self.queues.sqs.clone(),
            Duration::from_secs(1),
            Duration::from_secs(4),
        ));
        d.compute_queue = Some(ComputeQueue::new(
            self.queues.sqs.clone(),
            &self.queues.jobs_url,
        ));
        d
    }

    async fn submit(&self, code: &str) -> Uuid {
        let r = post_compute(
            &self.ctx.state,
            &self.token,
            &json!({"tool": self.tool, "code": code}),
        )
        .await;
        assert_eq!(
            r.status(),
            StatusCode::ACCEPTED,
            "{}",
            String::from_utf8_lossy(r.body())
        );
        body_json(&r)["job_id"].as_str().unwrap().parse().unwrap()
    }

    async fn job(&self, id: Uuid) -> Value {
        body_json(&get_compute(&self.ctx.state, &self.token, id).await)
    }

    async fn statuses(&self, ids: &[Uuid]) -> Vec<String> {
        let mut all = Vec::new();
        for id in ids {
            all.push(
                self.job(*id).await["status"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string(),
            );
        }
        all
    }

    /// One receive → handle → acknowledge round, as the event source does.
    async fn dispatch_once(&self, d: &Dispatcher, deadline: Option<Instant>) {
        let batch = self.queues.receive_batch(1).await;
        if !batch.records.is_empty() {
            let response = d.handle_within(batch.clone(), deadline).await;
            self.queues.acknowledge(&batch, &response).await;
        }
    }
}

fn is_final(status: &str) -> bool {
    !matches!(status, "queued" | "running")
}

/// Counts the sandbox containers the engine creates, per job, from its event stream.
struct RunCounter {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    child: tokio::process::Child,
}

impl RunCounter {
    async fn start() -> RunCounter {
        let mut child = tokio::process::Command::new("docker")
            .args([
                "events",
                "--filter",
                "event=create",
                "--filter",
                "label=org.mecapy.sandbox=job",
                "--format",
                &format!("{{{{index .Actor.Attributes \"{JOB_LABEL}\"}}}}"),
            ])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("docker events (start the engine with `infra/services.sh up`)");
        let counts = Arc::new(Mutex::new(HashMap::new()));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let seen = counts.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                *seen
                    .lock()
                    .unwrap()
                    .entry(line.trim().to_string())
                    .or_insert(0) += 1;
            }
        });
        // Let the subscription take effect before the first run.
        tokio::time::sleep(Duration::from_millis(500)).await;
        RunCounter { counts, child }
    }

    fn runs(&self, job: Uuid) -> usize {
        self.counts
            .lock()
            .unwrap()
            .get(&job.to_string())
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for RunCounter {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn containers_of(job: Uuid) -> Vec<String> {
    let rt = DockerRuntime::connect().await.unwrap();
    rt.containers_with_label(JOB_LABEL, &job.to_string())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_batch_longer_than_one_invocation_ends_every_endless_job_as_timeout() {
    let h = harness("endless-batch", 10, 3).await;
    let d = h.dispatcher(None).await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(h.submit("while True:\n    pass\n").await);
    }
    // Each invocation has 20 s: a 3 s job needs its lease (3 + 3 + 5 s) and 2 s to start, so
    // two rounds of two fit and the rest is handed back at once for the next invocation.
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let invocation_ends = Instant::now() + Duration::from_secs(20);
        h.dispatch_once(&d, Some(invocation_ends)).await;
        assert!(
            Instant::now() <= invocation_ends + Duration::from_secs(1),
            "the batch overran its invocation"
        );
        let statuses = h.statuses(&ids).await;
        if statuses.iter().all(|s| is_final(s)) {
            assert!(statuses.iter().all(|s| s == "timeout"), "{statuses:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "jobs never finished: {statuses:?}"
        );
    }
    for id in &ids {
        let job = h.job(*id).await;
        assert_eq!(job["attempts"], 1, "{job}");
        assert!(job["duration_ms"].as_i64().unwrap() >= 3000, "{job}");
    }
}

#[tokio::test]
async fn records_of_a_batch_run_concurrently_each_with_its_own_outcome() {
    let h = harness("concurrent-batch", 3, 10).await;
    let d = h.dispatcher(None).await;
    let sleeper = h
        .submit("import time\ntime.sleep(2)\nprint('slept')\n")
        .await;
    let failing = h
        .submit("import time\ntime.sleep(2)\nraise SystemExit(3)\n")
        .await;
    // Both announced in one batch.
    let mut batch = aws_lambda_events::event::sqs::SqsEvent::default();
    let started = Instant::now();
    while batch.records.len() < 2 {
        let more = h.queues.receive_batch(1).await;
        batch.records.extend(
            more.records
                .into_iter()
                .filter(|r| r.body.as_deref().unwrap_or("").contains("manifest.json")),
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "manifests never announced"
        );
    }
    let response = d.handle(batch.clone()).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let slept = h.job(sleeper).await;
    assert_eq!(slept["status"], "succeeded", "{slept}");
    let failed = h.job(failing).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["exit_code"], 3, "{failed}");
    // Both were claimed before either finished: they ran side by side.
    let at = |job: &Value, field: &str| -> chrono::DateTime<chrono::Utc> {
        job[field].as_str().unwrap().parse().unwrap()
    };
    let last_claim = at(&slept, "started_at").max(at(&failed, "started_at"));
    let first_end = at(&slept, "finished_at").min(at(&failed, "finished_at"));
    assert!(
        last_claim < first_end,
        "ran one after the other: {slept} {failed}"
    );
}

/// The smallest Lambda Runtime API: the first `next` gets `event`, later ones wait forever.
async fn serve_runtime_api(event: Value) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(Mutex::new(false));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let event = event.clone();
            let served = served.clone();
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                loop {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    let mut body = vec![0; length];
                    if stream.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let reply = if head.starts_with("GET /2018-06-01/runtime/invocation/next") {
                        if std::mem::replace(&mut *served.lock().unwrap(), true) {
                            std::future::pending::<()>().await;
                        }
                        let body = event.to_string();
                        let deadline = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap()
                            .as_millis()
                            + 300_000;
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: req-1\r\nLambda-Runtime-Deadline-Ms: {deadline}\r\nLambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:000000000000:function:compute-dispatch\r\nLambda-Runtime-Trace-Id: Root=1-0-0\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                    } else {
                        "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".to_string()
                    };
                    if stream.get_mut().write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn a_killed_dispatcher_leaves_no_container_and_its_job_still_ends() {
    const LIMIT: u64 = 6;
    let h = harness("killed-dispatcher", 3, LIMIT as i32).await;
    let id = h.submit("while True:\n    pass\n").await;
    let batch = h
        .queues
        .batch_with(&id.to_string(), Duration::from_secs(30))
        .await;

    // The real compute-dispatch process, as Lambda runs it.
    let port = serve_runtime_api(serde_json::to_value(&batch).unwrap()).await;
    let mut env = h.ctx.env.clone();
    env.insert("DATABASE_URL".into(), h.ctx.config.database_url.clone());
    env.insert("UPLOAD_BUCKET".into(), h.ctx.bucket.clone());
    for (k, v) in [
        ("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}")),
        ("AWS_LAMBDA_FUNCTION_NAME", "compute-dispatch".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "test".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "test".into()),
        ("DISPATCH_LEASE_MARGIN_SECONDS", "5".into()),
        ("DISPATCH_CONCURRENCY", "2".into()),
        ("COMPUTE_QUEUE_URL", h.queues.jobs_url.clone()),
        ("RUST_LOG", "warn".into()),
    ] {
        env.insert(k.into(), v);
    }
    env.remove("EVENT_BUS_NAME");
    let mut process = tokio::process::Command::new(env!("CARGO_BIN_EXE_compute-dispatch"))
        .env_clear()
        .envs(&env)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .kill_on_drop(true)
        .spawn()
        .expect("start compute-dispatch");

    // Kill it once the job runs in its container.
    let started = Instant::now();
    let container_seen = loop {
        if !containers_of(id).await.is_empty() && h.job(id).await["status"] == "running" {
            break Instant::now();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the job never started: {}",
            h.job(id).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    process.kill().await.expect("SIGKILL compute-dispatch");
    let killed = Instant::now();
    let job = h.job(id).await;
    assert_eq!(job["status"], "running", "{job}");
    let lease: chrono::DateTime<chrono::Utc> =
        job["lease_expires_at"].as_str().unwrap().parse().unwrap();

    // Nobody watches the container any more: it ends by itself within the limit + 5 s of its
    // start (it was seen after it started).
    let gone_by = container_seen + Duration::from_secs(LIMIT + 5);
    loop {
        let left = containers_of(id).await;
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < gone_by,
            "container {left:?} outlived limit + 5 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!("container gone {:?} after the kill", killed.elapsed());

    // The job's message never comes back (visibility 1 h) and no sweep runs: the watchdog the
    // claim posted, due when the lease ends, is what brings the job to the next dispatcher, which
    // runs it to a final state within lease + 60 s.
    let d = h.dispatcher(None).await;
    let final_by = lease + chrono::Duration::seconds(60);
    let job = loop {
        h.dispatch_once(&d, None).await;
        let job = h.job(id).await;
        if is_final(job["status"].as_str().unwrap()) {
            break job;
        }
        assert!(
            chrono::Utc::now() < final_by,
            "not final within lease + 60 s: {job}"
        );
    };
    println!(
        "final ({}) {:?} after the kill",
        job["status"],
        killed.elapsed()
    );
    assert_eq!(job["status"], "timeout", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
    assert!(containers_of(id).await.is_empty());
}

#[tokio::test]
async fn the_sweep_requeues_a_job_past_its_lease_and_finishes_one_with_a_stored_outcome() {
    let h = harness("swept", 3, 5).await;
    let d = h.dispatcher(None).await;
    let lost = h.submit("print('again')\n").await;
    let recorded = h.submit("print('once')\n").await;
    // Both claimed by a dispatcher that died (and whose watchdog was lost); the second had stored
    // its outcome.
    let db = h.ctx.db().await;
    for id in [lost, recorded] {
        db.execute(
            "UPDATE jobs SET status = 'running', attempts = 1, started_at = now() - interval '2 minutes',
                 lease_expires_at = now() - interval '1 minute' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    }
    let outcome = json!({"attempt": 1, "status": "failed", "exit_code": 7, "duration_ms": 12,
        "image_digest": "sha256:0", "limits": {}, "stdout_truncated": false,
        "stderr_truncated": false, "outputs": [], "outputs_truncated": false});
    h.ctx
        .state
        .storage
        .put(
            &mecapy_shared::jobs::keys::outcome(recorded),
            outcome.to_string().into(),
            "application/json",
        )
        .await
        .unwrap();
    // The sweep records the stored outcome, and runs the other job again itself.
    let report = d.sweep().await.unwrap();
    assert_eq!(
        (report.requeued, report.finished, report.ran),
        (1, 1, 1),
        "{report:?}"
    );
    let done = h.job(recorded).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["exit_code"], 7, "{done}");
    let again = h.job(lost).await;
    assert_eq!(again["status"], "succeeded", "{again}");
    assert_eq!(again["attempts"], 2, "{again}");
}

/// PostgreSQL unreachable for `outage` while a burst of `burst` jobs is dispatched: every job
/// succeeds once it is back, none runs twice, and once the queue is drained its dead-letter queue
/// holds nothing (no message of a job that succeeded is dead-lettered).
async fn database_outage_during_a_burst(user: &str, outage: Duration, burst: usize) {
    let h = harness(user, 3, 5).await;
    let admin = url::Url::parse(&h.ctx.config.database_url).unwrap();
    let target = format!(
        "{}:{}",
        admin.host_str().unwrap(),
        admin.port().unwrap_or(5432)
    );
    let mut relay = TcpRelay::start(&target).await;
    let mut config = h.ctx.config.clone();
    config.database_url = relay.url_through(&config.database_url);
    config.dispatch_lease_margin = Duration::from_secs(5);
    config.sweep_idle_queued = Duration::from_secs(10);
    let state = Context::with_storage(config, h.ctx.state.storage.clone()).unwrap();
    let d = Arc::new(h.dispatcher(Some(state)).await);
    let runs = RunCounter::start().await;

    let mut ids = Vec::new();
    for i in 0..burst {
        ids.push(
            h.submit(&format!("import time\ntime.sleep(1)\nprint({i})\n"))
                .await,
        );
    }
    let h = Arc::new(h);
    // The event source and the schedule, as in the stack.
    let worker = {
        let (h, d) = (h.clone(), d.clone());
        tokio::spawn(async move {
            let mut last_sweep = Instant::now();
            loop {
                h.dispatch_once(&d, None).await;
                if last_sweep.elapsed() > Duration::from_secs(5) {
                    let _ = d.sweep().await;
                    last_sweep = Instant::now();
                }
            }
        })
    };
    // Cut the database once the burst is under way.
    let started = Instant::now();
    loop {
        let statuses = h.statuses(&ids).await;
        if statuses.iter().any(|s| s != "queued") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the burst never started"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    relay.stop().await;
    tokio::time::sleep(outage).await;
    relay.resume().await;
    let back = Instant::now();

    let statuses = loop {
        let statuses = h.statuses(&ids).await;
        if statuses.iter().all(|s| is_final(s)) {
            break statuses;
        }
        assert!(
            back.elapsed() < Duration::from_secs(150),
            "jobs not finished 150 s after the database came back: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    println!(
        "all final {:?} after the database came back",
        back.elapsed()
    );
    // What is left on the queue (the claims' watchdogs, due when their leases end) is handled.
    let drained = Instant::now();
    while h.queues.depth(&h.queues.jobs_url).await > 0 {
        assert!(
            drained.elapsed() < Duration::from_secs(90),
            "the compute queue still holds {} messages 90 s after every job ended",
            h.queues.depth(&h.queues.jobs_url).await
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    worker.abort();
    assert!(statuses.iter().all(|s| s == "succeeded"), "{statuses:?}");
    let dead = h.queues.receive_from(&h.queues.dlq_url, 0).await;
    let bodies: Vec<_> = dead
        .records
        .iter()
        .filter_map(|r| r.body.as_deref())
        .collect();
    assert!(
        bodies.is_empty(),
        "the dead-letter queue holds {} messages (of jobs that all succeeded): {bodies:?}",
        h.queues.depth(&h.queues.dlq_url).await
    );
    for id in &ids {
        assert_eq!(runs.runs(*id), 1, "job {id} ran {} times", runs.runs(*id));
        let job = h.job(*id).await;
        assert!(job["lease_expires_at"].is_null(), "{job}");
    }
}

#[tokio::test]
async fn a_20_second_database_outage_during_a_burst_loses_no_job() {
    database_outage_during_a_burst("db-outage-20s", Duration::from_secs(20), 10).await;
}

#[tokio::test]
async fn a_2_minute_database_outage_during_a_burst_loses_no_job() {
    database_outage_during_a_burst("db-outage-2min", Duration::from_secs(120), 20).await;
}
