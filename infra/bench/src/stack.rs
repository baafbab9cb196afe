//! The figures of the stack deployed to LocalStack (`make deploy`): deployment zip sizes,
//! first (cold) and warm calls of each function through API Gateway, the demo journey.

use std::path::Path;
use std::time::{Duration, Instant};

use mecapy_e2e::api::{Api, Payload};
use mecapy_e2e::auth::Provider;
use mecapy_e2e::lambda::Lambda;
use mecapy_e2e::{demo_journey, DemoOptions, StackEnv};
use reqwest::Method;
use serde_json::{json, Value};

use futures_util::StreamExt;

use crate::{fmt, summary};

/// Lambda's limit on a direct upload is larger; this is the project's target for each zip.
const ZIP_TARGET_BYTES: u64 = 6_000_000;
const WARM_CALLS: usize = 200;
const DEMO_RUNS: usize = 5;

/// Zips `binary` as SAM packages a function (a deflated zip holding `bootstrap`, mode 0755),
/// with Python's zipfile as SAM does; the zip's size.
pub(crate) fn zip_size(binary: &Path, zip: &Path) -> Result<u64, String> {
    const SCRIPT: &str = r#"
import sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
info = zipfile.ZipInfo.from_file(src, "bootstrap")
info.external_attr = 0o100755 << 16
info.compress_type = zipfile.ZIP_DEFLATED
with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z, open(src, "rb") as f:
    z.writestr(info, f.read())
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(binary)
        .arg(zip)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    std::fs::metadata(zip)
        .map(|m| m.len())
        .map_err(|e| e.to_string())
}

/// Each function's `bootstrap` as `sam build` made it for the deployment being measured
/// (`make bench` builds and deploys release binaries, as AWS gets them).
pub fn deployed_binaries(root: &Path) -> Vec<(&'static str, std::path::PathBuf)> {
    [
        ("login", "LoginFunction"),
        ("callback", "CallbackFunction"),
        ("upload", "UploadFunction"),
        ("compute-submit", "ComputeSubmitFunction"),
        ("compute-dispatch", "ComputeDispatchFunction"),
        ("api-docs", "ApiDocsFunction"),
    ]
    .into_iter()
    .map(|(name, id)| (name, root.join(".aws-sam/build").join(id).join("bootstrap")))
    .collect()
}

/// One row per function: its deployment zip against the 6 MB target.
pub fn zip_sizes(root: &Path) {
    let dir = root.join("target/bench-zips");
    let _ = std::fs::create_dir_all(&dir);
    for (name, binary) in deployed_binaries(root) {
        let value = if binary.exists() {
            match zip_size(&binary, &dir.join(format!("{name}.zip"))) {
                Ok(bytes) => format!(
                    "{bytes} B = {:.2} MB, {}",
                    bytes as f64 / 1e6,
                    if bytes <= ZIP_TARGET_BYTES {
                        "within"
                    } else {
                        "OVER"
                    }
                ),
                Err(e) => format!("zip failed: {e}"),
            }
        } else {
            format!(
                "missing: `make bench` builds {} (release)",
                binary.display()
            )
        };
        println!("| deployment zip `{name}` (release `bootstrap`, deflated as SAM packages it) | {value} | ≤ 6 MB |");
    }
}

/// A request the function answers cheaply, and the status it answers.
struct Probe {
    function: &'static str,
    logical_id: &'static str,
    method: Method,
    path: &'static str,
    body: Option<Value>,
    authenticated: bool,
    status: u16,
    what: &'static str,
}

fn probes() -> Vec<Probe> {
    vec![
        Probe {
            function: "login",
            logical_id: "LoginFunction",
            method: Method::POST,
            path: "/auth/login",
            body: Some(json!({})),
            authenticated: false,
            status: 200,
            what: "POST /auth/login",
        },
        Probe {
            function: "callback",
            logical_id: "CallbackFunction",
            method: Method::POST,
            path: "/auth/callback",
            body: Some(json!({})),
            authenticated: false,
            status: 400,
            what: "POST /auth/callback, invalid body → 400",
        },
        Probe {
            function: "upload",
            logical_id: "UploadFunction",
            method: Method::GET,
            path: "/files",
            body: None,
            authenticated: true,
            status: 200,
            what: "GET /files with a token",
        },
        Probe {
            function: "compute-submit",
            logical_id: "ComputeSubmitFunction",
            method: Method::GET,
            path: "/compute",
            body: None,
            authenticated: true,
            status: 200,
            what: "GET /compute with a token",
        },
    ]
}

async fn call(api: &Api, probe: &Probe, token: &str) -> Result<Duration, String> {
    let payload = match &probe.body {
        Some(v) => Payload::Json(v),
        None => Payload::Empty,
    };
    let token = probe.authenticated.then_some(token);
    let started = Instant::now();
    let reply = api
        .send(probe.method.clone(), probe.path, token, payload)
        .await
        .map_err(|f| f.to_string())?;
    let elapsed = started.elapsed();
    if reply.status.as_u16() != probe.status {
        return Err(reply
            .failure(format!("expected {}", probe.status))
            .to_string());
    }
    Ok(elapsed)
}

/// Cold: the first call after a configuration change (a new execution environment); warm: the
/// calls after it.
async fn cold_and_warm(
    env: &StackEnv,
    lambda: &Lambda,
    api: &Api,
    probe: &Probe,
    token: &str,
) -> Result<(Duration, Duration, Duration), String> {
    let name = lambda
        .function_of(&env.stack_name, probe.logical_id)
        .await
        .map_err(|f| f.to_string())?;
    let config = lambda
        .configuration(&name)
        .await
        .map_err(|f| f.to_string())?;
    let original = config["Environment"]["Variables"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut changed = original.clone();
    changed.insert(
        "MECAPY_BENCH_COLD_START".into(),
        json!(uuid::Uuid::new_v4().simple().to_string()),
    );
    lambda
        .set_environment(&name, &changed)
        .await
        .map_err(|f| f.to_string())?;
    lambda
        .wait_ready(&name, Duration::from_secs(60))
        .await
        .map_err(|f| f.to_string())?;
    let measured = async {
        let cold = call(api, probe, token).await?;
        let mut warm = Vec::with_capacity(WARM_CALLS);
        for _ in 0..WARM_CALLS {
            warm.push(call(api, probe, token).await?);
        }
        let (p50, p99) = summary(warm);
        Ok::<_, String>((cold, p50, p99))
    }
    .await;
    // Back to the deployed configuration, whatever happened.
    let restored = lambda.set_environment(&name, &original).await;
    let _ = lambda.wait_ready(&name, Duration::from_secs(60)).await;
    restored.map_err(|f| format!("restoring {name}: {f}"))?;
    measured
}

/// Trivial jobs submitted together for the throughput rows.
const BURST: usize = 30;
/// Submissions of the burst in flight at once.
const IN_FLIGHT: usize = 4;

fn timestamp(job: &Value, field: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    job[field].as_str()?.parse().ok()
}

/// For each job with both timestamps (`to` not before `from`), the time from `from` to `to`.
fn between(jobs: &[Value], from: &str, to: &str) -> Vec<Duration> {
    jobs.iter()
        .filter_map(|j| (timestamp(j, to)? - timestamp(j, from)?).to_std().ok())
        .collect()
}

/// `runs` bare sequential `docker run`s of the compute image with the job's command: how long
/// they took.
fn bare_runs(runs: usize) -> Result<Duration, String> {
    let started = Instant::now();
    for _ in 0..runs {
        let status = std::process::Command::new("docker")
            .args(["run", "--rm", "--network", "none", "mecapy-python:bookworm"])
            .args(["python3", "-c", "print('ok')"])
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| format!("docker run: {e}"))?;
        if !status.success() {
            return Err("bare docker run failed".into());
        }
    }
    Ok(started.elapsed())
}

/// Jobs per second through the deployed stack (API → S3 → SQS → compute-dispatch → Docker), a
/// burst of [`BURST`] trivial jobs, against a bare sequential `docker run` of the same image
/// measured in the same run; and the wait in the queue (claim − submission).
async fn throughput(api: &Api, token: &str) -> Result<(), String> {
    // The bare rate is measured before and after the burst (this machine is shared and its
    // speed drifts): both halves count.
    let bare_before = bare_runs(BURST)?;
    let body = json!({"tool": "python", "code": "print('ok')"});
    // Warm functions first (a dispatcher, and a `compute-submit` for each request in flight:
    // LocalStack starts one container per concurrent invocation): the figure is the steady
    // rate, not cold starts.
    let warm_ups = futures_util::stream::iter(0..IN_FLIGHT)
        .map(|_| api.post_json("/compute", Some(token), &body))
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    for reply in warm_ups {
        let job = reply
            .map_err(|f| f.to_string())?
            .expect(202)
            .map_err(|f| f.to_string())?;
        let id = job["job_id"].as_str().unwrap_or_default().to_string();
        mecapy_e2e::journey::wait_final(
            api,
            token,
            &id,
            Duration::from_secs(120),
            Duration::from_millis(500),
        )
        .await
        .map_err(|f| f.to_string())?;
    }
    // Submitted together, a few requests in flight (as many clients would).
    let submissions = futures_util::stream::iter(0..BURST)
        .map(|_| api.post_json("/compute", Some(token), &body))
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    let mut ids = Vec::with_capacity(BURST);
    for reply in submissions {
        let reply = reply.map_err(|f| f.to_string())?;
        let job = reply.expect(202).map_err(|f| f.to_string())?;
        ids.push(job["job_id"].as_str().unwrap_or_default().to_string());
    }
    // One look at the list per second: the figures come from the jobs' own timestamps, and
    // polling each job often would only load the stack being measured (each look is an API
    // Gateway call and an invocation).
    let deadline = Instant::now() + Duration::from_secs(300);
    let jobs = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let page = api
            .get(&format!("/compute?limit={}", BURST + 10), Some(token))
            .await
            .map_err(|f| f.to_string())?
            .expect(200)
            .map_err(|f| f.to_string())?;
        let ours: Vec<Value> = page["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|j| ids.iter().any(|id| j["id"].as_str() == Some(id.as_str())))
            .cloned()
            .collect();
        let pending = ours
            .iter()
            .filter(|j| matches!(j["status"].as_str(), Some("queued" | "running")))
            .count();
        if ours.len() == BURST && pending == 0 {
            if let Some(bad) = ours.iter().find(|j| j["status"] != "succeeded") {
                return Err(format!("job {} ended {}", bad["id"], bad["status"]));
            }
            break ours;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{pending} of {BURST} jobs still queued or running after 300 s ({} listed)",
                ours.len()
            ));
        }
    };
    let first = jobs.iter().filter_map(|j| timestamp(j, "created_at")).min();
    let last = jobs
        .iter()
        .filter_map(|j| timestamp(j, "finished_at"))
        .max();
    let (Some(first), Some(last)) = (first, last) else {
        return Err("jobs without timestamps".into());
    };
    let drained = (last - first).to_std().unwrap_or_default();
    let stack_rate = BURST as f64 / drained.as_secs_f64();
    let bare_after = bare_runs(BURST)?;
    let bare_rate = (2 * BURST) as f64 / (bare_before + bare_after).as_secs_f64();
    let waits = between(&jobs, "created_at", "started_at");
    let (wait_p50, wait_p99) = summary(waits);
    let runs = between(&jobs, "started_at", "finished_at");
    let in_flight = runs.iter().sum::<Duration>().as_secs_f64() / drained.as_secs_f64();
    let (run_p50, run_p99) = summary(runs);
    println!(
        "| throughput, {BURST} trivial jobs submitted together: through the deployed stack / bare sequential `docker run` | {stack_rate:.2} / {bare_rate:.2} jobs/s = {:.2} (drained in {}) | ≥ 0.90 |",
        stack_rate / bare_rate,
        fmt(drained)
    );
    println!(
        "| queue wait of those jobs (claimed − submitted), p50 / p99 | {} / {} | |",
        fmt(wait_p50),
        fmt(wait_p99)
    );
    println!(
        "| claim to record of those jobs, p50 / p99; mean jobs in flight | {} / {}; {in_flight:.2} | |",
        fmt(run_p50),
        fmt(run_p99)
    );
    Ok(())
}

/// A token of the bench's user, or the bench stops saying why.
async fn bench_token(env: &StackEnv) -> String {
    match Provider::new(env).token_for("bench-e2e").await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("bench: no token from the OIDC admin API: {e}");
            std::process::exit(1);
        }
    }
}

/// The throughput rows, or the bench stops saying where to look.
async fn burst(api: &Api, token: &str, env: &StackEnv) {
    if let Err(e) = throughput(api, token).await {
        eprintln!(
            "bench: the throughput burst failed: {e}\nwhere to look: {}",
            env.where_to_look()
        );
        std::process::exit(1);
    }
}

/// `mecapy-bench throughput`: the burst alone.
pub async fn throughput_only(env: &StackEnv) {
    let api = Api::new(&env.api_url);
    let token = bench_token(env).await;
    burst(&api, &token, env).await;
}

/// The rows of the deployed stack.
pub async fn measure(env: &StackEnv) {
    let api = Api::new(&env.api_url);
    let lambda = Lambda::new(env);
    let token = bench_token(env).await;
    for probe in probes() {
        match cold_and_warm(env, &lambda, &api, &probe, &token).await {
            Ok((cold, p50, p99)) => {
                println!(
                    "| `{}` through API Gateway in LocalStack ({}): first call after a configuration change (cold) | {} | |",
                    probe.function,
                    probe.what,
                    fmt(cold)
                );
                println!(
                    "| `{}` through API Gateway in LocalStack: warm p50 / p99 ({WARM_CALLS} calls) | {} / {} | |",
                    probe.function,
                    fmt(p50),
                    fmt(p99)
                );
            }
            Err(e) => {
                eprintln!(
                    "bench: {} through the deployed API failed: {e}\nwhere to look: {}",
                    probe.function,
                    env.where_to_look()
                );
                std::process::exit(1);
            }
        }
    }

    burst(&api, &token, env).await;

    let mut totals = Vec::with_capacity(DEMO_RUNS);
    for _ in 0..DEMO_RUNS {
        let started = Instant::now();
        let journey = demo_journey(env, &DemoOptions::default()).await;
        if let Some(step) = journey.failed_step() {
            let failure = step.outcome.as_ref().expect_err("failed step");
            eprintln!(
                "bench: the demo journey failed at \"{}\": {failure}\nwhere to look: {}",
                step.name,
                env.where_to_look()
            );
            std::process::exit(1);
        }
        totals.push(started.elapsed());
    }
    let (min, max) = (
        *totals.iter().min().expect("runs"),
        *totals.iter().max().expect("runs"),
    );
    let (p50, _) = summary(totals);
    println!(
        "| demo journey (login → upload → submit → succeeded → stdout), {DEMO_RUNS} runs: p50 (min / max) | {} ({} / {}) | |",
        fmt(p50),
        fmt(min),
        fmt(max)
    );
}
