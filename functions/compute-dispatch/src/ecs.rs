//! Jobs on Amazon ECS: dispatch starts the job's task and returns (no Lambda waits on a job);
//! the task's end comes back as its `ECS Task State Change` event (EventBridge → the task-ends
//! queue → this function), which records the outcome.

use std::time::Duration;

use mecapy_sandbox::ecs::{EcsLauncher, LaunchError, TaskEnd, TaskRequest, TaskStateChange};
use mecapy_sandbox::manifest::Manifest;
use mecapy_sandbox::stage::StageDocument;
use mecapy_sandbox::stager::{StagedReport, StoredOutput};
use mecapy_sandbox::{Outcome, Restrictions, HOLDER_GRACE};
use mecapy_shared::db::{self, jobs::Job};
use mecapy_shared::jobs::{keys, JobStatus};
use uuid::Uuid;

use crate::run::{job_timeout, StoredOutcome};
use crate::{DispatchError, Dispatcher};

/// A stage document's URLs stay valid this long beyond the job's lease.
const URL_SLACK: Duration = Duration::from_secs(120);

/// Where and how jobs' tasks start.
#[derive(Debug, Clone)]
pub struct EcsCompute {
    pub launcher: EcsLauncher,
    /// The python tool's task definition.
    pub task_definition: String,
    /// How long a started task may wait for an instance before its lease runs out.
    pub start_allowance: Duration,
}

impl From<LaunchError> for DispatchError {
    fn from(e: LaunchError) -> Self {
        if e.is_transient() {
            DispatchError::Transient(e.to_string())
        } else {
            DispatchError::Permanent(e.to_string())
        }
    }
}

impl Dispatcher {
    /// Starts the claimed job's task (or finds the one an earlier attempt started, and stops it
    /// when it has run past its limit), and returns: the job stays `running` until its end.
    pub(crate) async fn start_task(
        &self,
        ecs: &EcsCompute,
        job: &Job,
        manifest: &Manifest,
    ) -> Result<(), DispatchError> {
        let limit = manifest.limits.timeout;
        if let Some(arn) = ecs.launcher.find(job.id).await? {
            let started = ecs.launcher.started_at(&arn).await?;
            let over = started.is_some_and(|at| {
                (chrono::Utc::now() - at).to_std().unwrap_or_default() > limit + HOLDER_GRACE
            });
            if over {
                tracing::warn!(job_id = %job.id, task = arn, "the job's task ran past its limit: stopped");
                ecs.launcher.stop_at_limit(&arn).await?;
            } else {
                tracing::info!(job_id = %job.id, task = arn, "the job's task is already there");
            }
            return Ok(());
        }
        let storage = &self.state.storage;
        let code_size = storage
            .head(&manifest.code_key)
            .await?
            .ok_or_else(|| DispatchError::Permanent("the job's code is missing".into()))?
            .size;
        let ttl = limit + self.lease_margin() + URL_SLACK;
        let document = StageDocument::for_job(manifest, code_size, storage, ttl).await?;
        let body = serde_json::to_vec(&document)
            .map_err(|e| DispatchError::Permanent(format!("stage document: {e}")))?;
        storage
            .put(&keys::stage(job.id), body.into(), "application/json")
            .await?;
        let stage_url = storage
            .presign_get(&keys::stage(job.id), "stage.json", ttl)
            .await?;
        let restrictions = Restrictions::of(&manifest.limits);
        let env = manifest.env();
        let arn = ecs
            .launcher
            .run(&TaskRequest {
                job: job.id,
                task_definition: &ecs.task_definition,
                restrictions: &restrictions,
                command: &manifest.command,
                env: &env,
                stage_url: &stage_url,
            })
            .await?;
        tracing::info!(job_id = %job.id, task = arn, "the job's task started");
        Ok(())
    }

    /// Records the end of a job's task: its outcome and results (what stage-out stored), or
    /// `error` with the reason and nothing under `results/`. Ends of tasks that are not jobs',
    /// of jobs already final, and state changes that are not ends are ignored.
    pub(crate) async fn task_ended(&self, change: &TaskStateChange) -> Result<(), DispatchError> {
        let Some(job_id) = change.job() else {
            return Ok(());
        };
        let db = self.db().await?;
        let Some(job) = db::jobs::get_any(&**db, job_id).await? else {
            tracing::warn!(%job_id, "task end of a job that does not exist; ignored");
            return Ok(());
        };
        let job = match job.status {
            JobStatus::Running => job,
            // Requeued by the sweep while its task still ran (its lease ran out first, the task
            // waiting long for an instance): the task's end is the job's outcome all the same.
            JobStatus::Queued if job.attempts > 0 => {
                let margin = self.lease_margin();
                let max_attempts = self.state.config.max_attempts;
                match db::jobs::claim(&**db, job_id, margin, max_attempts).await? {
                    Some(job) => job,
                    None => return Ok(()),
                }
            }
            _ => {
                tracing::info!(%job_id, status = %job.status, "task end of a job not running; ignored");
                return Ok(());
            }
        };
        drop(db);
        let Some(end) = change.end(job_timeout(&job)) else {
            return Ok(());
        };
        match end {
            TaskEnd::Error(reason) => {
                let removed = self
                    .state
                    .storage
                    .delete_prefix(&keys::results_prefix(job_id))
                    .await?;
                tracing::warn!(%job_id, reason, removed, "the job's task failed");
                self.give_up(job_id, &reason).await
            }
            TaskEnd::Ran {
                outcome,
                exit_code,
                duration,
            } => {
                let report = self.staged_report(job_id).await?;
                if report.is_none() && outcome != Outcome::Timeout {
                    return self
                        .give_up(job_id, "the job ran but stage-out left no report")
                        .await;
                }
                let report = report.unwrap_or_else(|| empty_report(job_id));
                let outcome = StoredOutcome {
                    attempt: job.attempts,
                    status: outcome.status(),
                    exit_code: exit_code.map(|c| c as i32),
                    duration_ms: duration.as_millis() as i64,
                    image_digest: change.job_image_digest(),
                    limits: job.limits.clone(),
                    stdout_truncated: report.stdout.truncated,
                    stderr_truncated: report.stderr.truncated,
                    outputs: report.outputs.iter().map(StoredOutput::record).collect(),
                    outputs_truncated: report.outputs_truncated,
                };
                let stored = serde_json::to_vec(&outcome)
                    .map_err(|e| DispatchError::Permanent(format!("outcome: {e}")))?;
                self.state
                    .storage
                    .put(&keys::outcome(job_id), stored.into(), "application/json")
                    .await?;
                self.record(&job, &outcome).await
            }
        }
    }

    async fn staged_report(&self, job: Uuid) -> Result<Option<StagedReport>, DispatchError> {
        self.stored_json(&keys::staged(job))
            .await?
            .transpose()
            .map_err(|e| DispatchError::Permanent(format!("stage-out's report is unreadable: {e}")))
    }
}

/// A task stopped at its limit stored nothing.
fn empty_report(job_id: Uuid) -> StagedReport {
    use mecapy_sandbox::stager::StoredStream;
    let none = StoredStream {
        size: 0,
        truncated: false,
    };
    StagedReport {
        version: mecapy_sandbox::stage::STAGE_VERSION,
        job_id,
        stdout: none.clone(),
        stderr: none,
        outputs: vec![],
        outputs_truncated: false,
    }
}
