//! The stage-in → job → stage-out chain of the ECS runtime against today's archive path, on the
//! local engine: the same small job (reads a 100 KiB input, writes a 100 KiB output, prints a
//! line), one at a time, interleaved (archive, chain, archive, chain, ...) so that both see the
//! same noise on this shared machine. The archive path is `DockerRuntime::run` (files in and
//! outputs back by tar archive through the engine API); the chain is the job's ECS task run by
//! `mecapy_testkit::LocalAgent` through `mecapy_testkit::ecs_task::LocalEcs`, as `shared/sandbox/tests/ecs_chain.rs` runs
//! it: stage document with presigned URLs of LocalStack S3, then hold, stage-in, job, stage-out.
//! Needs only Docker and LocalStack.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mecapy_sandbox::ecs::TaskEnd;
use mecapy_sandbox::{ContainerRuntime, DockerRuntime, Limits, Outcome, RunResult};
use mecapy_shared::jobs::{keys, Manifest};
use mecapy_testkit::ecs_task::LocalEcs;
use uuid::Uuid;

use crate::{fmt, percentile};

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
    /// The job's ECS task on the local engine, and the loopback storage the dispatcher uses.
    ecs: LocalEcs,
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
    let ecs = LocalEcs::connect().await;
    let code = Bytes::from_static(JOB.as_bytes());
    let input: Bytes = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let manifest = ecs.job(JOB, "data.bin", &input, Limits::default()).await;
    Bench {
        runtime,
        ecs,
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
            self.ecs
                .storage
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
            self.ecs
                .storage
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
        let stage_url = self.ecs.stage(&manifest, TTL).await;
        let staged = t.elapsed();

        let t = Instant::now();
        let change = self.ecs.task(&manifest, &stage_url).await;
        let ran = t.elapsed();
        let end = change.end(manifest.limits.timeout);
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
        let output = self.ecs.storage.head(&keys::output(job, OUTPUT)).await;
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
    let jobs = crate::count_from_env("BENCH_CHAIN_JOBS", 8);
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
