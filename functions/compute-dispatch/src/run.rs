//! One job: claim it, run it in the sandbox, store its results and its outcome, record it.

use std::time::{Duration, Instant};

use mecapy_sandbox::{Limits, HOLDER_GRACE};
use mecapy_shared::api::JobOutput;
use mecapy_shared::db::{self, jobs::Job, DbError};
use mecapy_shared::jobs::{keys, JobStatus, Manifest};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{Compute, DispatchError, Dispatcher};

/// Manifests and code are small; inputs are bounded by the presigned-upload limit.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;
/// How long a finished run keeps trying to record its outcome while the database is down,
/// before leaving it to the next claim (which reads the stored outcome instead of running again).
const RECORD_PATIENCE: Duration = Duration::from_secs(20);
/// A record is started only if the invocation has this much time left beyond the job's lease.
const DEADLINE_SAFETY: Duration = Duration::from_secs(2);

/// What a run produced, stored as `results/{id}/outcome.json` before the database records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredOutcome {
    pub attempt: i32,
    pub status: JobStatus,
    pub exit_code: Option<i32>,
    pub duration_ms: i64,
    pub image_digest: Option<String>,
    pub limits: Limits,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub outputs: Vec<JobOutput>,
    pub outputs_truncated: bool,
}

/// The job's wall-clock limit, as recorded with it.
pub(crate) fn job_timeout(job: &Job) -> Duration {
    job.limits.timeout
}

impl Dispatcher {
    /// What a claim adds to the job's own limit: the sandbox's grace and the staging margin
    /// (and on ECS, the time a task may wait for an instance).
    pub fn lease_margin(&self) -> Duration {
        let margin = HOLDER_GRACE + self.state.config.dispatch_lease_margin;
        match &self.compute {
            Compute::Engine(_) => margin,
            Compute::Ecs(ecs) => margin + ecs.start_allowance,
        }
    }

    pub(crate) async fn db(&self) -> Result<deadpool_postgres::Object, DispatchError> {
        Ok(self.state.db.get().await.map_err(DbError::from)?)
    }

    /// Claims and runs one job with no invocation deadline; `Ok` also when there was nothing to
    /// do (duplicate delivery of a finished job).
    pub async fn run_job(&self, job_id: Uuid) -> Result<(), DispatchError> {
        self.dispatch(job_id, None).await
    }

    #[tracing::instrument(skip(self, deadline))]
    pub(crate) async fn dispatch(
        &self,
        job_id: Uuid,
        deadline: Option<Instant>,
    ) -> Result<(), DispatchError> {
        let db = self.db().await?;
        // Only an engine's dispatch waits for the job: it needs the time to.
        let waits = matches!(self.compute, Compute::Engine(_));
        if let (Some(deadline), true) = (deadline, waits) {
            if let Some(job) = db::jobs::get_any(&**db, job_id).await? {
                let needed = job_timeout(&job) + self.lease_margin() + DEADLINE_SAFETY;
                if deadline.saturating_duration_since(Instant::now()) < needed {
                    return Err(DispatchError::Later {
                        reason: "not enough time left in this invocation".into(),
                        after: Duration::from_secs(1),
                    });
                }
            }
        }
        let claimed = db::jobs::claim(
            &**db,
            job_id,
            self.lease_margin(),
            self.state.config.max_attempts,
        )
        .await?;
        drop(db);
        let Some(job) = claimed else {
            return self.not_claimed(job_id).await;
        };
        self.publish_events().await;
        if let Some(lease) = job.lease_expires_at {
            let left = (lease - chrono::Utc::now()).to_std().unwrap_or_default();
            self.watch_lease(job.id, left).await;
        }
        if job.attempts > 1 {
            if let Some(outcome) = self.stored_outcome(job.id).await? {
                tracing::info!(%job_id, attempt = outcome.attempt, "outcome of an earlier attempt found: recorded, not run again");
                return self.record(&job, &outcome).await;
            }
        }
        match self.execute(&job).await {
            Ok(()) => Ok(()),
            Err(e @ (DispatchError::Transient(_) | DispatchError::DatabaseDown(_))) => {
                // Back to the queue so the retry can claim it (if the database is down, the
                // lease runs out and the sweep does it).
                let released = async {
                    let db = self.db().await?;
                    Ok::<_, DispatchError>(db::jobs::release(&**db, job_id, &e.to_string()).await?)
                };
                if let Err(release) = released.await {
                    tracing::error!(%job_id, error = %release, "could not release the job");
                }
                Err(e)
            }
            Err(other) => Err(other),
        }
    }

    /// The claim found nothing to take: finished (a duplicate), held by a live dispatcher (come
    /// back when its lease ends), or abandoned too many times (given up).
    async fn not_claimed(&self, job_id: Uuid) -> Result<(), DispatchError> {
        let db = self.db().await?;
        let Some(job) = db::jobs::get_any(&**db, job_id).await? else {
            tracing::warn!(%job_id, "message of a job that does not exist; ignored");
            return Ok(());
        };
        match (job.status, job.lease_expires_at) {
            (JobStatus::Running, Some(lease)) => {
                let left = (lease - chrono::Utc::now()).to_std().unwrap_or_default();
                if left.is_zero() {
                    drop(db);
                    let reason = format!(
                        "its dispatcher stopped during each of {} attempts",
                        job.attempts
                    );
                    return self.give_up(job_id, &reason).await;
                }
                Err(DispatchError::Later {
                    reason: "another dispatcher holds the job".into(),
                    after: left + Duration::from_secs(1),
                })
            }
            (JobStatus::Queued, _) => Err(DispatchError::Later {
                reason: "the job changed during the claim".into(),
                after: Duration::from_secs(1),
            }),
            _ => {
                tracing::info!(%job_id, status = %job.status, "job already handled; duplicate delivery ignored");
                Ok(())
            }
        }
    }

    pub(crate) async fn give_up(&self, job_id: Uuid, reason: &str) -> Result<(), DispatchError> {
        let db = self.db().await?;
        if db::jobs::fail(&**db, job_id, reason).await?.is_some() {
            self.publish_events().await;
        }
        Ok(())
    }

    /// The outcome an earlier attempt stored, if any.
    pub(crate) async fn stored_outcome(
        &self,
        job_id: Uuid,
    ) -> Result<Option<StoredOutcome>, DispatchError> {
        match self.stored_json(&keys::outcome(job_id)).await? {
            None => Ok(None),
            Some(Ok(outcome)) => Ok(Some(outcome)),
            Some(Err(e)) => {
                tracing::warn!(%job_id, error = %e, "stored outcome unreadable: the job runs again");
                Ok(None)
            }
        }
    }

    /// A small JSON document the dispatcher or a task stored (an outcome, a stage-out report):
    /// `None` when absent, else whether it reads as a `T`.
    pub(crate) async fn stored_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<Result<T, serde_json::Error>>, DispatchError> {
        let bytes = self.state.storage.get(key, MAX_MANIFEST_BYTES).await?;
        Ok(bytes.map(|bytes| serde_json::from_slice(&bytes)))
    }

    /// running → the stored outcome's final state. While the database is down, keeps trying for
    /// [`RECORD_PATIENCE`]; the outcome is in S3 already, so a later claim records it.
    pub(crate) async fn record(
        &self,
        job: &Job,
        outcome: &StoredOutcome,
    ) -> Result<(), DispatchError> {
        let give_up_at = Instant::now() + RECORD_PATIENCE;
        let mut pause = Duration::from_millis(250);
        loop {
            match self.try_record(job.id, outcome).await {
                Err(DispatchError::DatabaseDown(reason)) if Instant::now() < give_up_at => {
                    tracing::warn!(job_id = %job.id, reason, "outcome not recorded yet: database down");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(4));
                }
                other => return other,
            }
        }
    }

    async fn try_record(&self, job_id: Uuid, outcome: &StoredOutcome) -> Result<(), DispatchError> {
        let db = self.db().await?;
        let finished = db::jobs::finish(
            &**db,
            job_id,
            &db::jobs::Finished {
                status: outcome.status,
                exit_code: outcome.exit_code,
                duration_ms: outcome.duration_ms,
                image_digest: outcome.image_digest.as_deref(),
                limits: &outcome.limits,
                stdout_truncated: outcome.stdout_truncated,
                stderr_truncated: outcome.stderr_truncated,
                outputs: &outcome.outputs,
                outputs_truncated: outcome.outputs_truncated,
            },
        )
        .await?;
        if finished.is_some() {
            self.publish_events().await;
        }
        Ok(())
    }

    /// The job's manifest, as compute-submit stored it.
    async fn manifest(&self, job: &Job) -> Result<Manifest, DispatchError> {
        let manifest_bytes = self
            .state
            .storage
            .get(&keys::manifest(job.id), MAX_MANIFEST_BYTES)
            .await?
            .ok_or_else(|| DispatchError::Permanent("the job's manifest is missing".into()))?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| {
            DispatchError::Permanent(format!("the job's manifest is unreadable: {e}"))
        })?;
        if !manifest.describes(job) {
            return Err(DispatchError::Permanent(
                "the manifest belongs to another job".into(),
            ));
        }
        Ok(manifest)
    }

    async fn execute(&self, job: &Job) -> Result<(), DispatchError> {
        let manifest = self.manifest(job).await?;
        let runtime = match &self.compute {
            Compute::Engine(runtime) => runtime,
            Compute::Ecs(ecs) => return self.start_task(ecs, job, &manifest).await,
        };
        let storage = &self.state.storage;
        let code = fetch_checked(
            storage,
            &manifest.code_key,
            &manifest.code_sha256,
            "the code",
        )
        .await?;
        let max_input = self.state.config.max_presigned_bytes;
        let mut inputs = Vec::with_capacity(manifest.inputs.len());
        for input in &manifest.inputs {
            let what = format!("input {}", input.filename);
            let data = storage
                .get(&input.key, max_input)
                .await?
                .ok_or_else(|| DispatchError::Permanent(format!("{what} no longer exists")))?;
            if hex::encode(Sha256::digest(&data)) != input.sha256 {
                return Err(DispatchError::Permanent(format!(
                    "{what} changed since the job was submitted"
                )));
            }
            inputs.push(data);
        }

        let spec = manifest.job_spec(code, inputs);
        let started = Instant::now();
        let result = runtime.run(&spec).await.map_err(|e| {
            if e.is_transient() {
                DispatchError::Transient(e.to_string())
            } else {
                DispatchError::Permanent(e.to_string())
            }
        })?;
        tracing::info!(job_id = %job.id, outcome = ?result.outcome, elapsed_ms = started.elapsed().as_millis() as u64, "job ran");

        for (key, stream) in [
            (keys::stdout(job.id), &result.stdout),
            (keys::stderr(job.id), &result.stderr),
        ] {
            storage
                .put(&key, stream.clone(), "text/plain; charset=utf-8")
                .await?;
        }
        let mut outputs = Vec::with_capacity(result.outputs.len());
        for (name, data) in &result.outputs {
            storage
                .put(
                    &keys::output(job.id, name),
                    data.clone(),
                    "application/octet-stream",
                )
                .await?;
            outputs.push(JobOutput {
                name: name.clone(),
                size: data.len() as i64,
                sha256: hex::encode(Sha256::digest(data)),
            });
        }

        let outcome = StoredOutcome {
            attempt: job.attempts,
            status: result.outcome.status(),
            exit_code: result.exit_code.map(|c| c as i32),
            duration_ms: result.duration.as_millis() as i64,
            image_digest: result.image_digest.clone(),
            limits: result.limits.clone(),
            stdout_truncated: result.stdout_truncated,
            stderr_truncated: result.stderr_truncated,
            outputs,
            outputs_truncated: result.outputs_truncated,
        };
        let stored = serde_json::to_vec(&outcome)
            .map_err(|e| DispatchError::Permanent(format!("outcome not serialisable: {e}")))?;
        storage
            .put(&keys::outcome(job.id), stored.into(), "application/json")
            .await?;
        self.record(job, &outcome).await
    }
}

async fn fetch_checked(
    storage: &mecapy_shared::storage::Storage,
    key: &str,
    sha256: &str,
    what: &str,
) -> Result<bytes::Bytes, DispatchError> {
    let data = storage
        .get(key, MAX_MANIFEST_BYTES)
        .await?
        .ok_or_else(|| DispatchError::Permanent(format!("{what} is missing")))?;
    if hex::encode(Sha256::digest(&data)) != sha256 {
        return Err(DispatchError::Permanent(format!(
            "{what} does not match its checksum"
        )));
    }
    Ok(data)
}
