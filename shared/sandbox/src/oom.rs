//! Telling an OOM kill from any other SIGKILL. On this engine (20.10, cgroup v1), under load, a
//! job killed at its memory limit was once reported with `State.OOMKilled` false right after its
//! exit: the engine handles the kernel's OOM notice and the exit separately. So the run also
//! watches the container's `oom` event, and a SIGKILL exit (137) waits briefly for either.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::query_parameters::EventsOptionsBuilder;
use futures_util::StreamExt;
use tokio::sync::oneshot;

use super::archive::AbortOnDrop;
use super::{DockerRuntime, SandboxError};

/// How long an exit by SIGKILL waits for a late OOM event before being called a plain failure.
const LATE_OOM: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(100);

impl DockerRuntime {
    /// Signals the container's `oom` event; `since` replays one that happened before the
    /// subscription took effect. Started before the job, dropped (aborted) after it.
    pub(super) fn watch_oom(&self, id: &str) -> (oneshot::Receiver<()>, AbortOnDrop<()>) {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs().saturating_sub(1))
            .unwrap_or(0);
        let filters = HashMap::from([
            ("container", vec![id.to_string()]),
            ("event", vec!["oom".to_string()]),
        ]);
        let options = EventsOptionsBuilder::new()
            .since(&since.to_string())
            .filters(&filters)
            .build();
        let mut events = self.docker.events(Some(options));
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            if let Some(Ok(_)) = events.next().await {
                let _ = tx.send(());
            }
        });
        (rx, AbortOnDrop(task))
    }

    /// Whether the engine saw an OOM kill: from its state, or from its event, which may come a
    /// little after the exit. Only a SIGKILL exit (137) is worth waiting for.
    pub(super) async fn oom_killed(
        &self,
        id: &str,
        exit_code: Option<i64>,
        mut event: oneshot::Receiver<()>,
    ) -> Result<bool, SandboxError> {
        if event.try_recv().is_ok() {
            return Ok(true);
        }
        if exit_code != Some(137) {
            return Ok(false);
        }
        let deadline = Instant::now() + LATE_OOM;
        let mut watching = true;
        loop {
            if watching {
                match tokio::time::timeout(POLL, &mut event).await {
                    Ok(Ok(())) => return Ok(true),
                    // The watch ended without an event: only the state is left to poll.
                    Ok(Err(_)) => watching = false,
                    Err(_) => {}
                }
            } else {
                tokio::time::sleep(POLL).await;
            }
            if self.state(id).await?.oom_killed == Some(true) {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
        }
    }
}
