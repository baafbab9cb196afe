//! `make bench`: measured figures, never asserted. Needs the local services (`make up`) and the
//! stack deployed to LocalStack with release builds of its functions, as AWS gets them
//! (`SAM_BUILD_MODE=release infra/deploy.sh all`); the Makefile does both first.
//! `mecapy-bench throughput` measures the burst through the deployed stack alone;
//! `mecapy-bench chain` the ECS stage-in/stage-out chain against the archive path alone (Docker
//! and LocalStack only, no stack); `mecapy-bench ecs-dispatch` the ECS dispatch cost per job
//! alone (moto, LocalStack, PostgreSQL and the OIDC provider, no stack);
//! `mecapy-bench auth` JWT validation and login in-process alone (local services, no stack);
//! `mecapy-bench cold-init [DIR [BEFORE_DIR]]` each function's zip and cold init (exec to its
//! first `/next`), for the release binaries in DIR (default `target/<host triple>/release`) and
//! an older build's, in the same run (no stack).

mod chain;
mod cold_init;
mod ecs_dispatch;
mod stack;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use compute_dispatch::Dispatcher;
use mecapy_sandbox::{ContainerRuntime, DockerRuntime, JobSpec, Limits};

use lambda_http::http::{Method, StatusCode};
use mecapy_testkit::{get_request, json_request, multipart_request, TestContext};

fn header() {
    println!("| measure | value | target |");
    println!("|---|---|---|");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn summary(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (percentile(&samples, 0.50), percentile(&samples, 0.99))
}

/// The count `var` names in the environment (at least 1), `default` when unset.
fn count_from_env(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .map(|n| {
            n.parse()
                .unwrap_or_else(|e| panic!("{var}: a number of jobs: {e:?}"))
        })
        .unwrap_or(default)
        .max(1)
}

/// Prints the row `| {measure}, p50 / p99 | {p50} / {p99} | {target} |` of `samples`.
fn print_p50_p99(measure: &str, samples: Vec<Duration>, target: &str) {
    let (p50, p99) = summary(samples);
    println!(
        "| {measure}, p50 / p99 | {} / {} | {target} |",
        fmt(p50),
        fmt(p99)
    );
}

fn fmt(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

/// JWT validation with a warm key cache, and `login` in-process (no database, no bus).
async fn auth_figures(ctx: &TestContext, token: &str) {
    ctx.state
        .tokens
        .validate(token)
        .await
        .expect("warm-up validation");
    let mut samples = Vec::with_capacity(5000);
    for _ in 0..5000 {
        let t = Instant::now();
        ctx.state.tokens.validate(token).await.expect("valid token");
        samples.push(t.elapsed());
    }
    print_p50_p99("JWT validation, warm JWKS cache", samples, "p50 ≤ 50 µs");

    let login_state =
        login::LoginState::new(ctx.edge.clone(), ctx.login.clone(), ctx.state.oidc.clone());
    let mut samples = Vec::with_capacity(300);
    for i in 0..301 {
        let req = json_request(Method::POST, "/auth/login", None, &serde_json::json!({}));
        let t = Instant::now();
        let r = login::handle(login_state.clone(), req)
            .await
            .expect("infallible");
        let elapsed = t.elapsed();
        assert_eq!(r.status(), StatusCode::OK);
        if i > 0 {
            samples.push(elapsed);
        }
    }
    print_p50_p99("login in-process", samples, "");
}

#[tokio::main]
async fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if std::env::args().nth(1).as_deref() == Some("chain") {
        header();
        chain::measure().await;
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("cold-init") {
        let mut dirs: Vec<std::path::PathBuf> = std::env::args().skip(2).map(Into::into).collect();
        if dirs.is_empty() {
            let triple = std::env::var("CARGO_BUILD_TARGET")
                .unwrap_or_else(|_| "x86_64-unknown-linux-gnu".into());
            dirs.push(root.join("target").join(triple).join("release"));
        }
        cold_init::measure(&dirs);
        return;
    }
    // `mecapy-bench auth`: JWT validation and login in-process alone (the local services, no
    // stack).
    if std::env::args().nth(1).as_deref() == Some("auth") {
        header();
        let ctx = TestContext::new().await;
        let token = ctx.token_for("bench-user").await;
        auth_figures(&ctx, &token).await;
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("ecs-dispatch") {
        header();
        ecs_dispatch::measure().await;
        return;
    }
    // The deployed stack is measured too: fail now, not after the in-process figures.
    let stack_env = match mecapy_e2e::StackEnv::ready().await {
        Ok(env) => env,
        Err(e) => {
            eprintln!("bench: the deployed stack is not ready.\n  {e}");
            std::process::exit(1);
        }
    };
    header();
    // `mecapy-bench throughput`: only the burst through the deployed stack (quick to repeat).
    if std::env::args().nth(1).as_deref() == Some("throughput") {
        stack::throughput_only(&stack_env).await;
        return;
    }
    for (name, path) in stack::deployed_binaries(&root) {
        let size = std::fs::metadata(&path)
            .map(|m| format!("{:.2} MB", m.len() as f64 / 1e6))
            .unwrap_or_else(|_| format!("missing: build {}", path.display()));
        println!("| release binary `{name}` (as deployed) | {size} | |");
    }
    stack::zip_sizes(&root);

    let ctx = TestContext::with(|c| c.max_upload_bytes = 2 * 1024 * 1024).await;
    let token = ctx.token_for("bench-user").await;
    auth_figures(&ctx, &token).await;

    let data = vec![0x5au8; 1024 * 1024];
    let mut samples = Vec::with_capacity(50);
    for i in 0..51 {
        let req = multipart_request(
            "/files",
            Some(&token),
            &format!("bench-{i}.bin"),
            "application/octet-stream",
            &data,
        );
        let t = Instant::now();
        let r = upload::handle(ctx.state.clone(), req)
            .await
            .expect("infallible");
        let elapsed = t.elapsed();
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.body());
        if i > 0 {
            samples.push(elapsed);
        }
    }
    print_p50_p99(
        "1 MB upload in-process to LocalStack S3 + PostgreSQL",
        samples,
        "",
    );

    compute(&ctx, &token).await;
    chain::measure().await;
    ecs_dispatch::measure().await;

    stack::measure(&stack_env).await;
}

/// `POST /compute` of `body` through compute-submit, accepted: the job's id.
async fn submit_job(ctx: &TestContext, token: &str, body: serde_json::Value) -> String {
    let r = compute_submit::handle(
        ctx.state.clone(),
        json_request(Method::POST, "/compute", Some(token), &body),
    )
    .await
    .expect("infallible");
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{:?}", r.body());
    let body: serde_json::Value = serde_json::from_slice(r.body().as_ref()).expect("json");
    body["job_id"].as_str().expect("job id").to_string()
}

async fn submit(ctx: &TestContext, token: &str, code: &str) -> String {
    submit_job(
        ctx,
        token,
        serde_json::json!({"tool": "python", "code": code}),
    )
    .await
}

/// `GET /compute/{id}` through compute-submit: the job.
async fn status(ctx: &TestContext, token: &str, id: impl std::fmt::Display) -> serde_json::Value {
    let r = compute_submit::handle(
        ctx.state.clone(),
        get_request(&format!("/compute/{id}"), token),
    )
    .await
    .expect("infallible");
    serde_json::from_slice(r.body().as_ref()).expect("json")
}

async fn compute(ctx: &TestContext, token: &str) {
    let runtime = Arc::new(DockerRuntime::connect().await.expect("Docker engine"));
    let spec = JobSpec {
        image: "mecapy-python:bookworm".into(),
        command: vec!["python3".into(), "-c".into(), "pass".into()],
        files: vec![],
        env: vec![],
        limits: Limits::default(),
        labels: vec![],
    };
    let mut through_trait = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..11 {
        let t = Instant::now();
        runtime.run(&spec).await.expect("trivial job");
        through_trait.push(t.elapsed());
        let t = Instant::now();
        let status = std::process::Command::new("docker")
            .args([
                "run",
                "--rm",
                "--network",
                "none",
                "mecapy-python:bookworm",
                "python3",
                "-c",
                "pass",
            ])
            .status()
            .expect("docker run");
        assert!(status.success());
        bare.push(t.elapsed());
    }
    let (trait_p50, _) = summary(through_trait);
    let (bare_p50, _) = summary(bare);
    println!(
        "| sandbox overhead: trivial job via the runtime trait / bare `docker run` (p50) | {} / {} = {:.2} | ≤ 1.2 |",
        fmt(trait_p50),
        fmt(bare_p50),
        trait_p50.as_secs_f64() / bare_p50.as_secs_f64()
    );

    let queues = ctx.compute_queues(3, 30).await;
    let dispatcher = Arc::new(Dispatcher {
        state: ctx.state.context.clone(),
        compute: compute_dispatch::Compute::Engine(runtime.clone()),
        retries: None,
        compute_queue: None,
        concurrency: 2,
    });
    let queues = Arc::new(queues);
    // One job at a time: manifest put (inside submit) → event → dispatch → succeeded.
    let mut latencies = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let id = submit(ctx, token, "print(1)").await;
        loop {
            let batch = queues.receive_batch(1).await;
            if !batch.records.is_empty() {
                let response = dispatcher.handle(batch.clone()).await.expect("infallible");
                queues.acknowledge(&batch, &response).await;
            }
            if status(ctx, token, &id).await["status"] == "succeeded" {
                break;
            }
        }
        latencies.push(t.elapsed());
    }
    print_p50_p99(
        "submit (manifest put) → job succeeded, trivial job",
        latencies,
        "p50 ≤ 1.5 s",
    );

    // 100 jobs queued at once, drained by 2 concurrent dispatchers (2 cores).
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids.push(submit(ctx, token, "print(1)").await);
    }
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..2 {
        let (queues, dispatcher) = (queues.clone(), dispatcher.clone());
        workers.push(tokio::spawn(async move {
            let mut idle = 0;
            while idle < 3 {
                let batch = queues.receive_batch(1).await;
                if batch.records.is_empty() {
                    idle += 1;
                    continue;
                }
                idle = 0;
                let response = dispatcher.handle(batch.clone()).await.expect("infallible");
                queues.acknowledge(&batch, &response).await;
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    let drained = started.elapsed();
    let (mut lost, mut twice) = (0, 0);
    for id in &ids {
        let job = status(ctx, token, id).await;
        if job["status"] != "succeeded" {
            lost += 1;
        }
        if job["attempts"].as_i64() != Some(1) {
            twice += 1;
        }
    }
    println!(
        "| 100 trivial jobs queued at once, 2 dispatchers: drain time / lost / run twice | {:.1} s (incl. ~3 s idle check) / {lost} / {twice} | lost 0, twice 0 |",
        drained.as_secs_f64()
    );
}
