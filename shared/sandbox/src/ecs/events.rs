//! The end of a job's task, read from its ECS Task State Change event (EventBridge): which job,
//! and how it ended. The task runs three containers in order: stage-in (fetches and checks the
//! code and inputs), the sandbox (the job) and stage-out (stores the results).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{SANDBOX_CONTAINER, STAGE_IN_CONTAINER, STAGE_OUT_CONTAINER};
use crate::stager::Refusal;
use crate::Outcome;

/// The reason `StopTask` is given when a job reaches its wall-clock limit.
pub const TIMEOUT_REASON: &str = "mecapy: the job reached its wall-clock limit";
/// A SIGKILL exit this close to the limit is the in-container `timeout` at work.
const LIMIT_TOLERANCE: Duration = Duration::from_millis(250);

/// The part of an `ECS Task State Change` event (its `detail`) this reads.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStateChange {
    pub task_arn: String,
    pub last_status: String,
    #[serde(default)]
    pub started_by: Option<String>,
    #[serde(default)]
    pub stop_code: Option<String>,
    #[serde(default)]
    pub stopped_reason: Option<String>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub stopped_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub containers: Vec<ContainerState>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    pub name: String,
    #[serde(default)]
    pub exit_code: Option<i64>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub last_status: Option<String>,
    #[serde(default)]
    pub image_digest: Option<String>,
}

/// How a job's task ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEnd {
    /// The job ran: its outcome, exit code and how long the task ran.
    Ran {
        outcome: Outcome,
        exit_code: Option<i64>,
        duration: Duration,
    },
    /// The job could not run, or its results could not be stored: the job's `error` reason.
    Error(String),
}

impl TaskStateChange {
    /// The EventBridge event that carries this change, as the task-ends queue delivers it.
    pub fn to_event(&self) -> serde_json::Value {
        serde_json::json!({
            "version": "0",
            "id": Uuid::new_v4(),
            "detail-type": "ECS Task State Change",
            "source": "aws.ecs",
            "time": Utc::now(),
            "resources": [self.task_arn],
            "detail": self,
        })
    }

    /// Reads the `detail` of an EventBridge event of type `ECS Task State Change`.
    pub fn from_event(event: &serde_json::Value) -> Option<Self> {
        (event["detail-type"] == "ECS Task State Change")
            .then(|| serde_json::from_value(event["detail"].clone()).ok())
            .flatten()
    }

    /// The job the task ran, from its `startedBy` ([`super::started_by`]).
    pub fn job(&self) -> Option<Uuid> {
        self.started_by
            .as_deref()?
            .strip_prefix("mecapy/")?
            .parse()
            .ok()
    }

    /// The digest of the image the job ran in, as the agent reported it.
    pub fn job_image_digest(&self) -> Option<String> {
        self.container(SANDBOX_CONTAINER)?.image_digest.clone()
    }

    fn container(&self, name: &str) -> Option<&ContainerState> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// Why a staging container failed: its refusal (from its exit code), else what ECS says.
    fn staging_failure(&self, container: Option<&ContainerState>) -> String {
        let code = container.and_then(|c| c.exit_code);
        let why = container
            .and_then(|c| c.reason.clone())
            .unwrap_or_else(|| self.stopped_reason());
        match code.and_then(Refusal::from_exit_code) {
            Some(refusal) => format!("{} (exit code {})", refusal.describe(), refusal.exit_code()),
            None => format!("exit code {code:?}: {why}"),
        }
    }

    fn stopped_reason(&self) -> String {
        self.stopped_reason
            .clone()
            .unwrap_or_else(|| "no reason given".into())
    }

    /// How the task ended, for a job of wall-clock limit `limit`; `None` while it has not
    /// stopped (PENDING, RUNNING... events are not ends).
    pub fn end(&self, limit: Duration) -> Option<TaskEnd> {
        if self.last_status != "STOPPED" {
            return None;
        }
        let duration = match (self.started_at, self.stopped_at) {
            (Some(start), Some(stop)) => (stop - start).to_std().unwrap_or_default(),
            _ => Duration::ZERO,
        };
        if self.stop_code.as_deref() == Some("TaskFailedToStart") || self.started_at.is_none() {
            return Some(TaskEnd::Error(format!(
                "the job's task never started: {}",
                self.stopped_reason()
            )));
        }
        let stage_in = self.container(STAGE_IN_CONTAINER);
        if stage_in.and_then(|c| c.exit_code) != Some(0) {
            return Some(TaskEnd::Error(format!(
                "the job's code and inputs could not be staged: {}",
                self.staging_failure(stage_in)
            )));
        }
        let Some(job) = self.container(SANDBOX_CONTAINER) else {
            return Some(TaskEnd::Error("the task has no job container".into()));
        };
        let reason = job.reason.as_deref().unwrap_or_default();
        let stopped_at_limit = self.stop_code.as_deref() == Some("UserInitiated")
            && self.stopped_reason.as_deref() == Some(TIMEOUT_REASON);
        let outcome = if reason.starts_with("OutOfMemoryError") {
            Outcome::Oom
        } else if stopped_at_limit
            || (job.exit_code == Some(137) && duration + LIMIT_TOLERANCE >= limit)
        {
            Outcome::Timeout
        } else {
            match job.exit_code {
                Some(0) => Outcome::Succeeded,
                Some(_) => Outcome::Failed,
                None => {
                    return Some(TaskEnd::Error(format!(
                        "the job's container reported no exit code: {}",
                        if reason.is_empty() {
                            self.stopped_reason()
                        } else {
                            reason.to_string()
                        }
                    )))
                }
            }
        };
        // Stopped at the limit by the dispatcher (the fallback when the in-container `timeout`
        // did not end it): a timeout, whose results the stopped task could not store.
        let stage_out = self.container(STAGE_OUT_CONTAINER);
        if !stopped_at_limit && stage_out.and_then(|c| c.exit_code) != Some(0) {
            return Some(TaskEnd::Error(format!(
                "the job ran ({outcome:?}) but its results could not be stored: {}",
                self.staging_failure(stage_out)
            )));
        }
        Some(TaskEnd::Ran {
            outcome,
            exit_code: job.exit_code,
            duration,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMIT: Duration = Duration::from_secs(30);

    /// An event shaped as the ECS documentation shows it, for a task of the three containers.
    fn event(
        job: Uuid,
        stop_code: &str,
        reason: &str,
        seconds: i64,
        containers: serde_json::Value,
    ) -> serde_json::Value {
        let start: DateTime<Utc> = "2026-12-02T10:00:00.000Z".parse().unwrap();
        json!({
            "version": "0",
            "id": "3317b2af-7005-947d-b652-f55e762e571a",
            "detail-type": "ECS Task State Change",
            "source": "aws.ecs",
            "account": "111122223333",
            "time": "2026-12-02T10:00:40Z",
            "region": "us-east-1",
            "resources": ["arn:aws:ecs:us-east-1:111122223333:task/mecapy/b99d40b3"],
            "detail": {
                "clusterArn": "arn:aws:ecs:us-east-1:111122223333:cluster/mecapy",
                "containerInstanceArn": "arn:aws:ecs:us-east-1:111122223333:container-instance/mecapy/ec4d",
                "containers": containers,
                "createdAt": "2026-12-02T09:59:58.000Z",
                "desiredStatus": "STOPPED",
                "group": "family:mecapy-python",
                "lastStatus": "STOPPED",
                "launchType": "EC2",
                "startedAt": start.to_rfc3339(),
                "startedBy": super::super::started_by(job),
                "stopCode": stop_code,
                "stoppedAt": (start + chrono::Duration::seconds(seconds)).to_rfc3339(),
                "stoppedReason": reason,
                "taskArn": "arn:aws:ecs:us-east-1:111122223333:task/mecapy/b99d40b3",
                "taskDefinitionArn": "arn:aws:ecs:us-east-1:111122223333:task-definition/mecapy-python:3",
                "version": 4
            }
        })
    }

    fn containers(
        stage_in: Option<i64>,
        job: Option<i64>,
        job_reason: &str,
        stage_out: Option<i64>,
    ) -> serde_json::Value {
        json!([
            {"name": "stage-in", "exitCode": stage_in, "lastStatus": "STOPPED"},
            {"name": "sandbox", "exitCode": job, "lastStatus": "STOPPED", "reason": job_reason},
            {"name": "stage-out", "exitCode": stage_out, "lastStatus": "STOPPED"},
        ])
    }

    fn end_of(event: serde_json::Value) -> (Option<Uuid>, Option<TaskEnd>) {
        let change = TaskStateChange::from_event(&event).expect("a task state change");
        (change.job(), change.end(LIMIT))
    }

    const EXITED: &str = "EssentialContainerExited";
    const EXITED_REASON: &str = "Essential container in task exited";

    #[test]
    fn exit_codes_become_succeeded_or_failed() {
        let job = Uuid::new_v4();
        let (id, end) = end_of(event(
            job,
            EXITED,
            EXITED_REASON,
            3,
            containers(Some(0), Some(0), "", Some(0)),
        ));
        assert_eq!(id, Some(job));
        assert_eq!(
            end,
            Some(TaskEnd::Ran {
                outcome: Outcome::Succeeded,
                exit_code: Some(0),
                duration: Duration::from_secs(3)
            })
        );
        let (_, end) = end_of(event(
            job,
            EXITED,
            EXITED_REASON,
            3,
            containers(Some(0), Some(2), "", Some(0)),
        ));
        assert!(matches!(
            end,
            Some(TaskEnd::Ran {
                outcome: Outcome::Failed,
                exit_code: Some(2),
                ..
            })
        ));
        // A job that kills itself early is a failure, not a timeout.
        let (_, end) = end_of(event(
            job,
            EXITED,
            EXITED_REASON,
            3,
            containers(Some(0), Some(137), "", Some(0)),
        ));
        assert!(matches!(
            end,
            Some(TaskEnd::Ran {
                outcome: Outcome::Failed,
                ..
            })
        ));
    }

    #[test]
    fn the_memory_limit_is_oom_and_the_wall_clock_is_timeout() {
        let job = Uuid::new_v4();
        let oom = "OutOfMemoryError: Container killed due to memory usage";
        let (_, end) = end_of(event(
            job,
            EXITED,
            EXITED_REASON,
            5,
            containers(Some(0), Some(137), oom, Some(0)),
        ));
        assert!(matches!(
            end,
            Some(TaskEnd::Ran {
                outcome: Outcome::Oom,
                ..
            })
        ));
        // Killed in the container by `timeout` at the limit...
        let (_, end) = end_of(event(
            job,
            EXITED,
            EXITED_REASON,
            31,
            containers(Some(0), Some(137), "", Some(0)),
        ));
        assert!(matches!(
            end,
            Some(TaskEnd::Ran {
                outcome: Outcome::Timeout,
                ..
            })
        ));
        // ...or stopped by the dispatcher's StopTask.
        let (_, end) = end_of(event(
            job,
            "UserInitiated",
            TIMEOUT_REASON,
            36,
            containers(Some(0), None, "", None),
        ));
        assert_eq!(
            end,
            Some(TaskEnd::Ran {
                outcome: Outcome::Timeout,
                exit_code: None,
                duration: Duration::from_secs(36)
            })
        );
        // Any other stop by a user is not a timeout.
        let (_, end) = end_of(event(
            job,
            "UserInitiated",
            "stopped by an operator",
            5,
            containers(Some(0), None, "", None),
        ));
        assert!(matches!(end, Some(TaskEnd::Error(_))), "{end:?}");
    }

    #[test]
    fn a_task_that_never_ran_the_job_is_an_error_with_its_reason() {
        let job = Uuid::new_v4();
        let mut never = event(
            job,
            "TaskFailedToStart",
            "CannotPullContainerError: pull image manifest has been retried 5 time(s)",
            0,
            json!([]),
        );
        never["detail"].as_object_mut().unwrap().remove("startedAt");
        let (_, end) = end_of(never);
        assert!(
            matches!(&end, Some(TaskEnd::Error(r)) if r.contains("never started") && r.contains("CannotPullContainerError")),
            "{end:?}"
        );

        // Stage-in refused (an expired URL, a changed sha256): the job did not run.
        // The stager's exit code says which refusal it was.
        let refused = containers(Some(4), None, "", None);
        let (_, end) = end_of(event(job, EXITED, EXITED_REASON, 2, refused));
        assert!(
            matches!(&end, Some(TaskEnd::Error(r)) if r.contains("could not be staged") && r.contains("sha256")),
            "{end:?}"
        );
        let expired = containers(Some(3), None, "", None);
        let (_, end) = end_of(event(job, EXITED, EXITED_REASON, 2, expired));
        assert!(
            matches!(&end, Some(TaskEnd::Error(r)) if r.contains("expired")),
            "{end:?}"
        );
        // A crash of the container itself: what ECS says.
        let mut crashed = containers(Some(139), None, "", None);
        crashed[0]["reason"] = json!("CannotStartContainerError: no such volume");
        let (_, end) = end_of(event(job, EXITED, EXITED_REASON, 2, crashed));
        assert!(
            matches!(&end, Some(TaskEnd::Error(r)) if r.contains("CannotStartContainerError")),
            "{end:?}"
        );

        // The job ran, its results were not stored.
        let (_, end) = end_of(event(
            job,
            EXITED,
            EXITED_REASON,
            4,
            containers(Some(0), Some(0), "", Some(1)),
        ));
        assert!(
            matches!(&end, Some(TaskEnd::Error(r)) if r.contains("results could not be stored")),
            "{end:?}"
        );
    }

    #[test]
    fn other_events_and_other_tasks_are_not_ends() {
        let job = Uuid::new_v4();
        let mut running = event(
            job,
            EXITED,
            EXITED_REASON,
            1,
            containers(Some(0), None, "", None),
        );
        running["detail"]["lastStatus"] = json!("RUNNING");
        let (_, end) = end_of(running);
        assert_eq!(end, None);
        let mut other = event(job, EXITED, EXITED_REASON, 1, json!([]));
        other["detail"]["startedBy"] = json!("ecs-svc/9223370545345641169");
        assert_eq!(TaskStateChange::from_event(&other).unwrap().job(), None);
        assert!(TaskStateChange::from_event(
            &json!({"detail-type": "ECS Container Instance State Change", "detail": {}})
        )
        .is_none());
    }
}
