//! The job state machine: which transition is legal, and what each state means to a user.
//!
//! ```text
//! queued ──claim──▶ running ──finish──▶ succeeded | failed | timeout | oom | error
//!   │  ◀──release (transient failure)──┘
//!   ├──cancel──▶ cancelled
//!   └──fail────▶ error (permanent failure before it ran)
//! ```

use serde::{Deserialize, Serialize};

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
