//! The job state machine: which transition is legal, and what each state means to a user.
//!
//! ```text
//! queued ──claim──▶ running ──finish──▶ succeeded | failed | timeout | oom | error
//!   │  ◀──release (transient failure)──┘
//!   ├──cancel──▶ cancelled
//!   └──fail────▶ error (permanent failure before it ran)
//! ```

use serde::{Deserialize, Serialize};

pub mod spec;
pub mod stage;
pub mod stager;
pub mod submit;
pub use spec::{Input, Manifest, SubmitRequest};
pub use stage::StageDocument;

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

/// S3 keys of a job: the only place they are built.
pub mod keys {
    use uuid::Uuid;

    pub const MANIFEST: &str = "manifest.json";

    pub fn code(job: Uuid) -> String {
        format!("jobs/{job}/main.py")
    }
    pub fn manifest(job: Uuid) -> String {
        format!("jobs/{job}/{MANIFEST}")
    }
    /// What a job's staging containers read (ECS runtime): the inputs' URLs and the upload form.
    pub fn stage(job: Uuid) -> String {
        format!("jobs/{job}/stage.json")
    }
    /// Where a job's results go, and the only place its stage-out may write.
    pub fn results_prefix(job: Uuid) -> String {
        format!("results/{job}/")
    }
    /// Names under a job's results prefix (the stage-out container, which only knows the prefix
    /// its upload form allows, builds its keys from these).
    pub const STDOUT: &str = "stdout.txt";
    pub const STDERR: &str = "stderr.txt";
    pub const OUTPUTS_DIR: &str = "out/";
    pub const OUTCOME: &str = "outcome.json";
    pub const STAGED: &str = "staged.json";

    pub fn stdout(job: Uuid) -> String {
        format!("results/{job}/{STDOUT}")
    }
    pub fn stderr(job: Uuid) -> String {
        format!("results/{job}/{STDERR}")
    }
    pub fn output(job: Uuid, name: &str) -> String {
        format!("results/{job}/{OUTPUTS_DIR}{name}")
    }
    /// The run's outcome, written after its results and before the database records it: a job
    /// whose dispatcher died (or lost the database) in between is finished from it, not run again.
    pub fn outcome(job: Uuid) -> String {
        format!("results/{job}/{OUTCOME}")
    }
    /// What a job's stage-out stored (ECS runtime): written last, read when the task's end is
    /// recorded.
    pub fn staged(job: Uuid) -> String {
        format!("results/{job}/{STAGED}")
    }

    /// The job a manifest key belongs to (`jobs/{id}/manifest.json`), if it is one.
    pub fn job_of_manifest(key: &str) -> Option<Uuid> {
        let rest = key.strip_prefix("jobs/")?;
        let (id, file) = rest.split_once('/')?;
        (file == MANIFEST)
            .then(|| Uuid::parse_str(id).ok())
            .flatten()
    }
}

/// Messages on the compute queue besides the bucket's S3 events: one place builds and reads them.
pub mod messages {
    use uuid::Uuid;

    /// Asks the dispatcher to run `job` (the sweep sends it for a job whose message was lost).
    pub fn dispatch(job: Uuid) -> String {
        serde_json::json!({"type": "DispatchJob", "version": 1, "job_id": job}).to_string()
    }

    /// The job a [`dispatch`] message names; `None` for any other message.
    pub fn job_to_dispatch(message: &serde_json::Value) -> Option<Uuid> {
        (message["type"] == "DispatchJob")
            .then(|| message["job_id"].as_str()?.parse().ok())
            .flatten()
    }
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

    #[test]
    fn dispatch_messages_round_trip() {
        let id = uuid::Uuid::new_v4();
        let body: serde_json::Value = serde_json::from_str(&messages::dispatch(id)).unwrap();
        assert_eq!(messages::job_to_dispatch(&body), Some(id));
        let other = serde_json::json!({"type": "DispatchJob", "job_id": "nope"});
        assert_eq!(messages::job_to_dispatch(&other), None);
        assert_eq!(messages::job_to_dispatch(&serde_json::json!({})), None);
    }

    #[test]
    fn manifest_keys_name_their_job() {
        let id = uuid::Uuid::new_v4();
        assert_eq!(keys::job_of_manifest(&keys::manifest(id)), Some(id));
        assert_eq!(keys::job_of_manifest(&keys::code(id)), None);
        assert_eq!(keys::job_of_manifest("jobs/nope/manifest.json"), None);
        assert_eq!(keys::job_of_manifest(&format!("{id}/manifest.json")), None);
    }
}
