//! The engine-side configuration of a run: the `/work` volume, the container that keeps it
//! mounted and the job's command exec'd into that container. Every restriction of the sandbox
//! is here, and so is what bounds a run when nobody watches it any more:
//!
//! - the job's command runs under `timeout -s KILL {limit}` inside the container, so the wall
//!   clock holds even if the dispatcher is gone;
//! - the container's own process is `sleep {limit + HOLDER_GRACE}`: when it ends, PID 1 (the
//!   engine's init) exits, the kernel kills whatever is left in the container, and the engine
//!   removes the container and its `/work` (`AutoRemove`);
//! - its labels carry its deadline, so the reaper removes one that was never started or that
//!   the engine failed to remove.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, ExecConfig, HostConfig, HostConfigLogConfig, Mount, MountType,
    MountVolumeOptions, MountVolumeOptionsDriverConfig, ResourcesUlimits,
};

use super::JobSpec;

const MIB: i64 = 1024 * 1024;
/// The sandbox user (non-root), also the owner of `/work`.
const USER: &str = "1000:1000";
/// The container's own processes (init and `sleep`): root, but with no capability at all.
const KEEPER_USER: &str = "0:0";
/// Files allowed in `/work` and in `/tmp` each: inodes cost kernel memory that the size limit
/// alone does not bound.
const INODES: u32 = 16384;
/// How long a job's container outlives the job's wall-clock limit: room to copy the inputs in
/// before the command starts and the outputs out after it ends. The container cannot live longer.
pub const HOLDER_GRACE: Duration = Duration::from_secs(3);
/// Label holding the Unix time (seconds) after which the container must be gone.
pub const DEADLINE_LABEL: &str = "org.mecapy.sandbox-deadline";

/// Seconds for `sleep` and `timeout`, rounded up to the millisecond.
fn seconds(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() + 0.000_5)
}

/// `/work`: an anonymous tmpfs-backed local volume of `size_mb`, owned by the sandbox user. It is
/// created with the container and removed with it.
fn work_mount(size_mb: i64, labels: HashMap<String, String>) -> Mount {
    let options =
        format!("size={size_mb}m,nr_inodes={INODES},uid=1000,gid=1000,mode=0755,nosuid,nodev");
    Mount {
        target: Some("/work".into()),
        typ: Some(MountType::VOLUME),
        read_only: Some(false),
        volume_options: Some(MountVolumeOptions {
            labels: Some(labels),
            driver_config: Some(MountVolumeOptionsDriverConfig {
                name: Some("local".into()),
                options: Some(HashMap::from([
                    ("type".into(), "tmpfs".into()),
                    ("device".into(), "tmpfs".into()),
                    ("o".into(), options),
                ])),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Restrictions of the job's container.
fn locked_down(work: Mount) -> HostConfig {
    HostConfig {
        network_mode: Some("none".into()),
        readonly_rootfs: Some(true),
        privileged: Some(false),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        mounts: Some(vec![work]),
        // Output is streamed to the dispatcher (and capped there), never stored by the engine.
        log_config: Some(HostConfigLogConfig {
            typ: Some("none".into()),
            config: None,
        }),
        ulimits: Some(vec![ResourcesUlimits {
            name: Some("core".into()),
            soft: Some(0),
            hard: Some(0),
        }]),
        ..Default::default()
    }
}

pub(super) fn job_config(
    spec: &JobSpec,
    image: &str,
    labels: HashMap<String, String>,
    work_labels: HashMap<String, String>,
) -> ContainerCreateBody {
    let limits = &spec.limits;
    let memory = limits.memory_mb.saturating_mul(MIB);
    ContainerCreateBody {
        image: Some(image.into()),
        // The container itself only keeps `/work` mounted, for the job's limit and a grace; the
        // job is exec'd into it.
        entrypoint: Some(vec!["sleep".into()]),
        cmd: Some(vec![seconds(limits.timeout + HOLDER_GRACE)]),
        // Root without any capability: the job (uid 1000) cannot signal it, so it cannot lose
        // `/work` by stopping the container. The job itself runs as [`USER`], see [`job_exec`].
        user: Some(KEEPER_USER.into()),
        env: Some(vec![]),
        working_dir: Some("/work".into()),
        network_disabled: Some(true),
        attach_stdin: Some(false),
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        open_stdin: Some(false),
        tty: Some(false),
        labels: Some(labels),
        host_config: Some(HostConfig {
            memory: Some(memory),
            memory_swap: Some(memory),
            nano_cpus: Some((limits.cpus * 1e9) as i64),
            pids_limit: Some(limits.pids_limit),
            tmpfs: Some(HashMap::from([(
                "/tmp".into(),
                format!(
                    "rw,noexec,nosuid,nodev,size={}m,nr_inodes={INODES},mode=1777",
                    limits.tmp_mb
                ),
            )])),
            // A real PID 1 that reaps zombies and dies with the job.
            init: Some(true),
            // Under host memory pressure, jobs go before anything else.
            oom_score_adj: Some(500),
            // Once its process ends (at the latest limit + grace), the engine removes it and
            // its `/work`, whether or not a dispatcher is still there to do it.
            auto_remove: Some(true),
            ..locked_down(work_mount(limits.work_mb, work_labels))
        }),
        ..Default::default()
    }
}

/// The job's command, exec'd in its running container: as the sandbox user, in `/work`, with
/// the spec's environment only (the container's own is empty). An exec'd process is in the
/// container's cgroups and namespaces and gets its capabilities (none), `no-new-privileges` and
/// OOM score.
///
/// The command runs under coreutils' `timeout`, which kills its process group at the limit even
/// when the dispatcher is gone (the image must provide `timeout`; a job that kills it still ends
/// with its container).
pub(super) fn job_exec(spec: &JobSpec) -> ExecConfig {
    let mut cmd = vec![
        "timeout".to_string(),
        "-s".into(),
        "KILL".into(),
        seconds(spec.limits.timeout),
    ];
    cmd.extend(spec.command.iter().cloned());
    ExecConfig {
        cmd: Some(cmd),
        user: Some(USER.into()),
        working_dir: Some("/work".into()),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        attach_stdin: Some(false),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        privileged: Some(false),
        ..Default::default()
    }
}

/// Kills every process of the sandbox user in the container (`kill(-1)` spares the caller and
/// PID 1), e.g. at the job's timeout.
pub(super) fn kill_exec() -> ExecConfig {
    ExecConfig {
        cmd: Some(vec!["sh".into(), "-c".into(), "kill -KILL -1".into()]),
        user: Some(USER.into()),
        working_dir: Some("/".into()),
        env: Some(vec![]),
        attach_stdin: Some(false),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        privileged: Some(false),
        ..Default::default()
    }
}
