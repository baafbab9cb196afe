//! The engine-side configuration of a run: the `/work` volume, the container that keeps it
//! mounted and the job's command exec'd into that container. The restrictions themselves come
//! from [`Restrictions`] (the ECS mapping translates the same ones); this is what bounds a run
//! on the engine when nobody watches it any more:
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

use super::restrictions::{Restrictions, USER};
use super::JobSpec;

/// The container's own processes (init and `sleep`): root, but with no capability at all.
const KEEPER_USER: &str = "0:0";
/// How long a job's container outlives the job's wall-clock limit: room to copy the inputs in
/// before the command starts and the outputs out after it ends. The container cannot live longer.
pub const HOLDER_GRACE: Duration = Duration::from_secs(3);
/// Label holding the Unix time (seconds) after which the container must be gone.
pub const DEADLINE_LABEL: &str = "org.mecapy.sandbox-deadline";

/// `/work`: an anonymous tmpfs-backed local volume, owned by the sandbox user. It is created
/// with the container and removed with it.
fn work_mount(r: &Restrictions, labels: HashMap<String, String>) -> Mount {
    Mount {
        target: Some(r.work.path.into()),
        typ: Some(MountType::VOLUME),
        read_only: Some(false),
        volume_options: Some(MountVolumeOptions {
            labels: Some(labels),
            driver_config: Some(MountVolumeOptionsDriverConfig {
                name: Some("local".into()),
                options: Some(HashMap::from([
                    ("type".into(), "tmpfs".into()),
                    ("device".into(), "tmpfs".into()),
                    ("o".into(), r.work.mount_options()),
                ])),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The restrictions as the engine's host configuration.
fn host_config(r: &Restrictions, work_labels: HashMap<String, String>) -> HostConfig {
    HostConfig {
        network_mode: Some(if r.network { "bridge" } else { "none" }.into()),
        readonly_rootfs: Some(r.read_only_root),
        privileged: Some(false),
        cap_drop: Some(
            r.capabilities_dropped
                .iter()
                .map(|c| c.to_string())
                .collect(),
        ),
        security_opt: r
            .no_new_privileges
            .then(|| vec!["no-new-privileges".into()]),
        memory: Some(r.memory_bytes()),
        memory_swap: Some(r.memory_bytes()),
        nano_cpus: Some(r.nano_cpus()),
        pids_limit: Some(r.pids),
        tmpfs: Some(HashMap::from([(r.tmp.path.into(), r.tmp.mount_options())])),
        mounts: Some(vec![work_mount(r, work_labels)]),
        // A real PID 1 that reaps zombies and dies with the job.
        init: Some(r.init),
        ulimits: Some(vec![ResourcesUlimits {
            name: Some("core".into()),
            soft: Some(r.core_dump_bytes),
            hard: Some(r.core_dump_bytes),
        }]),
        // Output is streamed to the dispatcher (and capped there), never stored by the engine.
        log_config: Some(HostConfigLogConfig {
            typ: Some("none".into()),
            config: None,
        }),
        // Under host memory pressure, jobs go before anything else.
        oom_score_adj: Some(500),
        // Once its process ends (at the latest limit + grace), the engine removes it and its
        // `/work`, whether or not a dispatcher is still there to do it.
        auto_remove: Some(true),
        ..Default::default()
    }
}

pub(super) fn job_config(
    spec: &JobSpec,
    image: &str,
    labels: HashMap<String, String>,
    work_labels: HashMap<String, String>,
) -> ContainerCreateBody {
    let r = Restrictions::of(&spec.limits);
    ContainerCreateBody {
        image: Some(image.into()),
        // The container itself only keeps `/work` mounted, for the job's limit and a grace; the
        // job is exec'd into it.
        entrypoint: Some(vec!["sleep".into()]),
        cmd: Some(vec![Restrictions::seconds(r.timeout + HOLDER_GRACE)]),
        // Root without any capability: the job (uid 1000) cannot signal it, so it cannot lose
        // `/work` by stopping the container. The job itself runs as [`USER`], see [`job_exec`].
        user: Some(KEEPER_USER.into()),
        env: Some(vec![]),
        working_dir: Some("/work".into()),
        network_disabled: Some(!r.network),
        attach_stdin: Some(false),
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        open_stdin: Some(false),
        tty: Some(false),
        labels: Some(labels),
        host_config: Some(host_config(&r, work_labels)),
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
    let r = Restrictions::of(&spec.limits);
    let env = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    exec(r.timed(&spec.command), r.user, "/work", env)
}

/// An exec of `cmd` as `user` in `dir` with exactly `env`: its output attached, no stdin, no
/// terminal, never privileged.
fn exec(cmd: Vec<String>, user: &str, dir: &str, env: Vec<String>) -> ExecConfig {
    ExecConfig {
        cmd: Some(cmd),
        user: Some(user.into()),
        working_dir: Some(dir.into()),
        env: Some(env),
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
    let cmd = vec!["sh".into(), "-c".into(), "kill -KILL -1".into()];
    exec(cmd, USER, "/", vec![])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restrictions::tests::{off_default_limits, TIMED_MAIN};
    use crate::Limits;

    fn spec(limits: Limits) -> JobSpec {
        JobSpec {
            image: "img".into(),
            command: vec!["python3".into(), "/work/main.py".into()],
            files: vec![],
            env: vec![("A".into(), "b".into())],
            limits,
            labels: vec![],
        }
    }

    /// Field by field: the engine applies exactly the [`Restrictions`] of the limits (the ECS
    /// mapping has the same test against the same values).
    #[test]
    fn the_engine_applies_the_restrictions_field_by_field() {
        let limits = off_default_limits();
        let r = Restrictions::of(&limits);
        let config = job_config(&spec(limits.clone()), "img", HashMap::new(), HashMap::new());
        let host = config.host_config.clone().unwrap();
        assert_eq!(host.memory, Some(300 * 1024 * 1024));
        assert_eq!(
            host.memory_swap, host.memory,
            "no swap beyond the memory limit"
        );
        assert_eq!(host.nano_cpus, Some(750_000_000));
        assert_eq!(host.pids_limit, Some(r.pids));
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(config.network_disabled, Some(true));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.privileged, Some(false));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges".to_string()])
        );
        assert_eq!(host.init, Some(true));
        let core = &host.ulimits.as_ref().unwrap()[0];
        assert_eq!(
            (core.name.as_deref(), core.soft, core.hard),
            (Some("core"), Some(0), Some(0))
        );
        assert_eq!(
            host.tmpfs.as_ref().unwrap()["/tmp"],
            "size=16m,rw,noexec,mode=1777,nr_inodes=16384,nosuid,nodev"
        );
        let work = &host.mounts.as_ref().unwrap()[0];
        assert_eq!(work.target.as_deref(), Some("/work"));
        let options = work
            .volume_options
            .as_ref()
            .and_then(|v| v.driver_config.as_ref())
            .and_then(|d| d.options.as_ref())
            .unwrap();
        assert_eq!(options["type"], "tmpfs");
        assert_eq!(options["o"], r.work.mount_options());
        assert!(options["o"].starts_with("size=32m,"));

        let exec = job_exec(&spec(limits));
        assert_eq!(exec.user.as_deref(), Some("1000:1000"));
        assert_eq!(exec.cmd.unwrap(), TIMED_MAIN);
        assert_eq!(exec.env.unwrap(), ["A=b"]);
        assert_eq!(exec.privileged, Some(false));
    }
}
