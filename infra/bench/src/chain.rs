//! The stage-in → job → stage-out chain of the ECS runtime against today's archive path, on the
//! local engine: the same small job (reads a 100 KiB input, writes a 100 KiB output, prints a
//! line), one at a time, interleaved (archive, chain, archive, chain, ...) so that both see the
//! same noise on this shared machine. The archive path is `DockerRuntime::run` (files in and
//! outputs back by tar archive through the engine API); the chain is the job's ECS task run by
//! `ecs::LocalAgent` as in `shared/tests/ecs_chain.rs`: stage document with presigned URLs of
//! LocalStack S3, then hold, stage-in, job, stage-out. Needs only Docker and LocalStack.

use std::time::{Duration, Instant};

use bollard::Docker;
use bytes::Bytes;
use mecapy_shared::jobs::spec::CODE_PATH;
use mecapy_shared::jobs::{keys, Input, Manifest, StageDocument};
use mecapy_shared::sandbox::ecs::{self, LocalAgent, TaskEnd, TaskRequest, LOCAL_STAGER_IMAGE};
use mecapy_shared::sandbox::{
    ContainerRuntime, DockerRuntime, Limits, Outcome, Restrictions, RunResult,
};
use mecapy_shared::storage::Storage;
use mecapy_shared::testing::{local_env, storage_at};
use uuid::Uuid;

use crate::{fmt, percentile};

const IMAGE: &str = "mecapy-python:bookworm";
/// Where the task's containers reach LocalStack: the docker bridge's address (services.sh).
const BRIDGE_ADDR: &str = "172.17.0.1";
const SIZE: usize = 100 * 1024;
const OUTPUT: &str = "result.bin";
const JOB: &str = r#"
data = open("/work/inputs/data.bin", "rb").read()
open("/work/out/result.bin", "wb").write(data[::-1])
print("read", len(data))
"#;
/// How long the stage document's URLs stay valid.
const TTL: Duration = Duration::from_secs(300);

struct Bench {
    runtime: DockerRuntime,
    agent: LocalAgent,
    /// What the dispatcher uses (loopback) and what the task's URLs point at (the bridge).
    storage: Storage,
    task_storage: Storage,
    code: Bytes,
    input: Bytes,
    /// A job's manifest, its code and input stored once (each run gets its own job id).
    manifest: Manifest,
}

/// p50 and mean.
fn stats(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    (percentile(&samples, 0.50), mean)
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

async fn setup() -> Bench {
    let runtime = DockerRuntime::connect().await.unwrap_or_else(|e| {
        panic!(
            "the Docker engine does not answer ({e}): start it with \
             `infra/services.sh up docker` (make up does)"
        )
    });
    let docker = Docker::connect_with_defaults().expect("a Docker client");
    for image in [IMAGE, LOCAL_STAGER_IMAGE] {
        docker.inspect_image(image).await.unwrap_or_else(|e| {
            panic!("the Docker engine lacks {image} ({e}): build it with `make images`")
        });
    }
    let env = local_env();
    let endpoint = &env["AWS_ENDPOINT_URL"];
    let bucket = &env["UPLOAD_BUCKET"];
    let task_endpoint = endpoint
        .replace("127.0.0.1", BRIDGE_ADDR)
        .replace("localhost", BRIDGE_ADDR);
    let storage = storage_at(endpoint, bucket, &env).await;
    let task_storage = storage_at(&task_endpoint, bucket, &env).await;
    storage
        .get("bench-chain-probe", 1)
        .await
        .unwrap_or_else(|e| {
            panic!(
            "LocalStack S3 (bucket {bucket} at {endpoint}) does not answer ({e}): start it with \
             `infra/services.sh up localstack` (make up does)"
        )
        });

    let code = Bytes::from_static(JOB.as_bytes());
    let input: Bytes = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let (job, user) = (Uuid::new_v4(), Uuid::new_v4());
    let input_key = format!("{user}/data.bin");
    for (key, body) in [(keys::code(job), &code), (input_key.clone(), &input)] {
        storage
            .put(&key, body.clone(), "application/octet-stream")
            .await
            .expect("stored in S3");
    }
    let manifest = Manifest {
        job_id: job,
        user_id: user,
        tool: "python".into(),
        image: IMAGE.into(),
        command: vec!["python3".into(), format!("/work/{CODE_PATH}")],
        code_sha256: storage.sha256(&keys::code(job)).await.expect("S3"),
        code_key: keys::code(job),
        inputs: vec![Input {
            file_id: Uuid::new_v4(),
            filename: "data.bin".into(),
            sha256: storage.sha256(&input_key).await.expect("S3"),
            key: input_key,
            size: SIZE as i64,
            path: "inputs/data.bin".into(),
        }],
        limits: Limits::default(),
    };
    Bench {
        runtime,
        agent: LocalAgent::new(docker, Some(Limits::default().pids_limit)),
        storage,
        task_storage,
        code,
        input,
        manifest,
    }
}

impl Bench {
    /// A new job of the same code and input.
    fn job(&self) -> Manifest {
        Manifest {
            job_id: Uuid::new_v4(),
            ..self.manifest.clone()
        }
    }

    /// `DockerRuntime::run`, checked; its time.
    async fn archive(&self) -> (Duration, RunResult) {
        let spec = self
            .job()
            .job_spec(self.code.clone(), vec![self.input.clone()]);
        let t = Instant::now();
        let result = self.runtime.run(&spec).await.expect("the archive path ran");
        let elapsed = t.elapsed();
        assert_eq!(
            result.outcome,
            Outcome::Succeeded,
            "archive path: {result:?}"
        );
        assert!(
            result
                .outputs
                .iter()
                .any(|(name, data)| name == OUTPUT && data.len() == SIZE),
            "archive path: no {OUTPUT} of {SIZE} B"
        );
        (elapsed, result)
    }

    /// What the dispatcher adds around `DockerRuntime::run`: the code and input fetched from
    /// S3, the streams and outputs stored there.
    async fn archive_transfers(&self, result: &RunResult) -> Duration {
        let job = Uuid::new_v4();
        let t = Instant::now();
        for key in [&self.manifest.code_key, &self.manifest.inputs[0].key] {
            self.storage
                .get(key, 1 << 20)
                .await
                .expect("S3")
                .expect("stored");
        }
        let mut stored = vec![
            (keys::stdout(job), result.stdout.clone()),
            (keys::stderr(job), result.stderr.clone()),
        ];
        stored.extend(
            result
                .outputs
                .iter()
                .map(|(name, data)| (keys::output(job, name), data.clone())),
        );
        for (key, body) in stored {
            self.storage
                .put(&key, body, "text/plain")
                .await
                .expect("S3");
        }
        t.elapsed()
    }

    /// The job's task on the local engine, checked: (stage document and its URL, task run).
    async fn chain(&self) -> (Duration, Duration) {
        let manifest = self.job();
        let job = manifest.job_id;
        let t = Instant::now();
        let code_size = self
            .storage
            .head(&manifest.code_key)
            .await
            .expect("S3")
            .map_or(0, |code| code.size);
        let document = StageDocument::for_job(&manifest, code_size, &self.task_storage, TTL)
            .await
            .expect("a stage document");
        let document = serde_json::to_vec(&document).expect("json");
        self.storage
            .put(&keys::stage(job), document.into(), "application/json")
            .await
            .expect("stage document stored");
        let stage_url = self
            .task_storage
            .presign_get(&keys::stage(job), "stage.json", TTL)
            .await
            .expect("presigned stage document");
        let staged = t.elapsed();

        let t = Instant::now();
        let limits = &manifest.limits;
        let r = Restrictions::of(limits);
        let task = ecs::task_definition(&r, "mecapy-python", IMAGE, LOCAL_STAGER_IMAGE);
        let env = manifest.env();
        let request = TaskRequest {
            job,
            task_definition: "mecapy-python",
            restrictions: &r,
            command: &manifest.command,
            env: &env,
            stage_url: &stage_url,
        };
        let change = self
            .agent
            .run(
                &task,
                &request.overrides(),
                &ecs::started_by(job),
                limits.timeout + Duration::from_secs(10),
            )
            .await
            .expect("the task ran on the local engine");
        let ran = t.elapsed();
        let end = change.end(limits.timeout);
        assert!(
            matches!(
                end,
                Some(TaskEnd::Ran {
                    outcome: Outcome::Succeeded,
                    ..
                })
            ),
            "chain: {end:?}"
        );
        let output = self.storage.head(&keys::output(job, OUTPUT)).await;
        assert!(
            matches!(output, Ok(Some(ref o)) if o.size == SIZE as i64),
            "chain: {OUTPUT} of {SIZE} B not stored: {output:?}"
        );
        (staged, ran)
    }
}

/// Rows: the chain against the archive path, per job, p50 and mean; `BENCH_CHAIN_JOBS` runs
/// of each (8 by default), after one unmeasured run of each.
pub async fn measure() {
    let jobs: usize = std::env::var("BENCH_CHAIN_JOBS")
        .ok()
        .map(|n| n.parse().expect("BENCH_CHAIN_JOBS: a number of jobs"))
        .unwrap_or(8)
        .max(1);
    let bench = setup().await;
    bench.archive().await;
    bench.chain().await;
    let (mut archive, mut with_s3, mut chain, mut staged, mut ran) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..jobs {
        let (elapsed, result) = bench.archive().await;
        archive.push(elapsed);
        with_s3.push(elapsed + bench.archive_transfers(&result).await);
        let (document, task) = bench.chain().await;
        staged.push(document);
        ran.push(task);
        chain.push(document + task);
    }
    let (archive, with_s3, chain) = (stats(archive), stats(with_s3), stats(chain));
    let (staged, ran) = (stats(staged), stats(ran));
    let what = format!("{jobs} jobs of 100 KiB in and out, one at a time, interleaved");
    for (name, chain, archive) in [("p50", chain.0, archive.0), ("mean", chain.1, archive.1)] {
        println!(
            "| stage-in/stage-out chain (ECS task on the local engine) / archive path (`DockerRuntime::run`), {what}, {name} | {} / {} = **{:.2}** | |",
            fmt(chain),
            fmt(archive),
            ratio(chain, archive)
        );
    }
    println!(
        "| chain, p50 / mean: stage document (presigned GETs and POST, stored, presigned) + task (hold, stage-in, job, stage-out) | {} + {} / {} + {} | |",
        fmt(staged.0),
        fmt(ran.0),
        fmt(staged.1),
        fmt(ran.1)
    );
    println!(
        "| chain / archive path with the dispatcher's S3 transfers (code and input fetched, streams and output stored), p50 / mean | {} / {} = {:.2}; {} / {} = {:.2} | |",
        fmt(chain.0),
        fmt(with_s3.0),
        ratio(chain.0, with_s3.0),
        fmt(chain.1),
        fmt(with_s3.1),
        ratio(chain.1, with_s3.1)
    );
}
