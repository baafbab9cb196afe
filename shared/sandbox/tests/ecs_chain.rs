//! A job's ECS task for real: its task definition and `RunTask` overrides, as the ECS runtime
//! builds them, run on the local Docker engine as the ECS agent would (`mecapy_testkit::LocalAgent`),
//! against LocalStack S3 with real presigned URLs: stage-in fetches and checks the code and
//! inputs, the job runs with no network, stage-out stores stdout, stderr and `/work/out` within
//! the caps; the task's end, read as its state change event, gives the job's outcome. Refusals
//! (a changed input, an expired URL) end in `error` with nothing stored under `results/`.
//!
//! Needs the Docker engine, LocalStack, the compute image and the stager image (`make images`,
//! which `make test` runs).

use std::time::Duration;

use mecapy_domain::keys;
use mecapy_sandbox::ecs::TaskEnd;
use mecapy_sandbox::stager::StagedReport;
use mecapy_sandbox::{Limits, Outcome};
use mecapy_testkit::ecs_task::LocalEcs;
use sha2::{Digest, Sha256};
use uuid::Uuid;

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

async fn chain() -> LocalEcs {
    mecapy_adapters::telemetry::init("ecs-chain-test");
    LocalEcs::connect().await
}

async fn text(chain: &LocalEcs, key: &str) -> String {
    let bytes = chain
        .storage
        .get(key, 10 * 1024 * 1024)
        .await
        .expect("S3")
        .unwrap_or_else(|| panic!("{key} stored"));
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The task ended in an `error` whose reason says each of `reasons`, and nothing of the job is
/// under `results/`.
async fn assert_refused(chain: &LocalEcs, job: Uuid, end: &TaskEnd, reasons: &[&str]) {
    let TaskEnd::Error(reason) = end else {
        panic!("an error, not {end:?}");
    };
    for expected in reasons {
        assert!(reason.contains(expected), "{expected:?} in {reason:?}");
    }
    assert_eq!(chain.results(job).await, Vec::<String>::new());
}

const JOB: &str = r#"
import os, socket, sys
rows = open("/work/inputs/data.csv").read().splitlines()
print("rows", len(rows))
print("to stderr", file=sys.stderr)
try:
    socket.create_connection(("172.17.0.1", 4566), timeout=2)
    print("network: reachable")
except OSError as e:
    print("network: none", type(e).__name__)
try:
    open("/etc/x", "w")
except OSError:
    print("root: read-only")
print("uid", os.getuid())
os.makedirs("/work/out/sub", exist_ok=True)
open("/work/out/sum.txt", "w").write(str(len(rows)))
open("/work/out/sub/b.bin", "wb").write(b"\0" * 10)
open("/work/out/c.txt", "w").write("c")
os.symlink("/etc/passwd", "/work/out/link")
"#;

#[tokio::test]
async fn the_chain_stages_in_runs_without_network_and_stores_within_the_caps() {
    let chain = chain().await;
    let limits = Limits {
        output_max_files: 2,
        stderr_max_bytes: 4,
        ..Limits::default()
    };
    let (job, end) = chain
        .job_ended(JOB, "data.csv", b"a,b\n1,2\n3,4\n", limits)
        .await;
    assert!(
        matches!(
            end,
            TaskEnd::Ran {
                outcome: Outcome::Succeeded,
                exit_code: Some(0),
                ..
            }
        ),
        "{end:?}"
    );
    let stdout = text(&chain, &keys::stdout(job)).await;
    assert!(stdout.contains("rows 3"), "{stdout}");
    assert!(stdout.contains("network: none"), "{stdout}");
    assert!(stdout.contains("root: read-only"), "{stdout}");
    assert!(stdout.contains("uid 1000"), "{stdout}");
    assert_eq!(text(&chain, &keys::stderr(job)).await, "to s", "capped");

    let report: StagedReport =
        serde_json::from_str(&text(&chain, &keys::staged(job)).await).expect("a report");
    let names: Vec<_> = report.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        ["c.txt", "sub/b.bin"],
        "name order, two files, no link"
    );
    assert!(report.outputs_truncated);
    assert!(report.stderr.truncated && !report.stdout.truncated);
    assert_eq!(report.outputs[1].sha256, sha(&[0u8; 10]));
    assert_eq!(
        chain.results(job).await,
        [
            keys::output(job, "c.txt"),
            keys::output(job, "sub/b.bin"),
            keys::staged(job),
            keys::stderr(job),
            keys::stdout(job),
        ]
    );
}

#[tokio::test]
async fn a_changed_input_is_refused_before_the_job_runs_and_nothing_is_stored() {
    let chain = chain().await;
    let manifest = chain
        .job("print('ran')", "data.csv", b"a,b\n", Limits::default())
        .await;
    // The input changes after submission: same key, other bytes.
    chain
        .storage
        .put(
            &manifest.inputs[0].key,
            b"a,c\n".to_vec().into(),
            "text/csv",
        )
        .await
        .unwrap();
    let end = chain.run(&manifest, Duration::from_secs(300), None).await;
    assert_refused(
        &chain,
        manifest.job_id,
        &end,
        &["changed since the job was submitted"],
    )
    .await;
}

/// A URL that no longer fetches its file ends stage-in (LocalStack checks neither signatures
/// nor a presigned GET's expiry: a withdrawn object stands for a refused URL here); an expired
/// upload form ends stage-out. Either way the job is an `error` and nothing is stored.
#[tokio::test]
async fn refused_urls_end_in_error_and_nothing_is_stored() {
    let chain = chain().await;
    let manifest = chain
        .job("print('ran')", "data.csv", b"a,b\n", Limits::default())
        .await;
    chain.storage.delete(&manifest.code_key).await.unwrap();
    let end = chain.run(&manifest, Duration::from_secs(300), None).await;
    assert_refused(
        &chain,
        manifest.job_id,
        &end,
        &["could not be staged", "refused"],
    )
    .await;

    let manifest = chain
        .job("print('ran')", "data.csv", b"a,b\n", Limits::default())
        .await;
    let end = chain
        .run(
            &manifest,
            Duration::from_secs(1),
            Some(Duration::from_secs(2)),
        )
        .await;
    assert_refused(
        &chain,
        manifest.job_id,
        &end,
        &["results could not be stored", "expired"],
    )
    .await;
}

#[tokio::test]
async fn memory_and_time_limits_end_the_job_as_on_docker() {
    let chain = chain().await;
    let oom = chain
        .job(
            "x = bytearray(512 * 1024 * 1024)\nprint(len(x))",
            "data.csv",
            b"a\n",
            Limits::default(),
        )
        .await;
    let end = chain.run(&oom, Duration::from_secs(300), None).await;
    assert!(
        matches!(
            end,
            TaskEnd::Ran {
                outcome: Outcome::Oom,
                ..
            }
        ),
        "{end:?}"
    );

    let slow = chain
        .job(
            "import time\nprint('started', flush=True)\ntime.sleep(30)",
            "data.csv",
            b"a\n",
            Limits {
                timeout: Duration::from_secs(2),
                ..Limits::default()
            },
        )
        .await;
    let end = chain.run(&slow, Duration::from_secs(300), None).await;
    assert!(
        matches!(
            end,
            TaskEnd::Ran {
                outcome: Outcome::Timeout,
                exit_code: Some(137),
                ..
            }
        ),
        "{end:?}"
    );
    assert_eq!(text(&chain, &keys::stdout(slow.job_id)).await, "started\n");
}

/// A job that replaces its outputs directory and the task's own directory by links into the
/// file system: stage-out follows neither, and stores nothing of the stager's own files.
#[tokio::test]
async fn links_in_place_of_the_task_directories_store_nothing() {
    let chain = chain().await;
    let code = r#"
import os, shutil
print("replaced")
shutil.rmtree("/work/out")
os.symlink("/", "/work/out")
shutil.rmtree("/work/.mecapy", ignore_errors=True)
os.symlink("/proc/1", "/work/.mecapy")
"#;
    let (job, end) = chain
        .job_ended(code, "data.csv", b"a\n", Limits::default())
        .await;
    // The marker went with the directory: stage-out refuses rather than store anything.
    assert_refused(&chain, job, &end, &["never staged"]).await;

    // The outputs directory alone: the job's streams are stored, no output.
    let code = "import os, shutil\nprint('replaced')\nshutil.rmtree('/work/out')\nos.symlink('/', '/work/out')\n";
    let (job, end) = chain
        .job_ended(code, "data.csv", b"a\n", Limits::default())
        .await;
    assert!(
        matches!(
            end,
            TaskEnd::Ran {
                outcome: Outcome::Succeeded,
                ..
            }
        ),
        "{end:?}"
    );
    let report: StagedReport =
        serde_json::from_str(&text(&chain, &keys::staged(job)).await).expect("a report");
    assert!(report.outputs.is_empty(), "{report:?}");
    assert_eq!(text(&chain, &keys::stdout(job)).await, "replaced\n");
}
