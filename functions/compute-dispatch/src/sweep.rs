//! The sweep, run on a schedule (and callable by hand): nothing stays `running` or `queued` for
//! good, whatever happened to the dispatcher or to the messages.
//!
//! 1. The reaper removes sandbox containers past their deadline (the engine removes the others
//!    by itself when their holder process ends).
//! 2. A job `running` past its lease lost its dispatcher: finished from its stored outcome if
//!    the run got that far, else given back to the queue and run again, or marked `error` once it
//!    has been claimed `MAX_ATTEMPTS` times.
//!
//! Between two sweeps, each claim also posts a delayed request to dispatch its job, due when its
//! lease ends (the watchdog, [`Dispatcher::watch_lease`]): if the dispatcher died, that delivery
//! claims the job again at once; if not, it finds the job finished and is acknowledged.
//!
//! 3. A job `queued` with no change for `SWEEP_IDLE_QUEUED_SECONDS` lost its message (dead-letter
//!    queue after a database outage, a killed invocation's batch): it is run.
//!
//! The sweep runs the jobs of 2 and 3 itself, as the invocation's time allows (a dead
//! invocation's batch can hold the queue's event source up to the function's timeout), and sends
//! a message for the others. Running twice is impossible: every path goes through the atomic
//! claim. Within one scheduled invocation the sweep repeats every `SWEEP_INTERVAL_SECONDS` until
//! the next one.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;
use uuid::Uuid;

use mecapy_shared::db;
use mecapy_shared::jobs::messages;
use mecapy_shared::queue::Queue;

use crate::{Compute, DispatchError, Dispatcher};

/// How many jobs one sweep handles in each category; the next sweep takes the rest.
const SWEEP_BATCH: i64 = 500;
/// The schedule's period: EventBridge's shortest rate.
const SCHEDULE_PERIOD: Duration = Duration::from_secs(60);

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
    /// Idle queued jobs found (their message was lost).
    pub resent: usize,
    /// Of the requeued and idle jobs, those the sweep ran itself (the others got a message).
    pub ran: usize,
    /// Outbox events sent to the bus (whose send after their change had failed), and those
    /// that failed again.
    pub published: usize,
    pub unpublished: usize,
}

impl SweepReport {
    fn add(&mut self, other: &SweepReport) {
        self.reaped += other.reaped;
        self.finished += other.finished;
        self.requeued += other.requeued;
        self.failed += other.failed;
        self.resent += other.resent;
        self.ran += other.ran;
        self.published += other.published;
        self.unpublished += other.unpublished;
    }
}

/// The compute queue, for the messages the sweep sends.
pub struct ComputeQueue(Queue);

impl ComputeQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: &str) -> Self {
        ComputeQueue(Queue::new(client, url))
    }

    /// Asks for `job` to be dispatched, after `delay` (at most SQS's 15 minutes).
    pub(crate) async fn send(&self, job: Uuid, delay: Duration) -> Result<(), DispatchError> {
        self.0
            .send(messages::dispatch(job), delay)
            .await
            .map_err(|e| DispatchError::Transient(format!("compute queue: {e}")))
    }
}

impl Dispatcher {
    /// The scheduled sweep: passes every `SWEEP_INTERVAL_SECONDS` until the schedule's next
    /// minute (one pass when the interval is 60 s), each within the invocation's `deadline`.
    pub async fn sweep_for(&self, deadline: Option<Instant>) -> Result<SweepReport, DispatchError> {
        let start = Instant::now();
        let interval = self.state.config.sweep_interval.max(Duration::from_secs(1));
        let mut total = SweepReport::default();
        for pass in 1u32.. {
            total.add(&self.sweep_within(deadline).await?);
            let next = start + interval * pass;
            let ends_minute = next + interval > start + SCHEDULE_PERIOD;
            let ends_invocation = deadline.is_some_and(|d| next + Duration::from_secs(5) > d);
            if ends_minute || ends_invocation {
                break;
            }
            tokio::time::sleep_until(next.into()).await;
        }
        Ok(total)
    }

    /// One pass with no deadline (see the module's documentation).
    pub async fn sweep(&self) -> Result<SweepReport, DispatchError> {
        self.sweep_within(None).await
    }

    async fn sweep_within(&self, deadline: Option<Instant>) -> Result<SweepReport, DispatchError> {
        let mut report = SweepReport::default();
        if let Compute::Engine(runtime) = &self.compute {
            match runtime.reap().await {
                Ok(reaped) => report.reaped = reaped.len(),
                Err(e) => tracing::warn!(error = %e, "reaper: the engine did not answer"),
            }
        }
        let max_attempts = self.state.config.max_attempts;
        let mut to_run = Vec::new();
        {
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
                    if db::jobs::fail(&**db, job.id, &reason).await?.is_some() {
                        report.failed += 1;
                    }
                } else {
                    let reason = "its dispatcher stopped during the run: queued again";
                    if db::jobs::requeue_expired(&**db, job.id, reason)
                        .await?
                        .is_some()
                    {
                        to_run.push(job.id);
                        report.requeued += 1;
                    }
                }
            }
            let idle = self.state.config.sweep_idle_queued;
            for job in db::jobs::touch_idle_queued(&**db, idle, SWEEP_BATCH).await? {
                to_run.push(job);
                report.resent += 1;
            }
        }
        report.ran = self.run_swept(to_run, deadline).await?;
        if let Some(bus) = &self.state.bus {
            match bus.drain(&self.state.db).await {
                Ok(d) => (report.published, report.unpublished) = (d.published, d.failed),
                Err(e) => tracing::warn!(error = %e, "sweep: outbox not drained"),
            }
        }
        if report != SweepReport::default() {
            tracing::warn!(?report, "sweep");
        } else {
            tracing::info!("sweep: nothing to do");
        }
        Ok(report)
    }

    /// Runs the jobs the sweep gave back to the queue right here, `concurrency` at a time, so
    /// they do not depend on the queue's event source (stalled behind a dead invocation's batch,
    /// say); the ones that cannot run now get a message instead. Returns how many ran.
    async fn run_swept(
        &self,
        jobs: Vec<Uuid>,
        deadline: Option<Instant>,
    ) -> Result<usize, DispatchError> {
        let runs: Vec<_> = jobs
            .into_iter()
            .map(|job| async move { (job, self.dispatch(job, deadline).await) })
            .collect();
        let results: Vec<(Uuid, Result<(), DispatchError>)> = futures_util::stream::iter(runs)
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        let mut ran = 0;
        for (job, result) in results {
            match result {
                Ok(()) => ran += 1,
                Err(DispatchError::Permanent(reason)) => self.give_up(job, &reason).await?,
                Err(other) => {
                    tracing::info!(%job, reason = %other, "not run by the sweep: sent to the queue");
                    self.resend(job).await?;
                }
            }
        }
        Ok(ran)
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
