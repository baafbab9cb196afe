//! `compute-dispatch`: for each SQS record carrying an S3 "manifest created" event, claims the
//! job atomically, runs it in the sandbox, stores its results and records its outcome.
//!
//! A transient failure (PostgreSQL, S3 or the container engine unreachable) puts the job back to
//! `queued` and reports the record as a batch item failure, so SQS delivers it again; on the last
//! allowed receive the job is marked `error` before the message moves to the dead-letter queue.
//! A permanent failure (manifest unreadable, input changed) marks the job `error` and is
//! acknowledged. A duplicate delivery finds the job already claimed and does nothing.

mod events;
mod retry;

use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use compute_submit::Manifest;
use mecapy_shared::db::{self, DbError};
use mecapy_shared::jobs::{keys, JobStatus};
use mecapy_shared::sandbox::{ContainerRuntime, JobSpec, Outcome};
use mecapy_shared::storage::StorageError;
use mecapy_shared::AppState;
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use events::{Event, EventsQueue};
pub use retry::RetryBackoff;

/// Manifests and code are small; inputs are bounded by the presigned-upload limit.
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// Worth retrying: a dependency was unreachable.
    #[error("transient: {0}")]
    Transient(String),
    /// Retrying cannot help: the job is marked `error`.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl From<DbError> for DispatchError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(m) => DispatchError::Transient(format!("database: {m}")),
            other => DispatchError::Permanent(mecapy_shared::http::error_chain(&other)),
        }
    }
}

impl From<StorageError> for DispatchError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unavailable(m) => {
                DispatchError::Transient(format!("object storage: {m}"))
            }
            StorageError::Failed(m) => DispatchError::Permanent(format!("object storage: {m}")),
        }
    }
}

pub struct Dispatcher {
    pub state: AppState,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub events: Option<EventsQueue>,
    /// Shortens the wait before a failed record's next delivery (none: the queue's visibility).
    pub retries: Option<RetryBackoff>,
}

impl Dispatcher {
    /// The events queue comes from `EVENTS_QUEUE_URL` (events are skipped when it is unset).
    pub async fn from_env(
        state: AppState,
        runtime: Arc<dyn ContainerRuntime>,
    ) -> Result<Self, mecapy_shared::app::StartupError> {
        let sdk = aws_config::load_from_env().await;
        let events = state
            .config
            .events_queue_url
            .as_ref()
            .map(|url| EventsQueue::new(&sdk, url));
        let retries = RetryBackoff::new(
            aws_sdk_sqs::Client::new(&sdk),
            state.config.retry_base,
            state.config.retry_max,
        );
        Ok(Dispatcher {
            state,
            runtime,
            events,
            retries: Some(retries),
        })
    }

    /// One SQS batch: every record that must be retried is reported as a batch item failure.
    pub async fn handle(
        &self,
        event: SqsEvent,
    ) -> Result<SqsBatchResponse, std::convert::Infallible> {
        let mut response = SqsBatchResponse::default();
        for record in &event.records {
            if let Err(reason) = self.handle_record(record).await {
                tracing::warn!(message_id = ?record.message_id, reason, "record will be retried");
                if let Some(retries) = &self.retries {
                    retries.postpone(record, receive_count(record)).await;
                }
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = record.message_id.clone().unwrap_or_default();
                response.batch_item_failures.push(failure);
            }
        }
        Ok(response)
    }

    /// `Err` means "deliver this record again".
    async fn handle_record(&self, record: &SqsMessage) -> Result<(), String> {
        let body = record.body.as_deref().unwrap_or("");
        let receives = receive_count(record);
        let jobs = manifest_jobs(body)?;
        let mut retry = None;
        for job_id in jobs {
            match self.run_job(job_id).await {
                Ok(()) => {}
                Err(DispatchError::Permanent(reason)) => {
                    tracing::error!(%job_id, reason, "job failed permanently");
                    self.give_up(job_id, &reason)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Err(DispatchError::Transient(reason)) => {
                    if receives >= self.state.config.max_receives {
                        let reason = format!("gave up after {receives} attempts: {reason}");
                        // Best effort: the database may be what is down.
                        if let Err(e) = self.give_up(job_id, &reason).await {
                            tracing::error!(%job_id, error = %e, "could not mark the job error");
                        }
                    }
                    retry = Some(reason);
                }
            }
        }
        retry.map_or(Ok(()), Err)
    }

    async fn give_up(&self, job_id: Uuid, reason: &str) -> Result<(), DispatchError> {
        let db = self.state.db.get().await.map_err(DbError::from)?;
        if let Some(job) = db::jobs::fail(&**db, job_id, reason).await? {
            self.emit(Event::finished(&job)).await;
        }
        Ok(())
    }

    async fn emit(&self, event: Event) {
        if let Some(queue) = &self.events {
            queue.send(&event).await;
        }
    }

    /// Claims and runs one job; `Ok` also when there was nothing to do (duplicate delivery).
    #[tracing::instrument(skip(self))]
    pub async fn run_job(&self, job_id: Uuid) -> Result<(), DispatchError> {
        let db = self.state.db.get().await.map_err(DbError::from)?;
        let Some(job) = db::jobs::claim(&**db, job_id, self.state.config.dispatch_lease).await?
        else {
            match db::jobs::get_any(&**db, job_id).await? {
                None => tracing::warn!(%job_id, "manifest of a job that does not exist; ignored"),
                Some(job) => {
                    tracing::info!(%job_id, status = job.status, "job already claimed; duplicate delivery ignored")
                }
            }
            return Ok(());
        };
        self.emit(Event::started(&job)).await;
        match self.execute(&job).await {
            Ok(()) => Ok(()),
            Err(DispatchError::Transient(reason)) => {
                // Back to the queue so the retry can claim it.
                if let Err(e) = db::jobs::release(&**db, job_id, &reason).await {
                    tracing::error!(%job_id, error = %e, "could not release the job");
                }
                Err(DispatchError::Transient(reason))
            }
            Err(permanent) => Err(permanent),
        }
    }

    async fn execute(&self, job: &db::jobs::Job) -> Result<(), DispatchError> {
        let storage = &self.state.storage;
        let manifest_bytes = storage
            .get(&keys::manifest(job.id), MAX_MANIFEST_BYTES)
            .await?
            .ok_or_else(|| DispatchError::Permanent("the job's manifest is missing".into()))?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| {
            DispatchError::Permanent(format!("the job's manifest is unreadable: {e}"))
        })?;
        if manifest.job_id != job.id || manifest.user_id != job.user_id {
            return Err(DispatchError::Permanent(
                "the manifest belongs to another job".into(),
            ));
        }

        let code = fetch_checked(
            storage,
            &manifest.code_key,
            &manifest.code_sha256,
            "the code",
        )
        .await?;
        let mut files = vec![("main.py".to_string(), code)];
        let max_input = self.state.config.max_presigned_bytes;
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
            files.push((input.path.clone(), data));
        }

        let spec = JobSpec {
            image: manifest.image.clone(),
            command: manifest.command.clone(),
            files,
            env: vec![
                ("HOME".into(), "/work".into()),
                ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
                ("PYTHONUNBUFFERED".into(), "1".into()),
                ("MECAPY_JOB_ID".into(), job.id.to_string()),
            ],
            limits: manifest.limits.clone(),
            labels: vec![("org.mecapy.job-id".into(), job.id.to_string())],
        };
        let started = Instant::now();
        let result = self.runtime.run(&spec).await.map_err(|e| {
            if e.is_transient() {
                DispatchError::Transient(e.to_string())
            } else {
                DispatchError::Permanent(e.to_string())
            }
        })?;
        tracing::info!(job_id = %job.id, outcome = ?result.outcome, elapsed_ms = started.elapsed().as_millis() as u64, "job ran");

        storage
            .put(
                &keys::stdout(job.id),
                result.stdout.clone(),
                "text/plain; charset=utf-8",
            )
            .await?;
        storage
            .put(
                &keys::stderr(job.id),
                result.stderr.clone(),
                "text/plain; charset=utf-8",
            )
            .await?;
        let mut outputs = Vec::with_capacity(result.outputs.len());
        for (name, data) in &result.outputs {
            storage
                .put(
                    &keys::output(job.id, name),
                    data.clone(),
                    "application/octet-stream",
                )
                .await?;
            outputs.push(json!({"name": name, "size": data.len(), "sha256": hex::encode(Sha256::digest(data))}));
        }

        let status = match result.outcome {
            Outcome::Succeeded => JobStatus::Succeeded,
            Outcome::Failed => JobStatus::Failed,
            Outcome::Timeout => JobStatus::Timeout,
            Outcome::Oom => JobStatus::Oom,
        };
        let limits = json!(result.limits);
        let outputs = json!(outputs);
        let db = self.state.db.get().await.map_err(DbError::from)?;
        let finished = db::jobs::finish(
            &**db,
            job.id,
            &db::jobs::Finished {
                status,
                exit_code: result.exit_code.map(|c| c as i32),
                duration_ms: result.duration.as_millis() as i64,
                image_digest: result.image_digest.as_deref(),
                limits: &limits,
                stdout_truncated: result.stdout_truncated,
                stderr_truncated: result.stderr_truncated,
                outputs: &outputs,
                outputs_truncated: result.outputs_truncated,
            },
        )
        .await?;
        if let Some(job) = finished {
            self.emit(Event::finished(&job)).await;
        }
        Ok(())
    }
}

fn receive_count(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
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

/// The jobs whose manifest an S3 → SQS message announces. `s3:TestEvent` and other objects give
/// none; a body that is not an S3 event is an error (the message goes to the dead-letter queue).
pub fn manifest_jobs(body: &str) -> Result<Vec<Uuid>, String> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("message is not JSON: {e}"))?;
    if value["Event"] == "s3:TestEvent" {
        return Ok(vec![]);
    }
    let records = value["Records"]
        .as_array()
        .ok_or_else(|| "message is not an S3 event".to_string())?;
    Ok(records
        .iter()
        .filter(|r| {
            r["eventName"]
                .as_str()
                .is_some_and(|n| n.starts_with("ObjectCreated"))
        })
        .filter_map(|r| r["s3"]["object"]["key"].as_str())
        .filter_map(|key| {
            // S3 event keys are form-encoded (a space arrives as '+').
            let decoded: String = url::form_urlencoded::parse(format!("k={key}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())?;
            keys::job_of_manifest(&decoded)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_event_announces_no_job() {
        let body = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#;
        assert_eq!(manifest_jobs(body).unwrap(), Vec::<Uuid>::new());
    }

    #[test]
    fn manifest_put_announces_its_job() {
        let id = Uuid::new_v4();
        let body = json!({"Records": [
            {"eventName": "ObjectCreated:Put", "s3": {"object": {"key": format!("jobs/{id}/manifest.json")}}},
            {"eventName": "ObjectCreated:Put", "s3": {"object": {"key": format!("jobs/{id}/main.py")}}},
            {"eventName": "ObjectRemoved:Delete", "s3": {"object": {"key": format!("jobs/{id}/manifest.json")}}}
        ]});
        assert_eq!(manifest_jobs(&body.to_string()).unwrap(), vec![id]);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(manifest_jobs("not json").is_err());
        assert!(manifest_jobs("{}").is_err());
    }
}
