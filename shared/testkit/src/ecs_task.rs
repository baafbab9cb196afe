//! A job's ECS task run for real on the local Docker engine, as the ECS agent would run it
//! ([`LocalAgent`]), against LocalStack S3 with real presigned URLs: the job's code and one
//! input stored as compute-submit stores them, its stage document written as the dispatcher
//! writes it, its task definition and `RunTask` overrides as the ECS runtime builds them, its
//! end read from its state change as the dispatcher reads it.
//!
//! Needs the Docker engine, LocalStack, the compute image and the stager image (`make images`).

use std::time::Duration;

use bollard::Docker;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{local_env, storage_at, LocalAgent, LOCAL_STAGER_IMAGE};
use mecapy_sandbox::ecs::{self, TaskEnd, TaskRequest, TaskStateChange};
use mecapy_sandbox::manifest::Manifest;
use mecapy_sandbox::manifest::CODE_PATH;
use mecapy_sandbox::stage::StageDocument;
use mecapy_sandbox::{Limits, Restrictions};
use mecapy_shared::jobs::{keys, Input};
use mecapy_shared::storage::Storage;

/// The python tool's image.
pub const IMAGE: &str = "mecapy-python:bookworm";
/// The task definition's family (the local engine needs no registration).
const FAMILY: &str = "mecapy-python";
/// Where the task's containers reach LocalStack: the docker bridge's address (services.sh).
pub const BRIDGE_ADDR: &str = "172.17.0.1";

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Runs jobs' tasks on the local engine.
pub struct LocalEcs {
    /// What the dispatcher uses (loopback): to store objects and check what the task stored.
    pub storage: Storage,
    /// What the task's URLs point at (the bridge).
    pub task_storage: Storage,
    pub agent: LocalAgent,
}

impl LocalEcs {
    /// Checks the Docker engine has both images and LocalStack S3 answers (panics naming the
    /// missing one and the command that starts or builds it); the bucket is `UPLOAD_BUCKET`.
    pub async fn connect() -> LocalEcs {
        let docker = Docker::connect_with_defaults().expect("a Docker client");
        for image in [IMAGE, LOCAL_STAGER_IMAGE] {
            docker.inspect_image(image).await.unwrap_or_else(|e| {
                panic!(
                    "the Docker engine lacks {image} ({e}): start it with `infra/services.sh up \
                     docker` and build the images with `make images` (make test and make bench \
                     do)"
                )
            });
        }
        // The local stack's settings, never AWS's: explicit endpoint and test credentials.
        let env = local_env();
        let endpoint = &env["AWS_ENDPOINT_URL"];
        let bucket = &env["UPLOAD_BUCKET"];
        let task_endpoint = endpoint
            .replace("127.0.0.1", BRIDGE_ADDR)
            .replace("localhost", BRIDGE_ADDR);
        let storage = storage_at(endpoint, bucket, &env).await;
        storage.get("ecs-task-probe", 1).await.unwrap_or_else(|e| {
            panic!(
                "LocalStack S3 (bucket {bucket} at {endpoint}) does not answer ({e}): start it \
                 with `infra/services.sh up localstack` (make test and make bench do)"
            )
        });
        LocalEcs {
            storage,
            task_storage: storage_at(&task_endpoint, bucket, &env).await,
            agent: LocalAgent::new(docker, Some(Limits::default().pids_limit)),
        }
    }

    /// A python job of `code` reading one input, `/work/inputs/{input_name}`, both stored in S3
    /// as compute-submit stores them: its manifest.
    pub async fn job(
        &self,
        code: &str,
        input_name: &str,
        input: &[u8],
        limits: Limits,
    ) -> Manifest {
        let job = Uuid::new_v4();
        let user = Uuid::new_v4();
        self.storage
            .put(
                &keys::code(job),
                code.as_bytes().to_vec().into(),
                "text/x-python",
            )
            .await
            .expect("code stored");
        let input_key = format!("{user}/{input_name}");
        self.storage
            .put(
                &input_key,
                input.to_vec().into(),
                "application/octet-stream",
            )
            .await
            .expect("input stored");
        Manifest {
            job_id: job,
            user_id: user,
            tool: "python".into(),
            image: IMAGE.into(),
            command: vec!["python3".into(), format!("/work/{CODE_PATH}")],
            code_key: keys::code(job),
            code_sha256: sha(code.as_bytes()),
            inputs: vec![Input {
                file_id: Uuid::new_v4(),
                filename: input_name.into(),
                key: input_key,
                sha256: sha(input),
                size: input.len() as i64,
                path: format!("inputs/{input_name}"),
            }],
            limits,
        }
    }

    /// The job's stage document (URLs valid `ttl`), stored as the dispatcher stores it: the
    /// presigned URL of it that the task gets.
    pub async fn stage(&self, manifest: &Manifest, ttl: Duration) -> String {
        let code_size = self
            .storage
            .head(&manifest.code_key)
            .await
            .expect("S3")
            .map_or(0, |code| code.size);
        let document = StageDocument::for_job(manifest, code_size, &self.task_storage, ttl)
            .await
            .expect("a stage document");
        self.storage
            .put(
                &keys::stage(manifest.job_id),
                serde_json::to_vec(&document).expect("json").into(),
                "application/json",
            )
            .await
            .expect("stage document stored");
        self.task_storage
            .presign_get(&keys::stage(manifest.job_id), "stage.json", ttl)
            .await
            .expect("presigned stage document")
    }

    /// Runs the job's task (its definition and overrides as the ECS runtime builds them) to its
    /// end, stopped at the job's limit plus 10 s as the dispatcher would: its state change.
    pub async fn task(&self, manifest: &Manifest, stage_url: &str) -> TaskStateChange {
        let r = Restrictions::of(&manifest.limits);
        let task = ecs::task_definition(&r, FAMILY, IMAGE, LOCAL_STAGER_IMAGE);
        let env = manifest.env();
        let request = TaskRequest {
            job: manifest.job_id,
            task_definition: FAMILY,
            restrictions: &r,
            command: &manifest.command,
            env: &env,
            stage_url,
        };
        let change = self
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
        change
    }

    /// Writes the job's stage document, waits `before` (if any), then runs its task: the task's
    /// end as ECS reports it.
    /// A job of `code` with one input, run at once with URLs valid for 5 minutes: its id and
    /// how its task ended.
    pub async fn job_ended(
        &self,
        code: &str,
        input_name: &str,
        input: &[u8],
        limits: Limits,
    ) -> (Uuid, TaskEnd) {
        let manifest = self.job(code, input_name, input, limits).await;
        let end = self.run(&manifest, Duration::from_secs(300), None).await;
        (manifest.job_id, end)
    }

    pub async fn run(
        &self,
        manifest: &Manifest,
        ttl: Duration,
        before: Option<Duration>,
    ) -> TaskEnd {
        let stage_url = self.stage(manifest, ttl).await;
        if let Some(wait) = before {
            tokio::time::sleep(wait).await;
        }
        self.task(manifest, &stage_url)
            .await
            .end(manifest.limits.timeout)
            .expect("a stopped task")
    }

    /// The keys stored under the job's `results/`, sorted.
    pub async fn results(&self, job: Uuid) -> Vec<String> {
        let listed = self
            .storage
            .client()
            .list_objects_v2()
            .bucket(self.storage.bucket())
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
}
