//! Removal of everything a run created, whatever happened: [`Created::release`] is awaited on
//! every path of a run, and if the run's future is dropped half-way (a cancelled dispatcher),
//! `Drop` hands the removal to a background task.

use std::time::Duration;

use bollard::query_parameters::RemoveContainerOptionsBuilder;
use bollard::Docker;

/// What a run has created so far, in creation order. A run's `/work` is an anonymous volume of
/// its container, removed with it.
pub(super) struct Created {
    docker: Docker,
    pub(super) containers: Vec<String>,
}

impl Created {
    pub(super) fn new(docker: Docker) -> Self {
        Self {
            docker,
            containers: Vec::new(),
        }
    }

    /// Force-removes the containers (together, with their anonymous volumes, `/work` included).
    /// The list is cleared only afterwards, so a release that is itself interrupted is finished
    /// by `Drop`. Failures are logged: the labels let a janitor find what is left.
    pub(super) async fn release(&mut self) {
        let removals = self.containers.iter().map(|id| self.remove_container(id));
        futures_util::future::join_all(removals).await;
        self.containers.clear();
    }

    async fn remove_container(&self, id: &str) {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        let mut attempt = self
            .docker
            .remove_container(id, Some(options.clone()))
            .await;
        if attempt.as_ref().is_err_and(|e| !gone(e)) {
            tokio::time::sleep(Duration::from_millis(300)).await;
            attempt = self.docker.remove_container(id, Some(options)).await;
        }
        match attempt {
            Err(e) if !gone(&e) => {
                tracing::warn!(container = %id, error = %e, "sandbox container not removed")
            }
            _ => tracing::debug!(container = %id, "sandbox container removed"),
        }
    }
}

/// 404: already gone; 409: removal already in progress.
fn gone(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404 | 409,
            ..
        }
    )
}

impl Drop for Created {
    fn drop(&mut self) {
        if self.containers.is_empty() {
            return;
        }
        let containers = std::mem::take(&mut self.containers);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let mut rest = Created {
                    docker: self.docker.clone(),
                    containers,
                };
                handle.spawn(async move { rest.release().await });
            }
            Err(_) => tracing::warn!(
                ?containers,
                "sandbox run dropped outside a runtime: resources left behind"
            ),
        }
    }
}
