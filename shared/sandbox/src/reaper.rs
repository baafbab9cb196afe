//! The reaper: removes every sandbox container past its deadline (the job's limit plus the
//! holder's grace, stamped in its labels at creation). A running container ends by itself at that
//! deadline and the engine removes it; what the reaper finds is what fell through: a container
//! created by a dispatcher that died before starting it, or one the engine failed to remove.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::config::DEADLINE_LABEL;
use super::{DockerRuntime, SandboxError, SANDBOX_LABEL};

/// A container without a deadline label (made by an older version) is reaped this long after
/// its creation: longer than any tool's limit.
const UNLABELLED_LIFETIME: Duration = Duration::from_secs(3600);

/// The time after which a container must be gone: its deadline label, else its creation time
/// plus [`UNLABELLED_LIFETIME`].
pub(super) fn deadline(labels: &HashMap<String, String>, created: i64) -> u64 {
    labels
        .get(DEADLINE_LABEL)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| (created.max(0) as u64).saturating_add(UNLABELLED_LIFETIME.as_secs()))
}

impl DockerRuntime {
    /// Force-removes the sandbox containers whose deadline has passed; returns their ids.
    pub async fn reap_expired(&self) -> Result<Vec<String>, SandboxError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let found = self.labelled_containers(SANDBOX_LABEL, "job").await?;
        let expired: Vec<String> = found
            .into_iter()
            .filter(|c| {
                let labels = c.labels.clone().unwrap_or_default();
                now > deadline(&labels, c.created.unwrap_or(0))
            })
            .filter_map(|c| c.id)
            .collect();
        if expired.is_empty() {
            return Ok(expired);
        }
        let mut created = super::cleanup::Created::new(self.docker.clone());
        created.containers = expired.clone();
        created.release().await;
        tracing::warn!(containers = ?expired, "reaped sandbox containers past their deadline");
        Ok(expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_comes_from_the_label_else_from_the_creation_time() {
        let labelled = HashMap::from([(DEADLINE_LABEL.to_string(), "1700000034".to_string())]);
        assert_eq!(deadline(&labelled, 1_700_000_000), 1_700_000_034);
        assert_eq!(deadline(&HashMap::new(), 1_700_000_000), 1_700_003_600);
        let garbage = HashMap::from([(DEADLINE_LABEL.to_string(), "soon".to_string())]);
        assert_eq!(deadline(&garbage, 10), 3610);
    }
}
