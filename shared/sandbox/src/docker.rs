//! [`DockerRuntime`]: the sandbox on a Docker engine, through its API only.
//!
//! `/work` is a tmpfs-backed anonymous local volume (`size=work_mb`, owned by uid 1000) of the
//! job's container. The engine unmounts such a volume, and loses its content, whenever no
//! running container uses it, so the container's own process is only `sleep infinity` (under
//! the engine's init, as root without any capability, so the job cannot stop it): the input
//! archive is extracted into `/work` once it runs, the job's command is then exec'd into it
//! (uid 1000, within the container's limits), and `/work/out` is read back after the command
//! has exited, before the container is removed with its volume. No host path is involved, so
//! the dispatcher works from inside a container that only shares the engine's socket.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::errors::Error as EngineError;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, ContainerState};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder,
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, ListVolumesOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::oneshot;
use tokio::task::{JoinError, JoinHandle};

use super::archive::{self, capture, AbortOnDrop, Capped, Collected};
use super::cleanup::Created;
use super::config::{job_config, job_exec, kill_exec, DEADLINE_LABEL, HOLDER_GRACE};
use super::{
    validate, ContainerRuntime, JobSpec, Limits, Outcome, RunResult, SandboxError, SANDBOX_LABEL,
};

/// How long to wait for a killed container to stop, and for its output stream to end.
const GRACE: Duration = Duration::from_secs(10);
/// How often the job's process is checked for an exit its output stream did not show.
const EXEC_POLL: Duration = Duration::from_millis(500);
/// How long the output of an exited job may keep coming (from a process it left behind).
const LINGER: Duration = Duration::from_secs(1);
/// How long the job's output may take to end once its processes were killed at its timeout.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// The command is killed inside the container at its limit (see [`job_exec`]); the dispatcher's
/// own timer is a fallback, a little later.
const TIMER_SLACK: Duration = Duration::from_secs(1);
/// A SIGKILL exit this close to the limit is the in-container `timeout` at work (the process
/// starts a little before the dispatcher's clock does).
const LIMIT_TOLERANCE: Duration = Duration::from_millis(250);

type Captured = ((bytes::Bytes, bool), (bytes::Bytes, bool));

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
        let found = self.labelled_containers(key, value).await?;
        Ok(found.into_iter().filter_map(|c| c.id).collect())
    }

    /// The containers (running or not) carrying the label `key=value`, as the engine lists them.
    pub(super) async fn labelled_containers(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<bollard::models::ContainerSummary>, SandboxError> {
        let filters = HashMap::from([("label", vec![format!("{key}={value}")])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        self.docker
            .list_containers(Some(options))
            .await
            .map_err(|e| engine_error("listing containers", e))
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
            // Already removed by the engine (`AutoRemove`).
            Some(Err(e)) if is_status(&e, &[404]) => Ok(()),
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

    /// Reads `/work/out` back through the job's container; none at all (the job removed it) is
    /// no files.
    async fn outputs(&self, container: &str, limits: &Limits) -> Result<Collected, SandboxError> {
        let options = DownloadFromContainerOptionsBuilder::new()
            .path("/work/out")
            .build();
        let mut stream = self
            .docker
            .download_from_container(container, Some(options));
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

    /// Waits for the job's process to exit: its output stream ends (the captured output is
    /// returned), or, should a process left in the background keep that stream open, the engine
    /// reports the exec as no longer running (then `None`: the capture is still going).
    async fn exec_done(
        &self,
        exec: &str,
        capture: &mut JoinHandle<Captured>,
    ) -> Result<Option<Result<Captured, JoinError>>, SandboxError> {
        loop {
            tokio::select! {
                done = &mut *capture => return Ok(Some(done)),
                _ = tokio::time::sleep(EXEC_POLL) => {
                    let inspected = self
                        .docker
                        .inspect_exec(exec)
                        .await
                        .map_err(|e| engine_error("inspecting the job process", e))?;
                    if inspected.running == Some(false) {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Stops a job at its timeout: kills all its processes (uid 1000) but not its container, so
    /// that `/work` and the outputs written so far are kept. If that cannot be done (no process
    /// left under the pids limit to run the kill, or the job's output does not end), the whole
    /// container is killed instead and `/work` is lost (the `bool`). Returns the capture if it
    /// ended.
    async fn stop_job(
        &self,
        job: &str,
        capture: &mut JoinHandle<Captured>,
    ) -> Result<(Option<Result<Captured, JoinError>>, bool), SandboxError> {
        let killed = tokio::time::timeout(GRACE, self.kill_processes(job)).await;
        if matches!(killed, Ok(true)) {
            if let Ok(done) = tokio::time::timeout(KILL_GRACE, &mut *capture).await {
                return Ok((Some(done), false));
            }
        }
        self.kill(job).await?;
        tokio::time::timeout(GRACE, self.wait_exit(job))
            .await
            .map_err(|_| SandboxError::Failed("the job did not stop after a kill".into()))??;
        Ok((None, true))
    }

    /// Runs `kill -KILL -1` as the sandbox user in the job's container: every process of the
    /// job dies at once (the container's own processes, root, cannot be signalled by it).
    async fn kill_processes(&self, job: &str) -> bool {
        let Ok(exec) = self.docker.create_exec(job, kill_exec()).await else {
            return false;
        };
        match self
            .docker
            .start_exec(&exec.id, Some(StartExecOptions::default()))
            .await
        {
            Ok(StartExecResults::Attached { mut output, .. }) => {
                while output.next().await.is_some() {}
            }
            _ => return false,
        }
        matches!(self.docker.inspect_exec(&exec.id).await, Ok(i) if i.exit_code == Some(0))
    }

    /// The container's state as the engine reports it now; a container the engine has already
    /// removed (`AutoRemove`, once stopped) is not running.
    pub(super) async fn state(&self, id: &str) -> Result<ContainerState, SandboxError> {
        match self.docker.inspect_container(id, None).await {
            Ok(found) => Ok(found.state.unwrap_or_default()),
            Err(e) if is_status(&e, &[404]) => Ok(ContainerState {
                running: Some(false),
                ..Default::default()
            }),
            Err(e) => Err(engine_error("inspecting a container", e)),
        }
    }

    async fn execute(
        &self,
        spec: &JobSpec,
        image_id: &str,
        name: &str,
        input: bytes::Bytes,
        created: &mut Created,
    ) -> Result<RunResult, SandboxError> {
        let deadline = SystemTime::now() + spec.limits.timeout + HOLDER_GRACE;
        let deadline = deadline
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() + 1)
            .unwrap_or(0);
        let labels = |role: &str| {
            let mut labels: HashMap<String, String> = spec.labels.iter().cloned().collect();
            labels.insert(SANDBOX_LABEL.into(), role.into());
            labels.insert(format!("{SANDBOX_LABEL}-run"), name.into());
            labels.insert(DEADLINE_LABEL.into(), deadline.to_string());
            labels
        };

        let job = self
            .create(
                name,
                job_config(spec, image_id, labels("job"), labels("work")),
                created,
            )
            .await?;
        self.docker
            .start_container(&job, None)
            .await
            .map_err(|e| engine_error("starting the job container", e))?;
        let upload = UploadToContainerOptionsBuilder::new().path("/work").build();
        self.docker
            .upload_to_container(&job, Some(upload), bollard::body_full(input))
            .await
            .map_err(|e| engine_error("copying the input files into /work", e))?;

        let (oom_event, _oom_watch) = self.watch_oom(&job);
        let exec = self
            .docker
            .create_exec(&job, job_exec(spec))
            .await
            .map_err(|e| engine_error("creating the job process", e))?
            .id;
        let (output, stdin) = match self
            .docker
            .start_exec(&exec, Some(StartExecOptions::default()))
            .await
            .map_err(|e| engine_error("starting the job process", e))?
        {
            StartExecResults::Attached { output, input } => (output, input),
            StartExecResults::Detached => {
                return Err(SandboxError::Failed(
                    "the engine started the job detached".into(),
                ))
            }
        };
        let started = Instant::now();
        let (stop_tx, stop_rx) = oneshot::channel();
        let mut capture = AbortOnDrop(tokio::spawn(capture(
            output,
            stdin,
            Capped::new(spec.limits.stdout_max_bytes),
            Capped::new(spec.limits.stderr_max_bytes),
            stop_rx,
        )));
        let timer = spec.limits.timeout + TIMER_SLACK;
        let (timed_out, captured, work_lost) =
            match tokio::time::timeout(timer, self.exec_done(&exec, &mut capture.0)).await {
                Ok(done) => (false, done?, false),
                Err(_) => {
                    let (captured, lost) = self.stop_job(&job, &mut capture.0).await?;
                    (true, captured, lost)
                }
            };
        let duration = started.elapsed();

        // The stream ends with the job's process (or with the killed container); the stop signal
        // only guards against a stuck one, or one kept open by a process left in the background.
        let captured = match captured {
            Some(done) => done,
            None => match tokio::time::timeout(LINGER, async {
                if !work_lost {
                    // The job exited and left processes behind: they die with it, as they would
                    // with a container of its own.
                    self.kill_processes(&job).await;
                }
                (&mut capture.0).await
            })
            .await
            {
                Ok(done) => done,
                Err(_) => {
                    let _ = stop_tx.send(());
                    (&mut capture.0).await
                }
            },
        };
        let ((mut stdout, stdout_truncated), (mut stderr, stderr_truncated)) =
            captured.map_err(|e| SandboxError::Failed(format!("output capture stopped: {e}")))?;

        let exit_code = if work_lost {
            Some(137)
        } else {
            self.docker
                .inspect_exec(&exec)
                .await
                .map_err(|e| engine_error("inspecting the job process", e))?
                .exit_code
        };
        let exit_code = match unstartable(exit_code, &stdout) {
            Some(code) => {
                // The engine's message, on stdout, is the job's error: it goes where a failed
                // `docker run` would put it.
                stderr = std::mem::take(&mut stdout);
                Some(code)
            }
            None => exit_code,
        };
        // Killed by the in-container `timeout` at the limit.
        let timed_out = timed_out
            || (exit_code == Some(137) && duration + LIMIT_TOLERANCE >= spec.limits.timeout);
        let oom = !timed_out && self.oom_killed(&job, exit_code, oom_event).await?;
        let outcome = if timed_out {
            Outcome::Timeout
        } else if oom && exit_code != Some(0) {
            Outcome::Oom
        } else if exit_code == Some(0) {
            Outcome::Succeeded
        } else {
            Outcome::Failed
        };
        // Once its container has stopped, /work is unmounted: the outputs are gone.
        let outputs = if work_lost {
            Collected::default()
        } else {
            // Read together: the state says whether what was read is the job's `/work`.
            let (state, outputs) = tokio::join!(self.state(&job), self.outputs(&job, &spec.limits));
            let state = state?;
            if state.running != Some(true) && outcome == Outcome::Oom {
                // The kernel went on killing in the job's cgroup, the container's own process
                // included: the run still was an OOM kill, only its outputs are lost.
                Collected::default()
            } else if state.running != Some(true) {
                return Err(SandboxError::Unavailable(format!(
                    "the job's container stopped during the run (exit code {:?}, error {:?})",
                    state.exit_code, state.error
                )));
            } else {
                outputs?
            }
        };
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

/// An exec whose command could not be started exits 126 with the engine's message on stdout.
/// Returns the exit code a `docker run` of that command gives: 127 when the program was not
/// found, 126 when it could not be executed.
fn unstartable(exit_code: Option<i64>, stdout: &[u8]) -> Option<i64> {
    const PREFIX: &[u8] = b"OCI runtime exec failed: ";
    if exit_code != Some(126) || !stdout.starts_with(PREFIX) {
        return None;
    }
    let message = String::from_utf8_lossy(stdout);
    let missing = ["no such file or directory", "executable file not found"];
    if missing.iter().any(|m| message.contains(m)) {
        Some(127)
    } else {
        Some(126)
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

    async fn reap(&self) -> Result<Vec<String>, SandboxError> {
        self.reap_expired().await
    }

    async fn cpus(&self) -> Option<usize> {
        let info = self.docker.info().await.ok()?;
        info.ncpu
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n > 0)
    }
}
