//! The sandbox's [`Restrictions`] as Amazon ECS expresses them (API shapes, as
//! `RegisterTaskDefinition` and `RunTask` take them): the job's container definition in its
//! tool's task definition, the task-scoped `/work` volume, and the per-job container override.
//!
//! What ECS has no field for: a process cap (set `ECS_TASK_PIDS_LIMIT` in the container
//! instances' agent configuration: the agent applies it to each task's cgroup), and an OOM score.

use serde_json::{json, Value};

use super::Restrictions;

mod events;
pub use events::{TaskEnd, TaskStateChange};

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
/// The task volume holding `/work`, shared with the staging containers.
pub const WORK_VOLUME: &str = "work";

/// The job container's definition: every restriction that a task definition fixes.
pub fn container_definition(r: &Restrictions, image: &str) -> Value {
    json!({
        "name": SANDBOX_CONTAINER,
        "image": image,
        "essential": true,
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

/// The task definition's own part: no network at all, and `/work` as a task-scoped tmpfs
/// volume of the job's size (the same local-driver tmpfs as on the Docker engine).
pub fn task_definition(r: &Restrictions, family: &str, image: &str) -> Value {
    json!({
        "family": family,
        "networkMode": if r.network { "bridge" } else { "none" },
        "requiresCompatibilities": ["EC2"],
        "containerDefinitions": [container_definition(r, image)],
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

/// `RunTask`'s override of the job container: its command under the in-container wall clock,
/// its environment, and the limits a tool may set per job.
pub fn container_override(r: &Restrictions, command: &[String], env: &[(String, String)]) -> Value {
    json!({
        "name": SANDBOX_CONTAINER,
        "command": r.timed(command),
        "environment": env
            .iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect::<Vec<_>>(),
        "memory": r.memory_mib,
        "cpu": r.cpu_units(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::Limits;

    /// Field by field: ECS is given exactly the [`Restrictions`] of the limits, the same values
    /// the Docker engine's configuration test checks.
    #[test]
    fn ecs_applies_the_restrictions_field_by_field() {
        let limits = Limits {
            memory_mb: 300,
            cpus: 0.75,
            pids_limit: 40,
            tmp_mb: 16,
            work_mb: 32,
            ..Limits::default()
        };
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

        let task = task_definition(&r, "mecapy-python", "img");
        assert_eq!(task["networkMode"], "none");
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
        assert_eq!(
            o["command"],
            json!([
                "timeout",
                "-s",
                "KILL",
                "30.000",
                "python3",
                "/work/main.py"
            ])
        );
        assert_eq!(o["environment"], json!([{"name": "A", "value": "b"}]));
        assert_eq!(
            (o["memory"].clone(), o["cpu"].clone()),
            (json!(300), json!(768))
        );
    }
}
