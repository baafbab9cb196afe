//! The sandbox's [`Restrictions`] as Amazon ECS expresses them (API shapes, as
//! `RegisterTaskDefinition` and `RunTask` take them): the job's container definition in its
//! tool's task definition, the task-scoped `/work` volume, and the per-job container override.
//!
//! What ECS has no field for: a process cap (set `ECS_TASK_PIDS_LIMIT` in the container
//! instances' agent configuration: the agent applies it to each task's cgroup), and an OOM score.

use serde_json::{json, Value};

use super::restrictions::{CAPABILITIES_DROPPED, USER};
use super::Restrictions;
use crate::stager::streams_to_files;

mod events;
mod launch;
pub use events::{ContainerState, TaskEnd, TaskStateChange, TIMEOUT_REASON};
pub use launch::{EcsLauncher, LaunchError, Launched, TaskRequest, STAGE_URL_ENV};

/// The container that holds the task's `/work` volume mounted for the task's whole life: a
/// tmpfs volume of the engine's local driver is unmounted, and its files lost, as soon as no
/// running container mounts it, and the task's other containers run one after the other.
pub const HOLD_CONTAINER: &str = "hold";
/// The job's container in the task definition.
pub const SANDBOX_CONTAINER: &str = "sandbox";
/// The container that fetches the code and inputs into `/work` before the job (network on, no
/// AWS credentials: presigned URLs only).
pub const STAGE_IN_CONTAINER: &str = "stage-in";
/// The container that uploads stdout, stderr and `/work/out` after the job.
pub const STAGE_OUT_CONTAINER: &str = "stage-out";
/// `RunTask`'s `startedBy` of a job's task: how its end event names the job.
pub fn started_by(job: uuid::Uuid) -> String {
    format!("mecapy/{job}")
}
/// What a staging container needs of memory for itself (the stager holds one file at a time).
pub const STAGER_MEMORY_MIB: i64 = 64;
/// The task volume holding `/work`, shared with the staging containers.
pub const WORK_VOLUME: &str = "work";

/// The job container's definition: every restriction that a task definition fixes.
pub fn container_definition(r: &Restrictions, image: &str) -> Value {
    json!({
        "name": SANDBOX_CONTAINER,
        "image": image,
        // The task ends with stage-out, which runs once the job has exited, whatever its code.
        "essential": false,
        "dependsOn": [{"containerName": STAGE_IN_CONTAINER, "condition": "SUCCESS"}],
        "user": r.user,
        "memory": r.memory_mib,
        "cpu": r.cpu_units(),
        "readonlyRootFilesystem": r.read_only_root,
        "privileged": false,
        "disableNetworking": !r.network,
        "dockerSecurityOptions": if r.no_new_privileges { vec!["no-new-privileges"] } else { vec![] },
        "workingDirectory": r.work.path,
        "linuxParameters": {
            "capabilities": {"drop": r.capabilities_dropped},
            "initProcessEnabled": r.init,
            "maxSwap": 0,
            "swappiness": 0,
            "tmpfs": [{
                "containerPath": r.tmp.path,
                "size": r.tmp.size_mib,
                "mountOptions": r.tmp.options,
            }],
        },
        "ulimits": [{"name": "core", "softLimit": r.core_dump_bytes, "hardLimit": r.core_dump_bytes}],
        "mountPoints": [{"sourceVolume": WORK_VOLUME, "containerPath": r.work.path, "readOnly": false}],
    })
}

/// A staging container: the project's small stager image, the network it needs to reach S3
/// through presigned URLs (and no AWS credentials: the task has no role), as the sandbox user,
/// with nothing else. `memory_mib`: its own needs, plus what it writes to the `/work` tmpfs
/// (tmpfs pages count against the memory of the container that writes them).
fn staging_definition(
    name: &str,
    stager_image: &str,
    work_read_only: bool,
    memory_mib: i64,
) -> Value {
    json!({
        "name": name,
        "image": stager_image,
        "command": [name],
        "user": USER,
        "memory": memory_mib,
        // They run before and after the job, never beside it: the task's CPU is the job's.
        "cpu": 0,
        "readonlyRootFilesystem": true,
        "privileged": false,
        "dockerSecurityOptions": ["no-new-privileges"],
        "linuxParameters": {"capabilities": {"drop": CAPABILITIES_DROPPED}, "initProcessEnabled": true},
        "mountPoints": [{"sourceVolume": WORK_VOLUME, "containerPath": "/work", "readOnly": work_read_only}],
    })
}

/// A tool's task definition: the holder of `/work`, then stage-in, the job, stage-out, one after
/// the other, sharing `/work` as a task-scoped tmpfs volume of the job's size (the same
/// local-driver tmpfs as on the Docker engine). The task ends when stage-out (essential) exits. The task is on the bridge network because the staging containers need it; the job's
/// container has networking disabled.
pub fn task_definition(r: &Restrictions, family: &str, image: &str, stager_image: &str) -> Value {
    let mut hold = staging_definition(HOLD_CONTAINER, stager_image, true, STAGER_MEMORY_MIB);
    hold["essential"] = json!(false);
    hold["disableNetworking"] = json!(true);
    let mut stage_in = staging_definition(
        STAGE_IN_CONTAINER,
        stager_image,
        false,
        STAGER_MEMORY_MIB + r.work.size_mib,
    );
    stage_in["essential"] = json!(false);
    stage_in["dependsOn"] = json!([{"containerName": HOLD_CONTAINER, "condition": "START"}]);
    let mut stage_out =
        staging_definition(STAGE_OUT_CONTAINER, stager_image, true, STAGER_MEMORY_MIB);
    stage_out["essential"] = json!(true);
    stage_out["dependsOn"] = json!([{"containerName": SANDBOX_CONTAINER, "condition": "COMPLETE"}]);
    json!({
        "family": family,
        // On EC2 a container's `cpu` is a share; the task's is the hard limit (its cgroup).
        "cpu": r.cpu_units().to_string(),
        "networkMode": "bridge",
        "requiresCompatibilities": ["EC2"],
        "containerDefinitions": [hold, stage_in, container_definition(r, image), stage_out],
        "volumes": [{
            "name": WORK_VOLUME,
            "dockerVolumeConfiguration": {
                "scope": "task",
                "driver": "local",
                "driverOpts": {"type": "tmpfs", "device": "tmpfs", "o": r.work.mount_options()},
            },
        }],
    })
}

/// `RunTask`'s override of the job container: its command under the in-container wall clock
/// with its streams written to the task volume (for stage-out), its environment, and the
/// limits a tool may set per job.
pub fn container_override(
    r: &Restrictions,
    command: &[String],
    env: &[(String, String)],
) -> aws_sdk_ecs::types::ContainerOverride {
    let env = env
        .iter()
        .map(|(name, value)| {
            aws_sdk_ecs::types::KeyValuePair::builder()
                .name(name)
                .value(value)
                .build()
        })
        .collect();
    aws_sdk_ecs::types::ContainerOverride::builder()
        .name(SANDBOX_CONTAINER)
        .set_command(Some(streams_to_files(&r.timed(command))))
        .set_environment(Some(env))
        .memory(r.memory_mib as i32)
        .cpu(r.cpu_units() as i32)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restrictions::tests::{off_default_limits, TIMED_MAIN};

    /// Field by field: ECS is given exactly the [`Restrictions`] of the limits, the same values
    /// the Docker engine's configuration test checks.
    #[test]
    fn ecs_applies_the_restrictions_field_by_field() {
        let limits = off_default_limits();
        let r = Restrictions::of(&limits);
        let c = container_definition(&r, "img");
        assert_eq!(c["memory"], 300, "hard limit, MiB");
        assert_eq!(
            c["linuxParameters"]["maxSwap"], 0,
            "no swap beyond the memory limit"
        );
        assert_eq!(c["cpu"], 768, "0.75 vCPU");
        assert_eq!(c["disableNetworking"], true);
        assert_eq!(c["readonlyRootFilesystem"], true);
        assert_eq!(c["privileged"], false);
        assert_eq!(c["linuxParameters"]["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(c["dockerSecurityOptions"], json!(["no-new-privileges"]));
        assert_eq!(c["linuxParameters"]["initProcessEnabled"], true);
        assert_eq!(c["user"], "1000:1000");
        assert_eq!(
            c["ulimits"],
            json!([{"name": "core", "softLimit": 0, "hardLimit": 0}])
        );
        let tmp = &c["linuxParameters"]["tmpfs"][0];
        assert_eq!(tmp["containerPath"], "/tmp");
        assert_eq!(tmp["size"], 16);
        assert_eq!(
            tmp["mountOptions"],
            json!([
                "rw",
                "noexec",
                "mode=1777",
                "nr_inodes=16384",
                "nosuid",
                "nodev"
            ])
        );
        assert_eq!(c["mountPoints"][0]["containerPath"], "/work");

        let task = task_definition(&r, "mecapy-python", "img", "stager");
        assert_eq!(task["networkMode"], "bridge", "for the staging containers");
        assert_eq!(task["cpu"], "768", "the task's hard CPU limit");
        let names: Vec<_> = task["containerDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["hold", "stage-in", "sandbox", "stage-out"]);
        let defs = &task["containerDefinitions"];
        assert_eq!(defs[2], c, "the job's container as defined");
        assert_eq!(defs[0]["disableNetworking"], true, "the holder only holds");
        assert_eq!(defs[1]["dependsOn"][0]["condition"], "START");
        assert_eq!(defs[1]["memory"], 64 + 32, "stage-in writes /work");
        assert_eq!(c["dependsOn"][0]["condition"], "SUCCESS");
        assert_eq!(defs[3]["essential"], true);
        let work = &task["volumes"][0]["dockerVolumeConfiguration"];
        assert_eq!(work["scope"], "task");
        assert_eq!(work["driverOpts"]["type"], "tmpfs");
        assert_eq!(work["driverOpts"]["o"], r.work.mount_options());
        assert!(work["driverOpts"]["o"]
            .as_str()
            .unwrap()
            .starts_with("size=32m,"));

        let o = container_override(
            &r,
            &["python3".into(), "/work/main.py".into()],
            &[("A".into(), "b".into())],
        );
        assert_eq!(o.name(), Some(SANDBOX_CONTAINER));
        assert_eq!(
            o.command()[4..],
            TIMED_MAIN,
            "under the wall clock, its streams to /work for stage-out"
        );
        let env = &o.environment()[0];
        assert_eq!((env.name(), env.value()), (Some("A"), Some("b")));
        assert_eq!((o.memory(), o.cpu()), (Some(300), Some(768)));
    }
}
