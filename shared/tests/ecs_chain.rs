//! A job's ECS task for real: its task definition and `RunTask` overrides, as the ECS runtime
//! builds them, run on the local Docker engine as the ECS agent would (`ecs::LocalAgent`),
//! against LocalStack S3 with real presigned URLs: stage-in fetches and checks the code and
//! inputs, the job runs with no network, stage-out stores stdout, stderr and `/work/out` within
//! the caps; the task's end, read as its state change event, gives the job's outcome. Refusals
//! (a changed input, an expired URL) end in `error` with nothing stored under `results/`.
//!
//! Needs the Docker engine, LocalStack, the compute image and the stager image (`make images`,
//! which `make test` runs).

use std::time::Duration;

use bollard::Docker;
use mecapy_shared::jobs::stager::StagedReport;
use mecapy_shared::jobs::{keys, Input, Manifest, StageDocument};
use mecapy_shared::sandbox::ecs::{self, LocalAgent, TaskEnd, TaskRequest, LOCAL_STAGER_IMAGE};
use mecapy_shared::sandbox::{Limits, Outcome, Restrictions};
use mecapy_shared::storage::Storage;
use sha2::{Digest, Sha256};
use uuid::Uuid;

const IMAGE: &str = "mecapy-python:bookworm";
/// Where the task's containers reach LocalStack: the docker bridge's address (services.sh).
const BRIDGE_ADDR: &str = "172.17.0.1";

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

struct Chain {
    /// What the dispatcher uses (loopback) and what the task's URLs point at (the bridge).
    storage: Storage,
    task_storage: Storage,
    agent: LocalAgent,
}

async fn chain() -> Chain {
    mecapy_shared::telemetry::init("ecs-chain-test");
    let docker = Docker::connect_with_defaults().expect("a Docker client");
    for image in [IMAGE, LOCAL_STAGER_IMAGE] {
        docker.inspect_image(image).await.unwrap_or_else(|e| {
            panic!(
                "the Docker engine lacks {image} ({e}): start it with `infra/services.sh up \
                 docker` and build the images with `make images` (make test does)"
            )
        });
    }
    let bucket = std::env::var("UPLOAD_BUCKET").unwrap_or_else(|_| "mecapy-uploads".into());
    // The local stack's settings first: without them the SDK would look for AWS's.
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL is unset: load infra/local.env (make test does)");
    let sdk = aws_config::load_from_env().await;
    let endpoint = endpoint
        .replace("127.0.0.1", BRIDGE_ADDR)
        .replace("localhost", BRIDGE_ADDR);
    let task_sdk = aws_config::from_env().endpoint_url(endpoint).load().await;
    let storage = Storage::new(&sdk, &bucket);
    storage.get("ecs-chain-probe", 1).await.unwrap_or_else(|e| {
        panic!(
            "LocalStack S3 (bucket {bucket}) does not answer ({e}): start it with \
             `infra/services.sh up localstack` (make test does)"
        )
    });
    Chain {
        storage,
        task_storage: Storage::new(&task_sdk, &bucket),
        agent: LocalAgent::new(docker, Some(Limits::default().pids_limit)),
    }
}

/// A job of `code` with one input, stored in S3 as compute-submit stores it.
async fn job(chain: &Chain, code: &str, input: &[u8], limits: Limits) -> Manifest {
    let job = Uuid::new_v4();
    let user = Uuid::new_v4();
    chain
        .storage
        .put(
            &keys::code(job),
            code.as_bytes().to_vec().into(),
            "text/x-python",
        )
        .await
        .expect("code stored");
    let input_key = format!("{user}/data.csv");
    chain
        .storage
        .put(&input_key, input.to_vec().into(), "text/csv")
        .await
        .expect("input stored");
    Manifest {
        job_id: job,
        user_id: user,
        tool: "python".into(),
        image: IMAGE.into(),
        command: vec!["python3".into(), "/work/main.py".into()],
        code_key: keys::code(job),
        code_sha256: sha(code.as_bytes()),
        inputs: vec![Input {
            file_id: Uuid::new_v4(),
            filename: "data.csv".into(),
            key: input_key,
            sha256: sha(input),
            size: input.len() as i64,
            path: "inputs/data.csv".into(),
        }],
        limits,
    }
}

/// Writes the job's stage document, then runs its task: the task's end as ECS reports it.
async fn run(
    chain: &Chain,
    manifest: &Manifest,
    ttl: Duration,
    before: Option<Duration>,
) -> TaskEnd {
    let code_size = chain
        .storage
        .head(&manifest.code_key)
        .await
        .expect("S3")
        .map_or(0, |code| code.size);
    let document = StageDocument::for_job(manifest, code_size, &chain.task_storage, ttl)
        .await
        .expect("a stage document");
    chain
        .storage
        .put(
            &keys::stage(manifest.job_id),
            serde_json::to_vec(&document).unwrap().into(),
            "application/json",
        )
        .await
        .expect("stage document stored");
    let stage_url = chain
        .task_storage
        .presign_get(&keys::stage(manifest.job_id), "stage.json", ttl)
        .await
        .expect("presigned stage document");
    if let Some(wait) = before {
        tokio::time::sleep(wait).await;
    }
    let r = Restrictions::of(&manifest.limits);
    let task = ecs::task_definition(&r, "mecapy-python", IMAGE, LOCAL_STAGER_IMAGE);
    let env = manifest.env();
    let request = TaskRequest {
        job: manifest.job_id,
        task_definition: "mecapy-python",
        restrictions: &r,
        command: &manifest.command,
        env: &env,
        stage_url: &stage_url,
    };
    let change = chain
        .agent
        .run(
            &task,
            &request.overrides(),
            &ecs::started_by(manifest.job_id),
            manifest.limits.timeout + Duration::from_secs(10),
        )
        .await
        .expect("the task ran on the local engine");
    assert_eq!(change.job(), Some(manifest.job_id));
    change.end(manifest.limits.timeout).expect("a stopped task")
}

async fn results(chain: &Chain, job: Uuid) -> Vec<String> {
    let listed = chain
        .storage
        .client()
        .list_objects_v2()
        .bucket(chain.storage.bucket())
        .prefix(keys::results_prefix(job))
        .send()
        .await
        .expect("S3 lists");
    let mut keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    keys.sort();
    keys
}

async fn text(chain: &Chain, key: &str) -> String {
    let bytes = chain
        .storage
        .get(key, 10 * 1024 * 1024)
        .await
        .expect("S3")
        .unwrap_or_else(|| panic!("{key} stored"));
    String::from_utf8_lossy(&bytes).into_owned()
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
    let manifest = job(&chain, JOB, b"a,b\n1,2\n3,4\n", limits).await;
    let job = manifest.job_id;
    let end = run(&chain, &manifest, Duration::from_secs(300), None).await;
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
        results(&chain, job).await,
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
    let manifest = job(&chain, "print('ran')", b"a,b\n", Limits::default()).await;
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
    let end = run(&chain, &manifest, Duration::from_secs(300), None).await;
    assert!(
        matches!(&end, TaskEnd::Error(r) if r.contains("changed since the job was submitted")),
        "{end:?}"
    );
    assert_eq!(results(&chain, manifest.job_id).await, Vec::<String>::new());
}

/// A URL that no longer fetches its file ends stage-in (LocalStack checks neither signatures
/// nor a presigned GET's expiry: a withdrawn object stands for a refused URL here); an expired
/// upload form ends stage-out. Either way the job is an `error` and nothing is stored.
#[tokio::test]
async fn refused_urls_end_in_error_and_nothing_is_stored() {
    let chain = chain().await;
    let manifest = job(&chain, "print('ran')", b"a,b\n", Limits::default()).await;
    chain.storage.delete(&manifest.code_key).await.unwrap();
    let end = run(&chain, &manifest, Duration::from_secs(300), None).await;
    assert!(
        matches!(&end, TaskEnd::Error(r) if r.contains("could not be staged") && r.contains("refused")),
        "{end:?}"
    );
    assert_eq!(results(&chain, manifest.job_id).await, Vec::<String>::new());

    let manifest = job(&chain, "print('ran')", b"a,b\n", Limits::default()).await;
    let end = run(
        &chain,
        &manifest,
        Duration::from_secs(1),
        Some(Duration::from_secs(2)),
    )
    .await;
    assert!(
        matches!(&end, TaskEnd::Error(r) if r.contains("results could not be stored") && r.contains("expired")),
        "{end:?}"
    );
    assert_eq!(results(&chain, manifest.job_id).await, Vec::<String>::new());
}

#[tokio::test]
async fn memory_and_time_limits_end_the_job_as_on_docker() {
    let chain = chain().await;
    let oom = job(
        &chain,
        "x = bytearray(512 * 1024 * 1024)\nprint(len(x))",
        b"a\n",
        Limits::default(),
    )
    .await;
    let end = run(&chain, &oom, Duration::from_secs(300), None).await;
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

    let slow = job(
        &chain,
        "import time\nprint('started', flush=True)\ntime.sleep(30)",
        b"a\n",
        Limits {
            timeout: Duration::from_secs(2),
            ..Limits::default()
        },
    )
    .await;
    let end = run(&chain, &slow, Duration::from_secs(300), None).await;
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
