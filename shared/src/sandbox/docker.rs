//! [`DockerRuntime`]: the sandbox on a Docker engine, through its API only.
//!
//! `/work` is a tmpfs-backed local volume (`size=work_mb`, owned by uid 1000). The engine
//! unmounts such a volume, and loses its content, whenever no running container uses it, so a
//! small "holder" container (same image, `sleep infinity`, as locked down as the job) keeps it
//! mounted for the whole run: the input archive is extracted into it through the holder before
//! the job starts, and `/work/out` is read back through it after the job has exited. No host
//! path is involved, so the dispatcher works from inside a container that only shares the
//! engine's socket.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::errors::Error as EngineError;
use bollard::models::{ContainerCreateBody, ContainerState};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder,
    DownloadFromContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    ListVolumesOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::oneshot;

use super::archive::{self, capture, AbortOnDrop, Capped, Collected};
use super::cleanup::Created;
use super::config::{holder_config, job_config, work_volume};
use super::{
    validate, ContainerRuntime, JobSpec, Limits, Outcome, RunResult, SandboxError, SANDBOX_LABEL,
};

/// How long to wait for a killed container to stop, and for its output stream to end.
const GRACE: Duration = Duration::from_secs(10);

/// The sandbox on a local Docker engine (`DOCKER_HOST` honoured, API version negotiated).
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    pub(super) docker: Docker,
}

/// Maps an engine client error: connection problems are transient, the rest is not.
pub(super) fn engine_error(what: &str, e: EngineError) -> SandboxError {
    match e {
        EngineError::SocketNotFoundError(_)
        | EngineError::IOError { .. }
        | EngineError::HyperResponseError { .. }
        | EngineError::HyperLegacyError { .. }
        | EngineError::RequestTimeoutError
        | EngineError::UnsupportedURISchemeError { .. }
        | EngineError::DockerResponseServerError {
            status_code: 503, ..
        } => SandboxError::Unavailable(format!("{what}: {e}")),
        EngineError::DockerResponseServerError {
            status_code: 400,
            message,
        } => SandboxError::InvalidJob(format!("{what}: {message}")),
        other => SandboxError::Failed(format!("{what}: {other}")),
    }
}

fn is_status(e: &EngineError, codes: &[u16]) -> bool {
    matches!(e, EngineError::DockerResponseServerError { status_code, .. } if codes.contains(status_code))
}

impl DockerRuntime {
    /// Connects to the local engine (`DOCKER_HOST`, else `/var/run/docker.sock`) and negotiates
    /// the API version, so that an older engine (20.10 speaks 1.41) is spoken to in its version.
    pub async fn connect() -> Result<Self, SandboxError> {
        let docker = Docker::connect_with_defaults().map_err(|e| engine_error("connecting", e))?;
        Self::negotiated(docker).await
    }

    /// Connects to an explicit engine address (`unix:///path` or `tcp://host:port`).
    pub async fn connect_to(host: &str) -> Result<Self, SandboxError> {
        let docker = Docker::connect_with_host(host).map_err(|e| engine_error("connecting", e))?;
        Self::negotiated(docker).await
    }

    async fn negotiated(docker: Docker) -> Result<Self, SandboxError> {
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| engine_error("negotiating the API version", e))?;
        Ok(Self { docker })
    }

    /// The API version in use after negotiation (e.g. `1.41`).
    pub fn api_version(&self) -> String {
        self.docker.client_version().to_string()
    }

    /// Ids of the containers (running or not) carrying the label `key=value`: how leftovers of
    /// a job are found, and how tests prove that none are left.
    pub async fn containers_with_label(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<String>, SandboxError> {
        let filters = HashMap::from([("label", vec![format!("{key}={value}")])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let found = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| engine_error("listing containers", e))?;
        Ok(found.into_iter().filter_map(|c| c.id).collect())
    }

    /// Names of the volumes carrying the label `key=value`.
    pub async fn volumes_with_label(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<String>, SandboxError> {
        let filters = HashMap::from([("label", vec![format!("{key}={value}")])]);
        let options = ListVolumesOptionsBuilder::new().filters(&filters).build();
        let found = self
            .docker
            .list_volumes(Some(options))
            .await
            .map_err(|e| engine_error("listing volumes", e))?;
        Ok(found
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect())
    }

    /// The image's id (`sha256:...`), or `ImageMissing`: images are built locally, never pulled,
    /// so a dispatcher can check at start-up that its image is there.
    pub async fn image_id(&self, image: &str) -> Result<String, SandboxError> {
        match self.docker.inspect_image(image).await {
            Ok(found) => found
                .id
                .ok_or_else(|| SandboxError::Failed(format!("image {image} has no id"))),
            Err(e) if is_status(&e, &[404]) => Err(SandboxError::ImageMissing(image.to_string())),
            Err(e) => Err(engine_error("inspecting the image", e)),
        }
    }

    async fn create(
        &self,
        name: &str,
        config: ContainerCreateBody,
        created: &mut Created,
    ) -> Result<String, SandboxError> {
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        let id = self
            .docker
            .create_container(Some(options), config)
            .await
            .map_err(|e| engine_error("creating a container", e))?
            .id;
        created.containers.push(id.clone());
        Ok(id)
    }

    /// Waits until the container is not running (any exit code).
    async fn wait_exit(&self, id: &str) -> Result<(), SandboxError> {
        let mut waiting = self.docker.wait_container(id, None);
        match waiting.next().await {
            Some(Ok(_)) | Some(Err(EngineError::DockerContainerWaitError { .. })) => Ok(()),
            Some(Err(e)) => Err(engine_error("waiting for the job", e)),
            None => Err(SandboxError::Unavailable(
                "the engine closed the wait without an exit status".into(),
            )),
        }
    }

    async fn kill(&self, id: &str) -> Result<(), SandboxError> {
        let options = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
        match self.docker.kill_container(id, Some(options)).await {
            // 409: it stopped on its own meanwhile.
            Err(e) if !is_status(&e, &[404, 409]) => Err(engine_error("killing the job", e)),
            _ => Ok(()),
        }
    }

    /// Reads `/work/out` back through the holder; none at all (the job removed it) is no files.
    async fn outputs(&self, holder: &str, limits: &Limits) -> Result<Collected, SandboxError> {
        let options = DownloadFromContainerOptionsBuilder::new()
            .path("/work/out")
            .build();
        let mut stream = self.docker.download_from_container(holder, Some(options));
        let first = match stream.next().await {
            None => return Ok(Collected::default()),
            Some(Err(e)) if is_status(&e, &[404]) => return Ok(Collected::default()),
            Some(Err(e)) => return Err(engine_error("reading /work/out", e)),
            Some(Ok(chunk)) => chunk,
        };
        let stream = futures_util::stream::iter([Ok(first)]).chain(stream);
        archive::collect_outputs(
            stream,
            "out",
            limits.output_max_files,
            limits.output_max_bytes,
        )
        .await
    }

    /// The container's state as the engine reports it now.
    pub(super) async fn state(&self, id: &str) -> Result<ContainerState, SandboxError> {
        Ok(self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| engine_error("inspecting a container", e))?
            .state
            .unwrap_or_default())
    }

    async fn execute(
        &self,
        spec: &JobSpec,
        image_id: &str,
        name: &str,
        input: bytes::Bytes,
        created: &mut Created,
    ) -> Result<RunResult, SandboxError> {
        let labels = |role: &str| {
            let mut labels: HashMap<String, String> = spec.labels.iter().cloned().collect();
            labels.insert(SANDBOX_LABEL.into(), role.into());
            labels.insert(format!("{SANDBOX_LABEL}-run"), name.into());
            labels
        };
        let volume = format!("{name}-work");
        let request = work_volume(&volume, spec.limits.work_mb, labels("work"));
        self.docker
            .create_volume(request)
            .await
            .map_err(|e| engine_error("creating the /work volume", e))?;
        created.volume = Some(volume.clone());

        let holder_config = holder_config(image_id, &volume, labels("holder"));
        let holder = self
            .create(&format!("{name}-holder"), holder_config, created)
            .await?;
        self.docker
            .start_container(&holder, None)
            .await
            .map_err(|e| engine_error("starting the /work holder", e))?;
        let upload = UploadToContainerOptionsBuilder::new().path("/work").build();
        self.docker
            .upload_to_container(&holder, Some(upload), bollard::body_full(input))
            .await
            .map_err(|e| engine_error("copying the input files into /work", e))?;

        let job = self
            .create(
                name,
                job_config(spec, image_id, &volume, labels("job")),
                created,
            )
            .await?;
        let attach = AttachContainerOptionsBuilder::new()
            .stream(true)
            .stdout(true)
            .stderr(true)
            .build();
        let attached = self
            .docker
            .attach_container(&job, Some(attach))
            .await
            .map_err(|e| engine_error("attaching to the job", e))?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let mut capture = AbortOnDrop(tokio::spawn(capture(
            attached.output,
            attached.input,
            Capped::new(spec.limits.stdout_max_bytes),
            Capped::new(spec.limits.stderr_max_bytes),
            stop_rx,
        )));

        let (oom_event, _oom_watch) = self.watch_oom(&job);
        self.docker
            .start_container(&job, None)
            .await
            .map_err(|e| engine_error("starting the job", e))?;
        let started = Instant::now();
        let timed_out = match tokio::time::timeout(spec.limits.timeout, self.wait_exit(&job)).await
        {
            Ok(waited) => {
                waited?;
                false
            }
            Err(_) => {
                self.kill(&job).await?;
                tokio::time::timeout(GRACE, self.wait_exit(&job))
                    .await
                    .map_err(|_| {
                        SandboxError::Failed("the job did not stop after a kill".into())
                    })??;
                true
            }
        };
        let duration = started.elapsed();

        // The stream ends with the container; the stop signal only guards against a stuck one.
        let captured = match tokio::time::timeout(GRACE, &mut capture.0).await {
            Ok(done) => done,
            Err(_) => {
                let _ = stop_tx.send(());
                (&mut capture.0).await
            }
        };
        let ((stdout, stdout_truncated), (stderr, stderr_truncated)) =
            captured.map_err(|e| SandboxError::Failed(format!("output capture stopped: {e}")))?;

        let state = self.state(&job).await?;
        let exit_code = state.exit_code;
        let oom = !timed_out
            && (state.oom_killed == Some(true)
                || self.oom_killed(&job, exit_code, oom_event).await?);
        let outcome = if timed_out {
            Outcome::Timeout
        } else if oom && exit_code != Some(0) {
            Outcome::Oom
        } else if exit_code == Some(0) {
            Outcome::Succeeded
        } else {
            Outcome::Failed
        };
        // Without its holder, /work was unmounted when the job exited: the outputs are gone.
        let holder_state = self.state(&holder).await?;
        if holder_state.running != Some(true) {
            return Err(SandboxError::Unavailable(format!(
                "the /work holder stopped during the run (exit code {:?}, error {:?})",
                holder_state.exit_code, holder_state.error
            )));
        }
        let outputs = self.outputs(&holder, &spec.limits).await?;
        Ok(RunResult {
            outcome,
            exit_code,
            duration,
            stdout,
            stdout_truncated,
            stderr,
            stderr_truncated,
            outputs: outputs.files,
            outputs_truncated: outputs.truncated,
            image_digest: Some(image_id.to_string()),
            limits: spec.limits.clone(),
        })
    }
}

#[async_trait::async_trait]
impl ContainerRuntime for DockerRuntime {
    async fn run(&self, spec: &JobSpec) -> Result<RunResult, SandboxError> {
        validate::check(spec)?;
        let input = archive::input_tar(&spec.files)?;
        let image_id = self.image_id(&spec.image).await?;
        let name = format!("mecapy-sbx-{}", uuid::Uuid::new_v4().simple());
        let mut created = Created::new(self.docker.clone());
        let result = self
            .execute(spec, &image_id, &name, input, &mut created)
            .await;
        created.release().await;
        match &result {
            Ok(r) => tracing::info!(
                container = %name,
                outcome = ?r.outcome,
                exit_code = ?r.exit_code,
                duration_ms = r.duration.as_millis() as u64,
                outputs = r.outputs.len(),
                "sandbox run finished"
            ),
            Err(e) => tracing::warn!(container = %name, error = %e, "sandbox run failed"),
        }
        result
    }

    async fn ping(&self) -> Result<(), SandboxError> {
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| SandboxError::Unavailable(format!("ping: {e}")))
    }
}
