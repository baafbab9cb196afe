//! The engine-side configuration of a run: the `/work` volume, the job container and the
//! holder container that keeps `/work` mounted. Every restriction of the sandbox is here.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType, ResourcesUlimits,
    VolumeCreateRequest,
};

use super::JobSpec;

const MIB: i64 = 1024 * 1024;
/// The sandbox user (non-root), also the owner of `/work`.
const USER: &str = "1000:1000";
/// Files allowed in `/work` and in `/tmp` each: inodes cost kernel memory that the size limit
/// alone does not bound.
const INODES: u32 = 16384;

/// A tmpfs-backed local volume of `size_mb` for `/work`, owned by the sandbox user.
pub(super) fn work_volume(
    name: &str,
    size_mb: i64,
    labels: HashMap<String, String>,
) -> VolumeCreateRequest {
    let options =
        format!("size={size_mb}m,nr_inodes={INODES},uid=1000,gid=1000,mode=0755,nosuid,nodev");
    VolumeCreateRequest {
        name: Some(name.into()),
        driver: Some("local".into()),
        driver_opts: Some(HashMap::from([
            ("type".into(), "tmpfs".into()),
            ("device".into(), "tmpfs".into()),
            ("o".into(), options),
        ])),
        labels: Some(labels),
        ..Default::default()
    }
}

/// Restrictions shared by the job and its holder.
fn locked_down(volume: &str) -> HostConfig {
    HostConfig {
        network_mode: Some("none".into()),
        readonly_rootfs: Some(true),
        privileged: Some(false),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        mounts: Some(vec![Mount {
            target: Some("/work".into()),
            source: Some(volume.into()),
            typ: Some(MountType::VOLUME),
            read_only: Some(false),
            ..Default::default()
        }]),
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

pub(super) fn holder_config(
    image: &str,
    volume: &str,
    labels: HashMap<String, String>,
) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.into()),
        entrypoint: Some(vec!["sleep".into()]),
        cmd: Some(vec!["infinity".into()]),
        user: Some(USER.into()),
        env: Some(vec![]),
        working_dir: Some("/work".into()),
        network_disabled: Some(true),
        labels: Some(labels),
        host_config: Some(HostConfig {
            // The engine's own start-up (runc init) runs inside these limits too: a holder
            // that cannot start loses /work, so they are not tight.
            memory: Some(64 * MIB),
            memory_swap: Some(64 * MIB),
            nano_cpus: Some(100_000_000),
            pids_limit: Some(32),
            ..locked_down(volume)
        }),
        ..Default::default()
    }
}

pub(super) fn job_config(
    spec: &JobSpec,
    image: &str,
    volume: &str,
    labels: HashMap<String, String>,
) -> ContainerCreateBody {
    let limits = &spec.limits;
    let memory = limits.memory_mb.saturating_mul(MIB);
    ContainerCreateBody {
        image: Some(image.into()),
        cmd: Some(spec.command.clone()),
        user: Some(USER.into()),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: Some("/work".into()),
        network_disabled: Some(true),
        attach_stdin: Some(false),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
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
            ..locked_down(volume)
        }),
        ..Default::default()
    }
}
