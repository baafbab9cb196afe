//! The sweep, run on a schedule (and callable by hand): nothing stays `running` or `queued` for
//! good, whatever happened to the dispatcher or to the messages.
//!
//! 1. The reaper removes sandbox containers past their deadline (the engine removes the others
//!    by itself when their holder process ends).
//! 2. A job `running` past its lease lost its dispatcher: finished from its stored outcome if
//!    the run got that far, else given back to the queue with a new message, or marked `error`
//!    once it has been claimed `MAX_ATTEMPTS` times.
//!
//! Between two sweeps, each claim also posts a delayed request to dispatch its job, due when its
//! lease ends (the watchdog, [`Dispatcher::watch_lease`]): if the dispatcher died, that delivery
//! claims the job again at once; if not, it finds the job finished and is acknowledged.
//!
//! 3. A job `queued` with no change for `SWEEP_IDLE_QUEUED_SECONDS` lost its message (dead-letter
//!    queue after a database outage, a killed invocation's batch): it gets a new one. A duplicate
//!    message is harmless: the claim is atomic.

use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;

use mecapy_shared::db;
use mecapy_shared::jobs::messages;

use crate::{DispatchError, Dispatcher, Event};

/// How many jobs one sweep handles in each category; the next sweep takes the rest.
const SWEEP_BATCH: i64 = 500;
/// SQS's longest message delay.
const MAX_DELAY_SECONDS: u64 = 900;

/// What one sweep did.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct SweepReport {
    /// Sandbox containers removed past their deadline.
    pub reaped: usize,
    /// Jobs of dead dispatchers finished from their stored outcome.
    pub finished: usize,
    /// Jobs of dead dispatchers given back to the queue.
    pub requeued: usize,
    /// Jobs of dead dispatchers given up (`error`) after `MAX_ATTEMPTS` claims.
    pub failed: usize,
    /// Idle queued jobs that got a new message.
    pub resent: usize,
}

/// The compute queue, for the messages the sweep sends.
pub struct ComputeQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl ComputeQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: &str) -> Self {
        ComputeQueue {
            client,
            url: url.to_string(),
        }
    }

    /// Asks for `job` to be dispatched, after `delay` (at most SQS's 15 minutes).
    pub(crate) async fn send(&self, job: Uuid, delay: Duration) -> Result<(), DispatchError> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(messages::dispatch(job))
            .delay_seconds(delay.as_secs().min(MAX_DELAY_SECONDS) as i32)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                DispatchError::Transient(format!(
                    "compute queue: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                ))
            })
    }
}

impl Dispatcher {
    /// One sweep (see the module's documentation).
    pub async fn sweep(&self) -> Result<SweepReport, DispatchError> {
        let mut report = SweepReport::default();
        match self.runtime.reap().await {
            Ok(reaped) => report.reaped = reaped.len(),
            Err(e) => tracing::warn!(error = %e, "reaper: the engine did not answer"),
        }
        let max_attempts = self.state.config.max_attempts;
        let db = self.state.db.get().await.map_err(db::DbError::from)?;
        for job in db::jobs::expired_leases(&**db, SWEEP_BATCH).await? {
            if let Some(outcome) = self.stored_outcome(job.id).await? {
                self.record(&job, &outcome).await?;
                report.finished += 1;
            } else if job.attempts >= max_attempts as i32 {
                let reason = format!(
                    "its dispatcher stopped during each of {} attempts",
                    job.attempts
                );
                if let Some(failed) = db::jobs::fail(&**db, job.id, &reason).await? {
                    self.emit(Event::finished(&failed)).await;
                    report.failed += 1;
                }
            } else {
                let reason = "its dispatcher stopped during the run: queued again";
                if db::jobs::requeue_expired(&**db, job.id, reason)
                    .await?
                    .is_some()
                {
                    self.resend(job.id).await?;
                    report.requeued += 1;
                }
            }
        }
        let idle = self.state.config.sweep_idle_queued;
        for job in db::jobs::touch_idle_queued(&**db, idle, SWEEP_BATCH).await? {
            self.resend(job).await?;
            report.resent += 1;
        }
        if report != SweepReport::default() {
            tracing::warn!(?report, "sweep");
        } else {
            tracing::info!("sweep: nothing to do");
        }
        Ok(report)
    }

    /// The watchdog of a claim: a request to dispatch `job` again once `lease` has passed. Best
    /// effort (the sweep is the backstop): a failure is logged.
    pub(crate) async fn watch_lease(&self, job: Uuid, lease: Duration) {
        if let Some(queue) = &self.compute_queue {
            let due = lease + Duration::from_secs(1);
            if let Err(e) = queue.send(job, due).await {
                tracing::warn!(%job, error = %e, "lease watchdog not sent: the sweep stands in");
            }
        }
    }

    async fn resend(&self, job: Uuid) -> Result<(), DispatchError> {
        match &self.compute_queue {
            Some(queue) => queue.send(job, Duration::ZERO).await,
            None => {
                tracing::warn!(%job, "no compute queue configured: the job waits for its message");
                Ok(())
            }
        }
    }
}
