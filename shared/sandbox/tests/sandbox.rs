//! The compute sandbox on the REAL Docker engine, with the image `infra/images.sh` builds: what
//! a job can and cannot do, the caps on what comes back, and that nothing is ever left behind.
//! No mocks: a missing engine or image fails every test with the command that fixes it.

use std::time::Duration;

use bytes::Bytes;
use mecapy_sandbox::{
    ContainerRuntime, DockerRuntime, JobSpec, Limits, Outcome, RunResult, SandboxError,
};
use serde_json::Value;

const IMAGE: &str = "mecapy-python:bookworm";
const JOB_LABEL: &str = "org.mecapy.job-id";

async fn runtime() -> DockerRuntime {
    let rt = DockerRuntime::connect().await.unwrap_or_else(|e| {
        panic!("the Docker engine is missing ({e}): start it with `infra/services.sh up`")
    });
    match rt.image_id(IMAGE).await {
        Ok(_) => rt,
        Err(e) => panic!("the image {IMAGE} is missing ({e}): build it with `infra/images.sh`"),
    }
}

/// A Python job: `code` as /work/main.py, plus extra files.
fn job(code: &str, limits: Limits) -> JobSpec {
    JobSpec {
        image: IMAGE.into(),
        command: vec!["python3".into(), "/work/main.py".into()],
        files: vec![("main.py".into(), Bytes::from(code.to_string()))],
        env: vec![("PYTHONUNBUFFERED".into(), "1".into())],
        limits,
        labels: vec![(JOB_LABEL.into(), uuid::Uuid::new_v4().to_string())],
    }
}

fn limits(timeout_secs: u64) -> Limits {
    Limits {
        timeout: Duration::from_secs(timeout_secs),
        ..Limits::default()
    }
}

fn job_id(spec: &JobSpec) -> &str {
    &spec.labels[0].1
}

async fn assert_nothing_left(rt: &DockerRuntime, spec: &JobSpec) {
    let containers = rt
        .containers_with_label(JOB_LABEL, job_id(spec))
        .await
        .unwrap();
    assert!(
        containers.is_empty(),
        "containers left behind: {containers:?}"
    );
    let volumes = rt
        .volumes_with_label(JOB_LABEL, job_id(spec))
        .await
        .unwrap();
    assert!(volumes.is_empty(), "volumes left behind: {volumes:?}");
}

/// Runs the job, then checks that none of its containers or volumes remain.
async fn run(rt: &DockerRuntime, spec: &JobSpec) -> RunResult {
    let result = rt
        .run(spec)
        .await
        .unwrap_or_else(|e| panic!("run failed: {e}"));
    assert_nothing_left(rt, spec).await;
    result
}

fn text(bytes: &Bytes) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts the outcome, showing the job's stderr when it is not the expected one.
fn expect(result: &RunResult, outcome: Outcome) {
    let (code, stderr) = (result.exit_code, text(&result.stderr));
    assert_eq!(
        result.outcome, outcome,
        "exit code {code:?}, stderr: {stderr}"
    );
}

fn stdout_json(result: &RunResult) -> Value {
    serde_json::from_slice(&result.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            text(&result.stdout),
            text(&result.stderr)
        )
    })
}

#[tokio::test]
async fn numpy_job_succeeds_and_its_outputs_are_collected() {
    let rt = runtime().await;
    let mut spec = job(
        r#"
import json, numpy
rows = numpy.loadtxt("/work/inputs/data.csv", delimiter=",")
result = {"sum": float(rows.sum()), "numpy": numpy.__version__}
with open("/work/out/result.json", "w") as f:
    json.dump(result, f)
print("done", result["sum"])
"#,
        limits(20),
    );
    spec.files
        .push(("inputs/data.csv".into(), Bytes::from_static(b"1,2\n3,4\n")));
    let result = run(&rt, &spec).await;
    expect(&result, Outcome::Succeeded);
    assert_eq!(result.exit_code, Some(0));
    assert_eq!(text(&result.stdout), "done 10.0\n");
    assert_eq!(result.outputs.len(), 1);
    assert_eq!(result.outputs[0].0, "result.json");
    let output: Value = serde_json::from_slice(&result.outputs[0].1).unwrap();
    assert_eq!(output["sum"], 10.0);
    assert!(!result.outputs_truncated && !result.stdout_truncated);
    let digest = result.image_digest.as_deref().unwrap();
    assert_eq!(digest, rt.image_id(IMAGE).await.unwrap());
    assert!(digest.starts_with("sha256:"));
    assert_eq!(result.limits, spec.limits);
    assert!(result.duration < Duration::from_secs(20));
}

#[tokio::test]
async fn syntax_and_runtime_errors_fail_with_exit_code_and_stderr() {
    let rt = runtime().await;
    let result = run(&rt, &job("def broken(:\n    pass\n", limits(20))).await;
    expect(&result, Outcome::Failed);
    assert_eq!(result.exit_code, Some(1));
    assert!(text(&result.stderr).contains("SyntaxError"));

    let result = run(&rt, &job("print('before')\n1 / 0\n", limits(20))).await;
    expect(&result, Outcome::Failed);
    assert_eq!(result.exit_code, Some(1));
    assert_eq!(text(&result.stdout), "before\n");
    assert!(text(&result.stderr).contains("ZeroDivisionError"));
}

#[tokio::test]
async fn endless_loop_times_out_and_its_container_is_removed() {
    let rt = runtime().await;
    let result = run(&rt, &job("while True:\n    pass\n", limits(2))).await;
    expect(&result, Outcome::Timeout);
    let took = result.duration;
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test]
async fn memory_hog_is_killed_as_oom() {
    let rt = runtime().await;
    let code = "import numpy\nblock = numpy.ones(512 * 1024 * 1024 // 8)\nprint(block.sum())\n";
    let result = run(&rt, &job(code, limits(20))).await;
    expect(&result, Outcome::Oom);
    assert_eq!(result.exit_code, Some(137));
}

#[tokio::test]
async fn fork_bomb_is_contained_by_the_pids_limit() {
    let rt = runtime().await;
    let code = r#"
import os, time
root = os.getpid()
children = 0
while True:
    try:
        if os.fork() == 0:
            continue
        children += 1
    except OSError:
        if os.getpid() == root and children >= 0:
            print("fork refused after", children, flush=True)
            children = -10**9
        time.sleep(0.01)
"#;
    let result = run(&rt, &job(code, limits(3))).await;
    assert!(
        matches!(result.outcome, Outcome::Timeout | Outcome::Failed),
        "{:?}: {}",
        result.outcome,
        text(&result.stderr)
    );
    assert!(
        text(&result.stdout).contains("fork refused after"),
        "{}",
        text(&result.stdout)
    );
    rt.ping().await.expect("the engine still answers");
    let after = run(&rt, &job("print('fine')", limits(20))).await;
    expect(&after, Outcome::Succeeded);
    let host = std::process::Command::new("true")
        .status()
        .expect("the host can still fork");
    assert!(host.success());
}

#[tokio::test]
async fn network_connection_attempts_fail_inside() {
    let rt = runtime().await;
    let code = r#"
import json, os, socket
report = {"interfaces": sorted(os.listdir("/sys/class/net"))}
for host, port in [("172.17.0.1", 5432), ("127.0.0.1", 4566)]:
    try:
        socket.create_connection((host, port), timeout=3).close()
        report[host] = "connected"
    except OSError as e:
        report[host] = type(e).__name__ + ": " + str(e)
print(json.dumps(report))
"#;
    let report = stdout_json(&run(&rt, &job(code, limits(20))).await);
    assert_eq!(report["interfaces"], serde_json::json!(["lo"]));
    for host in ["172.17.0.1", "127.0.0.1"] {
        let outcome = report[host].as_str().unwrap();
        assert!(outcome.contains("Error"), "{host}: {outcome}");
    }
}

#[tokio::test]
async fn only_work_and_a_size_limited_tmp_are_writable() {
    let rt = runtime().await;
    let code = r##"
import json, os, subprocess
def attempt(path, size=1):
    try:
        with open(path, "wb") as f:
            f.write(b"x" * size)
        return "ok"
    except OSError as e:
        return e.errno
with open("/tmp/run.sh", "w") as f:
    f.write("#!/bin/sh\necho ran\n")
os.chmod("/tmp/run.sh", 0o755)
try:
    subprocess.run(["/tmp/run.sh"], check=True)
    tmp_exec = "ran"
except OSError as e:
    tmp_exec = e.errno
print(json.dumps({
    "etc": attempt("/etc/x"), "usr": attempt("/usr/x"), "root": attempt("/x"),
    "work": attempt("/work/x"), "tmp": attempt("/tmp/x"), "tmp_exec": tmp_exec,
    "tmp_over": attempt("/tmp/big", 20 * 1024 * 1024),
    "work_over": attempt("/work/big", 40 * 1024 * 1024),
}))
"##;
    let spec = job(
        code,
        Limits {
            tmp_mb: 16,
            work_mb: 32,
            ..limits(20)
        },
    );
    let report = stdout_json(&run(&rt, &spec).await);
    let (erofs, enospc, eacces) = (30, 28, 13);
    assert_eq!(report["etc"], erofs);
    assert_eq!(report["usr"], erofs);
    assert_eq!(report["root"], erofs);
    assert_eq!(report["work"], "ok");
    assert_eq!(report["tmp"], "ok");
    assert_eq!(report["tmp_exec"], eacces, "/tmp is noexec");
    assert_eq!(report["tmp_over"], enospc);
    assert_eq!(report["work_over"], enospc);
}

#[tokio::test]
async fn huge_print_is_truncated_at_the_cap() {
    let rt = runtime().await;
    let code = "import sys\nchunk = 'x' * (1024 * 1024)\nfor _ in range(50):\n    sys.stdout.write(chunk)\nsys.stdout.flush()\nprint('small', file=sys.stderr)\n";
    let result = run(&rt, &job(code, limits(20))).await;
    expect(&result, Outcome::Succeeded);
    assert_eq!(result.stdout.len(), 1024 * 1024);
    assert!(result.stdout_truncated);
    assert_eq!(text(&result.stderr), "small\n");
    assert!(!result.stderr_truncated);
}

#[tokio::test]
async fn only_the_spec_environment_reaches_the_job() {
    // Secrets of the dispatcher's own environment must never reach a job.
    std::env::set_var("MECAPY_TEST_FAKE_SECRET", "hunter2-not-for-jobs");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "dispatcher-secret-key");
    std::env::set_var("DATABASE_URL", "postgres://secret@db/mecapy");
    let rt = runtime().await;
    // What the engine handed to the process (Python adds LC_CTYPE to os.environ by itself).
    let code = r#"
import json
with open("/proc/self/environ", "rb") as f:
    pairs = [item.decode().split("=", 1) for item in f.read().split(b"\0") if item]
print(json.dumps(dict(pairs)))
"#;
    let mut spec = job(code, limits(20));
    spec.env.push(("MECAPY_JOB_ID".into(), "job-42".into()));
    let result = run(&rt, &spec).await;
    let env = stdout_json(&result);
    let env = env.as_object().unwrap();
    assert_eq!(env["MECAPY_JOB_ID"], "job-42");
    assert_eq!(env["PYTHONUNBUFFERED"], "1");
    for name in env.keys() {
        let from_spec = spec.env.iter().any(|(k, _)| k == name);
        // The engine itself sets these three when the spec does not.
        let from_engine = ["PATH", "HOSTNAME", "HOME"].contains(&name.as_str());
        assert!(
            from_spec || from_engine,
            "unexpected variable {name} in the job"
        );
    }
    for secret in [
        "MECAPY_TEST_FAKE_SECRET",
        "AWS_SECRET_ACCESS_KEY",
        "DATABASE_URL",
    ] {
        assert!(!env.contains_key(secret), "{secret} leaked into the job");
    }
    assert!(!text(&result.stdout).contains("hunter2"));
}

#[tokio::test]
async fn job_runs_unprivileged_with_the_limits_applied() {
    let rt = runtime().await;
    let code = r#"
import json, os
def read(path):
    with open(path) as f:
        return f.read().strip()
status = dict(line.split(":\t", 1) for line in read("/proc/self/status").splitlines() if ":\t" in line)
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd(),
    "cap_eff": status["CapEff"].strip(), "cap_bnd": status["CapBnd"].strip(),
    "no_new_privs": status["NoNewPrivs"].strip(),
    "memory": int(read("/sys/fs/cgroup/memory/memory.limit_in_bytes")),
    "memsw": int(read("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")),
    "pids": read("/sys/fs/cgroup/pids/pids.max"),
    "cfs": [int(read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")), int(read("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))],
    "work_owner": os.stat("/work").st_uid, "main_owner": os.stat("/work/main.py").st_uid,
}))
"#;
    let report = stdout_json(&run(&rt, &job(code, limits(20))).await);
    assert_eq!(report["uid"], 1000);
    assert_eq!(report["gid"], 1000);
    assert_eq!(report["cwd"], "/work");
    assert_eq!(report["cap_eff"], "0000000000000000");
    assert_eq!(report["cap_bnd"], "0000000000000000");
    assert_eq!(report["no_new_privs"], "1");
    assert_eq!(report["memory"], 256 * 1024 * 1024);
    assert_eq!(
        report["memsw"],
        256 * 1024 * 1024,
        "no swap beyond the memory limit"
    );
    assert_eq!(report["pids"], "64");
    let cfs = report["cfs"].as_array().unwrap();
    let share = cfs[0].as_f64().unwrap() / cfs[1].as_f64().unwrap();
    assert!((share - 0.5).abs() < 1e-9, "cpu share {share}");
    assert_eq!(report["work_owner"], 1000);
    assert_eq!(report["main_owner"], 1000);
}

const MANY_OUTPUTS: &str = r#"
import os
for i in range(30):
    with open(f"/work/out/small_{i:02}.txt", "w") as f:
        f.write("s" * 1000)
os.makedirs("/work/out/deep/er")
with open("/work/out/deep/er/big.bin", "wb") as f:
    f.write(b"b" * (2 * 1024 * 1024))
os.symlink("/etc/passwd", "/work/out/link")
os.mkfifo("/work/out/fifo")
"#;

#[tokio::test]
async fn outputs_over_the_count_or_size_caps_are_truncated_and_links_skipped() {
    let rt = runtime().await;
    let count_capped = Limits {
        output_max_files: 5,
        ..limits(20)
    };
    let result = run(&rt, &job(MANY_OUTPUTS, count_capped)).await;
    expect(&result, Outcome::Succeeded);
    assert_eq!(result.outputs.len(), 5);
    assert!(result.outputs_truncated);

    let spec = job(
        MANY_OUTPUTS,
        Limits {
            output_max_files: 100,
            output_max_bytes: 100 * 1024,
            ..limits(20)
        },
    );
    let result = run(&rt, &spec).await;
    expect(&result, Outcome::Succeeded);
    let names: Vec<&str> = result.outputs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 30, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("small_")), "{names:?}");
    assert!(result.outputs_truncated, "big.bin did not fit");
    assert!(result.outputs.iter().all(|(_, data)| data.len() == 1000));

    let uncapped = Limits {
        output_max_files: 100,
        ..limits(20)
    };
    let result = run(&rt, &job(MANY_OUTPUTS, uncapped)).await;
    let names: Vec<&str> = result.outputs.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"deep/er/big.bin"), "{names:?}");
    assert!(
        !names.contains(&"link") && !names.contains(&"fifo"),
        "{names:?}"
    );
    assert!(!result.outputs_truncated);
}

#[tokio::test]
async fn file_paths_escaping_work_are_refused() {
    let rt = runtime().await;
    for path in [
        "../evil.py",
        "inputs/../../etc/passwd",
        "/etc/cron.d/x",
        "a//b",
        "out",
    ] {
        let mut spec = job("print(1)", limits(20));
        spec.files.push((path.into(), Bytes::from_static(b"x")));
        match rt.run(&spec).await {
            Err(e @ SandboxError::InvalidJob(_)) => assert!(!e.is_transient()),
            other => panic!("{path:?} was not refused: {other:?}"),
        }
        assert_nothing_left(&rt, &spec).await;
    }
}

#[tokio::test]
async fn unknown_command_fails_with_127_and_is_cleaned_up() {
    let rt = runtime().await;
    let mut spec = job("", limits(20));
    spec.command = vec!["/work/no-such-program".into()];
    let result = run(&rt, &spec).await;
    assert_eq!(result.outcome, Outcome::Failed);
    assert_eq!(result.exit_code, Some(127));
    assert!(text(&result.stderr).contains("no-such-program"));
}

#[tokio::test]
async fn engine_refusal_mid_way_leaves_nothing_behind() {
    // The engine refuses the job container itself (more CPUs than the host has): nothing the run
    // created may remain.
    let rt = runtime().await;
    let spec = job(
        "print(1)",
        Limits {
            cpus: 512.0,
            ..limits(20)
        },
    );
    match rt.run(&spec).await {
        Err(e @ SandboxError::InvalidJob(_)) => assert!(e.to_string().contains("CPU"), "{e}"),
        other => panic!("expected the engine to refuse the job, got {other:?}"),
    }
    assert_nothing_left(&rt, &spec).await;
}

#[tokio::test]
async fn missing_image_is_reported_and_retryable() {
    // Images are built in the engine, never pulled: a missing one waits for an operator.
    let rt = runtime().await;
    let mut spec = job("print(1)", limits(20));
    spec.image = "mecapy-no-such-image:never".into();
    match rt.run(&spec).await {
        Err(e @ SandboxError::ImageMissing(_)) => assert!(e.is_transient()),
        other => panic!("expected ImageMissing, got {other:?}"),
    }
    assert_nothing_left(&rt, &spec).await;
}

#[tokio::test]
async fn unreachable_engine_is_a_transient_error() {
    match DockerRuntime::connect_to("unix:///nonexistent/docker.sock").await {
        Err(e @ SandboxError::Unavailable(_)) => assert!(e.is_transient()),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let rt = runtime().await;
    rt.ping().await.unwrap();
    assert!(rt.api_version().starts_with("1."), "{}", rt.api_version());
}

#[tokio::test]
async fn cancelled_run_still_removes_its_containers() {
    let rt = runtime().await;
    let spec = job("while True:\n    pass\n", limits(30));
    let cancelled = tokio::time::timeout(Duration::from_millis(1500), rt.run(&spec)).await;
    assert!(cancelled.is_err(), "the run should still be going");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = rt
            .containers_with_label(JOB_LABEL, job_id(&spec))
            .await
            .unwrap();
        let volumes = rt
            .volumes_with_label(JOB_LABEL, job_id(&spec))
            .await
            .unwrap();
        if left.is_empty() && volumes.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still there after cancellation: {left:?} {volumes:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_reaper_removes_sandbox_containers_past_their_deadline_only() {
    let rt = runtime().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Created by a dispatcher that died before starting them: nothing else would remove them.
    // Returns the job id and the container id.
    let create = |deadline: u64| {
        let job = uuid::Uuid::new_v4().to_string();
        let out = std::process::Command::new("docker")
            .args(["create", "--network", "none"])
            .args(["--label", "org.mecapy.sandbox=job"])
            .args(["--label", &format!("{JOB_LABEL}={job}")])
            .args([
                "--label",
                &format!("org.mecapy.sandbox-deadline={deadline}"),
            ])
            .args([IMAGE, "sleep", "600"])
            .output()
            .expect("docker create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (job, String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let current = create(now + 600).0;
    // The deployed stack's sweep reaps the same engine every minute: an expired container it
    // took first is not this reaper's miss, so such a round is tried again (a few times at most).
    let mut reaped_here = false;
    for _ in 0..5 {
        let (expired, id) = create(now - 10);
        let reaped = rt.reap().await.unwrap();
        assert!(rt
            .containers_with_label(JOB_LABEL, &expired)
            .await
            .unwrap()
            .is_empty());
        if reaped.contains(&id) {
            reaped_here = true;
            break;
        }
    }
    assert!(
        reaped_here,
        "the expired container was never reaped by this reaper"
    );
    let kept = rt.containers_with_label(JOB_LABEL, &current).await.unwrap();
    assert_eq!(kept.len(), 1, "a container within its deadline was reaped");
    let _ = std::process::Command::new("docker")
        .args(["rm", "-f", &kept[0]])
        .output();
}

#[tokio::test]
async fn the_job_is_killed_inside_its_container_at_the_limit() {
    // The job ignores SIGTERM and outlives the dispatcher's own timer only if nothing inside
    // enforces the limit: `timeout -s KILL` does, at the limit itself.
    let rt = runtime().await;
    let code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('start', flush=True)\nwhile True:\n    time.sleep(0.01)\n";
    let result = run(&rt, &job(code, limits(2))).await;
    expect(&result, Outcome::Timeout);
    assert_eq!(result.exit_code, Some(137));
    assert!(
        result.duration < Duration::from_millis(2900),
        "{:?}",
        result.duration
    );
    assert_eq!(text(&result.stdout), "start\n");
}
