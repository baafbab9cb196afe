//! The job state machine: which transition is legal, and what each state means to a user.
//!
//! ```text
//! queued ──claim──▶ running ──finish──▶ succeeded | failed | timeout | oom | error
//!   │  ◀──release (transient failure)──┘
//!   ├──cancel──▶ cancelled
//!   └──fail────▶ error (permanent failure before it ran)
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a job is: `queued` and `running` change, the others are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Timeout,
    Oom,
    Error,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Timeout => "timeout",
            JobStatus::Oom => "oom",
            JobStatus::Error => "error",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "timeout" => JobStatus::Timeout,
            "oom" => JobStatus::Oom,
            "error" => JobStatus::Error,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }

    /// Whether the job ran to an end in the sandbox, so that it has stdout, stderr and outputs.
    pub fn ran(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Timeout | JobStatus::Oom
        )
    }

    /// A final state never changes again.
    pub fn is_final(self) -> bool {
        !matches!(self, JobStatus::Queued | JobStatus::Running)
    }

    /// Whether `self → to` is a transition of the machine above.
    pub fn can_become(self, to: JobStatus) -> bool {
        use JobStatus::*;
        match (self, to) {
            (Queued, Running | Cancelled | Error) => true,
            (Running, Queued) => true,
            (Running, to) => to.is_final() && to != Cancelled,
            _ => false,
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Resource limits of one job. The defaults are the seed's; a tool may tighten or loosen them.
///
/// Serialized as stored with the job (the timeout as `timeout_seconds`); missing fields take
/// their default when deserializing, so older records stay readable.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(default)]
pub struct Limits {
    /// Memory limit in MiB; swap is set equal, so there is no extra swap.
    pub memory_mb: i64,
    /// CPU share (engine NanoCpus), e.g. 0.5 for half a core.
    pub cpus: f64,
    /// Wall-clock limit from start to exit; the container is killed when it is reached.
    #[serde(rename = "timeout_seconds", with = "timeout_seconds")]
    #[schema(value_type = u64)]
    pub timeout: Duration,
    /// Maximum number of processes and threads in the container.
    pub pids_limit: i64,
    /// Size of the tmpfs mounted at `/tmp` (noexec, nosuid, nodev), in MiB.
    pub tmp_mb: i64,
    /// Size of the writable `/work` (inputs and outputs together), in MiB.
    pub work_mb: i64,
    /// stdout kept, in bytes; the rest is read and dropped, and the result says so.
    pub stdout_max_bytes: u64,
    /// stderr kept, in bytes; the rest is read and dropped, and the result says so.
    pub stderr_max_bytes: u64,
    /// Number of regular files collected from `/work/out` after the run.
    pub output_max_files: usize,
    /// Total size of the files collected from `/work/out`, in bytes.
    pub output_max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mb: 256,
            cpus: 0.5,
            timeout: Duration::from_secs(30),
            pids_limit: 64,
            tmp_mb: 64,
            work_mb: 128,
            stdout_max_bytes: 1024 * 1024,
            stderr_max_bytes: 1024 * 1024,
            output_max_files: 20,
            output_max_bytes: 50 * 1024 * 1024,
        }
    }
}

/// `Duration` as a number of seconds (fractional allowed), the way jobs store their limits.
mod timeout_seconds {
    use std::time::Duration;

    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let seconds = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(seconds)
            .map_err(|_| D::Error::custom(format!("invalid timeout_seconds: {seconds}")))
    }
}

/// One input as the manifest and the job record name it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Input {
    pub file_id: Uuid,
    pub filename: String,
    pub key: String,
    pub sha256: String,
    pub size: i64,
    /// Where the job finds it, relative to /work.
    pub path: String,
}

/// One file a job wrote under `/work/out`, as its record keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobOutput {
    pub name: String,
    pub size: i64,
    pub sha256: String,
}

#[cfg(test)]
mod tests {
    use super::JobStatus::*;
    use super::*;

    #[test]
    fn only_queued_jobs_start_or_cancel() {
        assert!(Queued.can_become(Running));
        assert!(Queued.can_become(Cancelled));
        assert!(!Running.can_become(Cancelled));
        assert!(!Succeeded.can_become(Running));
        assert!(!Cancelled.can_become(Running));
    }

    #[test]
    fn running_jobs_finish_or_go_back_to_the_queue() {
        for to in [Succeeded, Failed, Timeout, Oom, Error, Queued] {
            assert!(Running.can_become(to), "{to:?}");
        }
        assert!(!Error.can_become(Queued));
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            Queued, Running, Succeeded, Failed, Timeout, Oom, Error, Cancelled,
        ] {
            assert_eq!(JobStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(JobStatus::parse("done"), None);
    }
}
