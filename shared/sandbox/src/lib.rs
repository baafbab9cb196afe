//! The compute sandbox: a container-runtime trait and its Docker and ECS implementations, the
//! job's manifest and the stage protocol (`stage`, `stager`) a task's files travel by.
//!
//! A job is a command run in a container image with a few input files under `/work`. The
//! sandbox is what stands between user code and the host: no network, a memory limit with no
//! extra swap, a CPU share, a process-count limit, a non-root user, a read-only root file
//! system, a size-limited `/tmp` and `/work`, no capabilities, no privilege escalation, only the
//! environment the job spec lists, and a wall-clock timeout. stdout, stderr and the files the job
//! leaves under `/work/out` come back capped; the container is removed whatever happens.
//!
//! Files travel through the engine API only (no host bind mounts): the dispatcher may itself run
//! in a container that only shares the engine's socket with the host. See [`DockerRuntime`] for
//! how `/work` is filled and read back.

pub(crate) mod archive;
mod cleanup;
mod config;
mod docker;
mod oom;
mod reaper;
mod restrictions;
pub(crate) mod validate;

pub mod ecs;
pub mod manifest;
pub mod stage;
pub mod stager;

use std::time::Duration;

use serde::Serialize;

pub use config::{DEADLINE_LABEL, HOLDER_GRACE};
pub use docker::DockerRuntime;
pub use mecapy_domain::job::Limits;
pub use restrictions::{Restrictions, Tmpfs};

/// The label every container and volume the sandbox creates carries, so leftovers can be found
/// (its value is the role: `job` or `work`).
pub const SANDBOX_LABEL: &str = "org.mecapy.sandbox";

/// Everything needed to run one job. Nothing else reaches the container: in particular not the
/// dispatcher's own environment.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// Image name or id; it must already be in the engine (images are built locally, never
    /// pulled).
    pub image: String,
    /// The command, e.g. `["python3", "/work/main.py"]`.
    pub command: Vec<String>,
    /// Files placed under `/work` before the start, by relative path (e.g. `inputs/data.csv`).
    /// `/work/out` is created empty for the job's results.
    pub files: Vec<(String, bytes::Bytes)>,
    /// The container's whole environment (the engine adds only `PATH`, `HOSTNAME` and `HOME`
    /// when they are missing).
    pub env: Vec<(String, String)>,
    /// Resource limits to apply.
    pub limits: Limits,
    /// Labels put on every container and volume of the run, e.g. `("org.mecapy.job-id", id)`,
    /// so that leftovers can be traced back to their job.
    pub labels: Vec<(String, String)>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Exit code 0.
    Succeeded,
    /// Non-zero exit code (including death by a signal other than the OOM killer's).
    Failed,
    /// Still running at the wall-clock limit: killed.
    Timeout,
    /// Killed by the kernel's OOM killer at the memory limit (as the engine reports it).
    Oom,
}

impl Outcome {
    /// The job's final status for this end of its run.
    pub fn status(self) -> mecapy_domain::job::JobStatus {
        use mecapy_domain::job::JobStatus;
        match self {
            Outcome::Succeeded => JobStatus::Succeeded,
            Outcome::Failed => JobStatus::Failed,
            Outcome::Timeout => JobStatus::Timeout,
            Outcome::Oom => JobStatus::Oom,
        }
    }
}

/// What a run produced, and under which limits.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// How the run ended.
    pub outcome: Outcome,
    /// The exit code the engine reports (137 after a kill), if any.
    pub exit_code: Option<i64>,
    /// Wall-clock time from start to exit.
    pub duration: Duration,
    /// Captured stdout, at most `limits.stdout_max_bytes`.
    pub stdout: bytes::Bytes,
    /// Whether stdout went past its cap (the excess was dropped).
    pub stdout_truncated: bool,
    /// Captured stderr, at most `limits.stderr_max_bytes`.
    pub stderr: bytes::Bytes,
    /// Whether stderr went past its cap (the excess was dropped).
    pub stderr_truncated: bool,
    /// Regular files found under `/work/out`, by path relative to it.
    pub outputs: Vec<(String, bytes::Bytes)>,
    /// Whether files were left out because of the count or size caps.
    pub outputs_truncated: bool,
    /// The image's id (`sha256:...`) as the engine reports it: what actually ran.
    pub image_digest: Option<String>,
    /// The limits that were applied.
    pub limits: Limits,
}

/// Why a job could not be run (a job that ran and failed is a [`RunResult`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The engine could not be reached or stopped answering: retry later.
    #[error("container engine unavailable: {0}")]
    Unavailable(String),
    /// The image is not in the engine (images are built there, never pulled). Transient: an
    /// operator builds it, and the job runs on a later delivery or a redrive from the DLQ.
    #[error("image {0} is not available in the container engine")]
    ImageMissing(String),
    /// The job itself is wrong (bad file path, bad limits, unknown command...).
    #[error("invalid job: {0}")]
    InvalidJob(String),
    /// The engine refused or failed an operation.
    #[error("container run failed: {0}")]
    Failed(String),
}

impl SandboxError {
    /// Whether retrying the same job later may succeed (only when the engine was unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SandboxError::Unavailable(_) | SandboxError::ImageMissing(_)
        )
    }
}

/// A container runtime able to run jobs in the sandbox. A trait so that the dispatcher does not
/// depend on Docker itself.
#[async_trait::async_trait]
pub trait ContainerRuntime: Send + Sync {
    /// Runs the job to completion (or timeout) and always removes what it created.
    async fn run(&self, spec: &JobSpec) -> Result<RunResult, SandboxError>;
    /// Checks that the engine answers.
    async fn ping(&self) -> Result<(), SandboxError>;
    /// Removes what outlived its deadline (a run's limit plus [`HOLDER_GRACE`]): the backstop
    /// for runs whose dispatcher died. Returns what was removed.
    async fn reap(&self) -> Result<Vec<String>, SandboxError>;
    /// The engine's CPU count, if it says.
    async fn cpus(&self) -> Option<usize> {
        None
    }
}

/// How many jobs to run at once on an engine of `engine_cpus` CPUs: as many as fit at the
/// default job's CPU share (0.5 CPU: two per CPU), so the engine's cores are used while each job
/// still gets its whole share.
pub fn default_concurrency(engine_cpus: usize) -> usize {
    ((engine_cpus as f64 / Limits::default().cpus).floor() as usize).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_serialize_timeout_as_seconds_and_fill_defaults() {
        let limits = Limits {
            timeout: Duration::from_millis(2500),
            ..Limits::default()
        };
        let json = serde_json::to_value(&limits).unwrap();
        assert_eq!(json["timeout_seconds"], 2.5);
        assert!(json.get("timeout").is_none());
        let back: Limits = serde_json::from_value(json).unwrap();
        assert_eq!(back, limits);
        let partial: Limits =
            serde_json::from_str(r#"{"memory_mb": 512, "timeout_seconds": 10}"#).unwrap();
        assert_eq!(partial.memory_mb, 512);
        assert_eq!(partial.timeout, Duration::from_secs(10));
        assert_eq!(partial.pids_limit, Limits::default().pids_limit);
        assert!(serde_json::from_str::<Limits>(r#"{"timeout_seconds": -1}"#).is_err());
    }

    #[test]
    fn default_concurrency_fills_the_engine_at_the_default_cpu_share() {
        assert_eq!(default_concurrency(2), 4);
        assert_eq!(default_concurrency(1), 2);
        assert_eq!(default_concurrency(0), 1);
    }

    #[test]
    fn outcome_serializes_lowercase_and_engine_or_image_trouble_is_transient() {
        assert_eq!(serde_json::to_value(Outcome::Oom).unwrap(), "oom");
        assert_eq!(
            serde_json::to_value(Outcome::Succeeded).unwrap(),
            "succeeded"
        );
        assert!(SandboxError::Unavailable("x".into()).is_transient());
        assert!(SandboxError::ImageMissing("x".into()).is_transient());
        assert!(!SandboxError::InvalidJob("x".into()).is_transient());
        assert!(!SandboxError::Failed("x".into()).is_transient());
    }
}
