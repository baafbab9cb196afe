//! `compute-dispatch`: for each SQS record carrying an S3 "manifest created" event (or the
//! sweep's request to dispatch a job), claims the job atomically, runs it in the sandbox, stores
//! its results and records its outcome. The records of a batch run concurrently, bounded.
//!
//! A transient failure (S3 or the container engine unreachable) puts the job back to `queued`
//! and reports the record as a batch item failure, so SQS delivers it again; on the last allowed
//! receive the job is marked `error` before the message moves to the dead-letter queue. The
//! database being down never gives a job up: its message may end in the dead-letter queue, and
//! the sweep ([`Dispatcher::sweep`], on a schedule) sends a new one once the database is back.
//! A permanent failure (manifest unreadable, input changed) marks the job `error` and is
//! acknowledged. A duplicate delivery finds the job finished and does nothing, or still held by
//! a live dispatcher and comes back when that dispatcher's lease ends.
//!
//! Sizing: a record is only started when the invocation has time left for the job's whole lease
//! (its limit, the sandbox's grace, the staging margin); the others are handed back at once.

mod ecs;
mod retry;
mod run;
mod sweep;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::StreamExt;
use mecapy_sandbox::ecs::TaskStateChange;
use mecapy_sandbox::ContainerRuntime;
use mecapy_shared::db::DbError;
use mecapy_shared::jobs::{keys, messages};
use mecapy_shared::storage::StorageError;
use mecapy_usecases::Context;
use uuid::Uuid;

pub use ecs::EcsCompute;
pub use retry::RetryBackoff;
pub use sweep::{ComputeQueue, SweepReport};

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// Worth retrying: a dependency was unreachable.
    #[error("transient: {0}")]
    Transient(String),
    /// The database is unreachable: retried, and never given up (nothing could record it).
    #[error("database unavailable: {0}")]
    DatabaseDown(String),
    /// Not now: come back after the delay (a live dispatcher holds the job, or this invocation
    /// has no time left for it).
    #[error("later: {reason}")]
    Later { reason: String, after: Duration },
    /// Retrying cannot help: the job is marked `error`.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl From<DbError> for DispatchError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(m) => DispatchError::DatabaseDown(m),
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

/// A record to deliver again: why, after how long (none: the backoff for its receive count), and
/// what becomes of it on the last delivery before the dead-letter queue.
#[derive(Debug)]
struct Retry {
    reason: String,
    after: Option<Duration>,
    last: LastDelivery,
}

/// The dead-letter queue holds only what failed for real: a message that cannot be read, or
/// whose job failed for good. A message whose job is merely not done yet is never dead-lettered.
#[derive(Debug, Clone, PartialEq)]
enum LastDelivery {
    /// Dead-lettered: the message is bad, or its job was given up (`error`).
    DeadLetter,
    /// Acknowledged: the database is down, and the sweep runs the job once it is back (a
    /// `queued` job idle, or a `running` one past its lease).
    Sweep,
    /// Acknowledged once these jobs are asked for again in fresh messages, due when the retry
    /// is (a live dispatcher holds the job, or this invocation had no time left for it).
    Resend(Vec<Uuid>),
}

impl Retry {
    fn backoff(reason: impl Into<String>) -> Self {
        Retry {
            reason: reason.into(),
            after: None,
            last: LastDelivery::DeadLetter,
        }
    }

    /// What a dispatch error asks of the record of `job`.
    fn of(job: Uuid, e: DispatchError) -> Self {
        match e {
            DispatchError::Later { reason, after } => Retry {
                reason,
                after: Some(after),
                last: LastDelivery::Resend(vec![job]),
            },
            e @ DispatchError::DatabaseDown(_) => Retry {
                last: LastDelivery::Sweep,
                ..Retry::backoff(e.to_string())
            },
            e => Retry::backoff(e.to_string()),
        }
    }

    /// One retry for a message of several jobs: the soonest, dead-lettered if any must be.
    fn merge(self, other: Retry) -> Retry {
        let last = match (self.last, other.last) {
            (LastDelivery::DeadLetter, _) | (_, LastDelivery::DeadLetter) => {
                LastDelivery::DeadLetter
            }
            (LastDelivery::Resend(mut a), LastDelivery::Resend(b)) => {
                a.extend(b);
                LastDelivery::Resend(a)
            }
            (LastDelivery::Resend(a), LastDelivery::Sweep)
            | (LastDelivery::Sweep, LastDelivery::Resend(a)) => LastDelivery::Resend(a),
            (LastDelivery::Sweep, LastDelivery::Sweep) => LastDelivery::Sweep,
        };
        let after = match (self.after, other.after) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Retry {
            reason: other.reason,
            after,
            last,
        }
    }
}

/// Where jobs run.
#[derive(Clone)]
pub enum Compute {
    /// A container engine (Docker): dispatch runs the job and waits for its end.
    Engine(Arc<dyn ContainerRuntime>),
    /// Amazon ECS: dispatch starts the job's task and returns; its end comes as an event.
    Ecs(EcsCompute),
}

pub struct Dispatcher {
    pub state: Context,
    pub compute: Compute,
    /// Shortens the wait before a failed record's next delivery (none: the queue's visibility).
    pub retries: Option<RetryBackoff>,
    /// Where the sweep sends the jobs it requeues (none: it only reports them).
    pub compute_queue: Option<ComputeQueue>,
    /// Records of a batch run at once.
    pub concurrency: usize,
}

impl Dispatcher {
    /// A dispatcher without queues (retries at the queue's visibility timeout, a
    /// sweep that only reports), running `concurrency` records at once.
    pub fn new(state: Context, runtime: Arc<dyn ContainerRuntime>, concurrency: usize) -> Self {
        Self::on(state, Compute::Engine(runtime), concurrency)
    }

    /// The same, for jobs run by `compute`.
    pub fn on(state: Context, compute: Compute, concurrency: usize) -> Self {
        Dispatcher {
            state,
            compute,
            retries: None,
            compute_queue: None,
            concurrency: concurrency.max(1),
        }
    }

    /// The compute queue comes from `COMPUTE_QUEUE_URL`, the concurrency from `DISPATCH_CONCURRENCY` or the
    /// engine's CPU count (two jobs per CPU at the default 0.5 CPU share).
    pub async fn from_env(
        state: Context,
        compute: Compute,
    ) -> Result<Self, mecapy_shared::app::StartupError> {
        let sqs = mecapy_shared::queue::client(&state.aws().await);
        let config = state.config.clone();
        let concurrency = match (config.dispatch_concurrency, &compute) {
            (Some(n), _) => n,
            (None, Compute::Engine(runtime)) => {
                mecapy_sandbox::default_concurrency(runtime.cpus().await.unwrap_or(1))
            }
            // Starting a task is a few API calls: no engine to spare.
            (None, Compute::Ecs(_)) => 16,
        };
        tracing::info!(concurrency, "dispatcher ready");
        let mut dispatcher = Dispatcher::on(state, compute, concurrency);
        dispatcher.compute_queue = config
            .compute_queue_url
            .as_ref()
            .map(|url| ComputeQueue::new(sqs.clone(), url));
        dispatcher.retries = Some(RetryBackoff::new(sqs, config.retry_base, config.retry_max));
        Ok(dispatcher)
    }

    /// What the Lambda receives, each source to its recipe: a batch of the queues
    /// ([`Dispatcher::handle_within`]) or the sweep's schedule ([`Dispatcher::sweep_for`]).
    /// `deadline`: when the invocation ends.
    pub async fn handle_event(
        &self,
        event: serde_json::Value,
        deadline: Option<Instant>,
    ) -> Result<serde_json::Value, String> {
        match Trigger::of(event)? {
            Trigger::Batch(batch) => {
                let response = self.handle_within(batch, deadline).await;
                serde_json::to_value(response).map_err(|e| e.to_string())
            }
            Trigger::Schedule => {
                let report = self.sweep_for(deadline).await.map_err(|e| e.to_string())?;
                serde_json::to_value(report).map_err(|e| e.to_string())
            }
        }
    }

    /// One SQS batch with no deadline (tests, local runs).
    pub async fn handle(
        &self,
        event: SqsEvent,
    ) -> Result<SqsBatchResponse, std::convert::Infallible> {
        Ok(self.handle_within(event, None).await)
    }

    /// One SQS batch, at most `concurrency` records at once: every record that must be retried
    /// is reported as a batch item failure.
    pub async fn handle_within(
        &self,
        event: SqsEvent,
        deadline: Option<Instant>,
    ) -> SqsBatchResponse {
        let records: Vec<_> = event
            .records
            .iter()
            .map(|record| self.process(record, deadline))
            .collect();
        let outcomes: Vec<Option<BatchItemFailure>> = futures_util::stream::iter(records)
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = outcomes.into_iter().flatten().collect();
        response
    }

    async fn process(
        &self,
        record: &SqsMessage,
        deadline: Option<Instant>,
    ) -> Option<BatchItemFailure> {
        let retry = self.handle_record(record, deadline).await.err()?;
        let receives = receive_count(record);
        if receives >= self.state.config.max_receives && self.hand_over(&retry).await {
            tracing::info!(message_id = ?record.message_id, reason = retry.reason, receives, last = ?retry.last, "last delivery handed over, not dead-lettered");
            return None;
        }
        tracing::warn!(message_id = ?record.message_id, reason = retry.reason, receives, "record will be retried");
        if let Some(retries) = &self.retries {
            let after = retry.after.unwrap_or_else(|| retries.delay(receives));
            retries.postpone(record, after).await;
        }
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = record.message_id.clone().unwrap_or_default();
        Some(failure)
    }

    /// On a record's last delivery: whether what its retry asks for was done, so that the record
    /// is acknowledged rather than dead-lettered.
    async fn hand_over(&self, retry: &Retry) -> bool {
        match &retry.last {
            LastDelivery::DeadLetter => false,
            LastDelivery::Sweep => true,
            LastDelivery::Resend(jobs) => {
                let Some(queue) = &self.compute_queue else {
                    return false;
                };
                let after = retry.after.unwrap_or_default();
                for job in jobs {
                    if let Err(e) = queue.send(*job, after).await {
                        tracing::warn!(%job, error = %e, "not asked for again: the record is dead-lettered");
                        return false;
                    }
                }
                true
            }
        }
    }

    /// `Err` means "deliver this record again".
    async fn handle_record(
        &self,
        record: &SqsMessage,
        deadline: Option<Instant>,
    ) -> Result<(), Retry> {
        let body = record.body.as_deref().unwrap_or("");
        match Record::of(body).map_err(Retry::backoff)? {
            Record::TaskEnded(change) => self.on_task_end(&change).await,
            Record::Jobs(jobs) => self.on_jobs(jobs, receive_count(record), deadline).await,
        }
    }

    /// An ECS task ended (the task-ends queue): its job's outcome is recorded.
    async fn on_task_end(&self, change: &TaskStateChange) -> Result<(), Retry> {
        match self.task_ended(change).await {
            Ok(()) => Ok(()),
            Err(DispatchError::Permanent(reason)) => {
                tracing::error!(task = change.task_arn, reason, "task end not recorded");
                if let Some(job_id) = change.job() {
                    self.give_up(job_id, &reason)
                        .await
                        .map_err(|e| Retry::backoff(e.to_string()))?;
                }
                Ok(())
            }
            Err(e @ DispatchError::DatabaseDown(_)) => Err(Retry {
                // The sweep finishes the job from its stored outcome once its lease is past.
                last: LastDelivery::Sweep,
                ..Retry::backoff(e.to_string())
            }),
            Err(e) => Err(Retry::backoff(e.to_string())),
        }
    }

    /// Jobs to run (the compute queue: a manifest's creation, or the sweep's request): each is
    /// claimed and run, or given up, or handed back for a later delivery.
    async fn on_jobs(
        &self,
        jobs: Vec<Uuid>,
        receives: u32,
        deadline: Option<Instant>,
    ) -> Result<(), Retry> {
        let mut retry: Option<Retry> = None;
        for job_id in jobs {
            let again = match self.dispatch(job_id, deadline).await {
                Ok(()) => continue,
                Err(DispatchError::Permanent(reason)) => {
                    tracing::error!(%job_id, reason, "job failed permanently");
                    match self.give_up(job_id, &reason).await {
                        Ok(()) => continue,
                        Err(e) => Retry::of(job_id, e),
                    }
                }
                Err(DispatchError::Transient(reason)) => {
                    if receives >= self.state.config.max_receives {
                        let reason = format!("gave up after {receives} attempts: {reason}");
                        if let Err(e) = self.give_up(job_id, &reason).await {
                            tracing::error!(%job_id, error = %e, "could not mark the job error");
                        }
                    }
                    Retry::backoff(reason)
                }
                // Never given up: the sweep finds the job once the database is back.
                Err(e) => Retry::of(job_id, e),
            };
            retry = Some(match retry {
                Some(r) => r.merge(again),
                None => again,
            });
        }
        retry.map_or(Ok(()), Err)
    }

    /// Sends the events the job's last change recorded (its outbox rows) to the bus now, so a
    /// subscriber hears of a start while the job runs, not when the batch ends.
    async fn publish_events(&self) {
        self.state.publish_events().await;
    }
}

fn receive_count(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// What set an invocation off: the one place that tells the event sources apart.
enum Trigger {
    /// A batch of the compute queue or of the task-ends queue.
    Batch(SqsEvent),
    /// The sweep's schedule (an EventBridge `Scheduled Event`).
    Schedule,
}

impl Trigger {
    fn of(event: serde_json::Value) -> Result<Self, String> {
        if event.get("Records").is_some() {
            return serde_json::from_value(event)
                .map(Trigger::Batch)
                .map_err(|e| format!("not an SQS batch: {e}"));
        }
        if event["detail-type"] == "Scheduled Event" || event["source"] == "aws.events" {
            return Ok(Trigger::Schedule);
        }
        Err("unknown event: neither an SQS batch nor a scheduled event".into())
    }
}

/// One record of a batch.
enum Record {
    /// An `ECS Task State Change` event (EventBridge, through the task-ends queue).
    TaskEnded(TaskStateChange),
    /// The jobs a compute-queue message announces (see [`announced_jobs`]).
    Jobs(Vec<Uuid>),
}

impl Record {
    fn of(body: &str) -> Result<Self, String> {
        let change = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| TaskStateChange::from_event(&v));
        match change {
            Some(change) => Ok(Record::TaskEnded(change)),
            None => announced_jobs(body).map(Record::Jobs),
        }
    }
}

/// The jobs a compute-queue message announces: the manifests of an S3 event, or the job of the
/// sweep's dispatch request. `s3:TestEvent` and other objects give none; a body that is neither
/// is an error (the message goes to the dead-letter queue).
pub fn announced_jobs(body: &str) -> Result<Vec<Uuid>, String> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("message is not JSON: {e}"))?;
    if let Some(job) = messages::job_to_dispatch(&value) {
        return Ok(vec![job]);
    }
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
    use serde_json::json;

    #[test]
    fn test_event_announces_no_job() {
        let body = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#;
        assert_eq!(announced_jobs(body).unwrap(), Vec::<Uuid>::new());
    }

    #[test]
    fn manifest_put_announces_its_job() {
        let id = Uuid::new_v4();
        let body = json!({"Records": [
            {"eventName": "ObjectCreated:Put", "s3": {"object": {"key": format!("jobs/{id}/manifest.json")}}},
            {"eventName": "ObjectCreated:Put", "s3": {"object": {"key": format!("jobs/{id}/main.py")}}},
            {"eventName": "ObjectRemoved:Delete", "s3": {"object": {"key": format!("jobs/{id}/manifest.json")}}}
        ]});
        assert_eq!(announced_jobs(&body.to_string()).unwrap(), vec![id]);
    }

    #[test]
    fn the_sweeps_request_announces_its_job() {
        let id = Uuid::new_v4();
        assert_eq!(announced_jobs(&messages::dispatch(id)).unwrap(), vec![id]);
    }

    #[test]
    fn a_message_is_dead_lettered_only_when_one_of_its_jobs_failed_for_good() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let later = |job, secs| {
            Retry::of(
                job,
                DispatchError::Later {
                    reason: "held".into(),
                    after: Duration::from_secs(secs),
                },
            )
        };
        let down = || Retry::of(a, DispatchError::DatabaseDown("cut".into()));
        assert_eq!(down().last, LastDelivery::Sweep);
        let both = later(a, 9).merge(later(b, 3));
        assert_eq!(both.last, LastDelivery::Resend(vec![a, b]));
        assert_eq!(both.after, Some(Duration::from_secs(3)));
        assert_eq!(
            down().merge(later(b, 3)).last,
            LastDelivery::Resend(vec![b])
        );
        let failed = Retry::of(a, DispatchError::Transient("engine".into()));
        assert_eq!(failed.last, LastDelivery::DeadLetter);
        assert_eq!(later(b, 3).merge(failed).last, LastDelivery::DeadLetter);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(announced_jobs("not json").is_err());
        assert!(announced_jobs("{}").is_err());
    }
}
