//! A job's ECS task run on the local Docker engine as the ECS agent runs it on a container
//! instance: the task definition ([`mecapy_sandbox::ecs::task_definition`]) and `RunTask`'s overrides
//! ([`mecapy_sandbox::ecs::TaskRequest::overrides`]), translated field by field into the engine's
//! configuration; the containers started in order as their `dependsOn` allow; the task's end
//! returned as its `ECS Task State Change` would carry it. moto answers the ECS API but runs no
//! container: this is how the tests and the bench run the stage-in → job → stage-out chain for
//! real, against S3 with real presigned URLs. (Test support: not used in production.)

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_ecs::types::{ContainerOverride, TaskOverride};
use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, ResourcesUlimits, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use chrono::Utc;
use futures_util::StreamExt;
use serde_json::Value;
use uuid::Uuid;

use mecapy_sandbox::ecs::{ContainerState, TaskStateChange, TIMEOUT_REASON};

/// The stager image `infra/stager-image.sh` builds.
pub const LOCAL_STAGER_IMAGE: &str = "mecapy-stager:local";
/// What ECS says of an OOM-killed container.
const OOM_REASON: &str = "OutOfMemoryError: Container killed due to memory usage";
const MIB: i64 = 1024 * 1024;

/// The ECS agent of one local "container instance".
pub struct LocalAgent {
    docker: Docker,
    /// The agent's `ECS_TASK_PIDS_LIMIT` (per task on ECS; here per container, which run one
    /// at a time).
    pub pids_limit: Option<i64>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl LocalAgent {
    pub fn new(docker: Docker, pids_limit: Option<i64>) -> Self {
        LocalAgent { docker, pids_limit }
    }

    /// The engine's configuration of one container of the task, as the agent builds it.
    pub fn container_config(
        &self,
        task: &Value,
        def: &Value,
        over: Option<&ContainerOverride>,
        volumes: &HashMap<String, String>,
    ) -> ContainerCreateBody {
        let linux = &def["linuxParameters"];
        let command = over
            .map(|o| o.command().to_vec())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| strings(&def["command"]));
        let mut env: Vec<String> = def["environment"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|kv| {
                format!(
                    "{}={}",
                    kv["name"].as_str().unwrap_or_default(),
                    kv["value"].as_str().unwrap_or_default()
                )
            })
            .collect();
        if let Some(o) = over {
            env.extend(o.environment().iter().map(|kv| {
                format!(
                    "{}={}",
                    kv.name().unwrap_or_default(),
                    kv.value().unwrap_or_default()
                )
            }));
        }
        let memory = over
            .and_then(|o| o.memory())
            .map(i64::from)
            .or_else(|| def["memory"].as_i64())
            .map(|m| m * MIB);
        let swap = linux["maxSwap"].as_i64().unwrap_or(0) * MIB;
        let shares = over
            .and_then(|o| o.cpu())
            .map(i64::from)
            .or_else(|| def["cpu"].as_i64())
            .unwrap_or(0)
            .max(2);
        // The task's CPU is its cgroup's hard limit.
        let task_cpu = task["cpu"]
            .as_str()
            .and_then(|c| c.parse::<f64>().ok())
            .map(|units| (units / 1024.0 * 1e9).round() as i64);
        let disable_network = def["disableNetworking"].as_bool().unwrap_or(false);
        let tmpfs: HashMap<String, String> = linux["tmpfs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                let mut options = vec![format!("size={}m", t["size"].as_i64().unwrap_or(0))];
                options.extend(strings(&t["mountOptions"]));
                (
                    t["containerPath"].as_str().unwrap_or_default().to_string(),
                    options.join(","),
                )
            })
            .collect();
        let mounts = def["mountPoints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| {
                Some(Mount {
                    target: Some(m["containerPath"].as_str()?.to_string()),
                    source: Some(volumes.get(m["sourceVolume"].as_str()?)?.clone()),
                    typ: Some(MountType::VOLUME),
                    read_only: m["readOnly"].as_bool(),
                    ..Default::default()
                })
            })
            .collect();
        let ulimits = def["ulimits"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|u| ResourcesUlimits {
                name: u["name"].as_str().map(str::to_string),
                soft: u["softLimit"].as_i64(),
                hard: u["hardLimit"].as_i64(),
            })
            .collect();
        ContainerCreateBody {
            image: def["image"].as_str().map(str::to_string),
            cmd: Some(command),
            env: Some(env),
            user: def["user"].as_str().map(str::to_string),
            working_dir: def["workingDirectory"].as_str().map(str::to_string),
            network_disabled: Some(disable_network),
            host_config: Some(HostConfig {
                memory,
                memory_swap: memory.map(|m| m + swap),
                memory_swappiness: linux["swappiness"].as_i64(),
                cpu_shares: Some(shares),
                nano_cpus: task_cpu,
                pids_limit: self.pids_limit,
                readonly_rootfs: def["readonlyRootFilesystem"].as_bool(),
                privileged: def["privileged"].as_bool(),
                network_mode: Some(if disable_network {
                    "none".into()
                } else {
                    task["networkMode"].as_str().unwrap_or("bridge").to_string()
                }),
                cap_drop: Some(strings(&linux["capabilities"]["drop"])),
                security_opt: Some(strings(&def["dockerSecurityOptions"])),
                init: linux["initProcessEnabled"].as_bool(),
                tmpfs: Some(tmpfs),
                ulimits: Some(ulimits),
                mounts: Some(mounts),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Runs the task to its end; the job's container is stopped at `stop_after` as the
    /// dispatcher's `StopTask` would. The containers and volumes are removed afterwards.
    pub async fn run(
        &self,
        task: &Value,
        overrides: &TaskOverride,
        started_by: &str,
        stop_after: Duration,
    ) -> Result<TaskStateChange, String> {
        let id = Uuid::new_v4().simple().to_string();
        let mut volumes = HashMap::new();
        for v in task["volumes"].as_array().into_iter().flatten() {
            let name = v["name"].as_str().unwrap_or_default().to_string();
            let config = &v["dockerVolumeConfiguration"];
            let volume = format!("mecapy-task-{id}-{name}");
            let opts: HashMap<String, String> = config["driverOpts"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            self.docker
                .create_volume(VolumeCreateRequest {
                    name: Some(volume.clone()),
                    driver: config["driver"].as_str().map(str::to_string),
                    driver_opts: Some(opts),
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("creating the task volume: {e}"))?;
            volumes.insert(name, volume);
        }
        let result = self
            .run_containers(task, overrides, &id, &volumes, stop_after)
            .await;
        for volume in volumes.values() {
            let _ = self
                .docker
                .remove_volume(
                    volume,
                    None::<bollard::query_parameters::RemoveVolumeOptions>,
                )
                .await;
        }
        let (containers, stopped_by_limit, started_at) = result?;
        Ok(TaskStateChange {
            task_arn: format!("arn:aws:ecs:local:000000000000:task/local/{id}"),
            last_status: "STOPPED".into(),
            started_by: Some(started_by.to_string()),
            stop_code: Some(
                if stopped_by_limit {
                    "UserInitiated"
                } else {
                    "EssentialContainerExited"
                }
                .into(),
            ),
            stopped_reason: Some(
                if stopped_by_limit {
                    TIMEOUT_REASON
                } else {
                    "Essential container in task exited"
                }
                .into(),
            ),
            started_at: Some(started_at),
            stopped_at: Some(Utc::now()),
            containers,
        })
    }

    async fn run_containers(
        &self,
        task: &Value,
        overrides: &TaskOverride,
        id: &str,
        volumes: &HashMap<String, String>,
        stop_after: Duration,
    ) -> Result<(Vec<ContainerState>, bool, chrono::DateTime<Utc>), String> {
        let started_at = Utc::now();
        let defs: Vec<&Value> = task["containerDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        let mut states: Vec<ContainerState> = Vec::new();
        // Started and left running: what only `START` dependencies wait for (the holder).
        let mut running: Vec<(String, String)> = Vec::new();
        let mut stopped_by_limit = false;
        let mut result = Ok(());
        for (i, def) in defs.iter().enumerate() {
            let name = def["name"].as_str().unwrap_or_default().to_string();
            let ready = def["dependsOn"].as_array().into_iter().flatten().all(|d| {
                let dep = d["containerName"].as_str().unwrap_or_default();
                let stopped = states.iter().find(|s| s.name == dep);
                match d["condition"].as_str() {
                    Some("SUCCESS") => stopped.is_some_and(|s| s.exit_code == Some(0)),
                    // Stopped, whether it ran or could not.
                    Some("COMPLETE") => stopped.is_some(),
                    _ => stopped.is_some() || running.iter().any(|(n, _)| n == dep),
                }
            });
            if !ready || stopped_by_limit {
                states.push(ContainerState {
                    name,
                    exit_code: None,
                    reason: Some("the container's dependency condition was not met".into()),
                    last_status: Some("STOPPED".into()),
                    image_digest: None,
                });
                continue;
            }
            let awaited = def["essential"].as_bool().unwrap_or(true)
                || defs[i + 1..].iter().any(|later| {
                    later["dependsOn"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|d| d["containerName"] == name.as_str() && d["condition"] != "START")
                });
            let over = overrides
                .container_overrides()
                .iter()
                .find(|o| o.name() == Some(name.as_str()));
            let config = self.container_config(task, def, over, volumes);
            let container = format!("mecapy-task-{id}-{name}");
            let options = CreateContainerOptionsBuilder::new()
                .name(&container)
                .build();
            if let Err(e) = self.docker.create_container(Some(options), config).await {
                result = Err(format!("creating {name}: {e}"));
                break;
            }
            if let Err(e) = self.docker.start_container(&container, None).await {
                result = Err(format!("starting {name}: {e}"));
                running.push((name, container));
                break;
            }
            if !awaited {
                running.push((name, container));
                continue;
            }
            let state = self.finish(&container, &name, Some(stop_after)).await;
            match state {
                Ok((state, hit_limit)) => {
                    stopped_by_limit |= hit_limit;
                    states.push(state);
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            if def["essential"].as_bool().unwrap_or(true) {
                // An essential container's exit stops the task.
                break;
            }
        }
        // The task stops: the containers still running are stopped with it.
        for (name, container) in running {
            let kill = KillContainerOptionsBuilder::new().signal("SIGTERM").build();
            let _ = self.docker.kill_container(&container, Some(kill)).await;
            if let Ok((state, _)) = self.finish(&container, &name, None).await {
                states.push(state);
            }
        }
        result.map(|()| (states, stopped_by_limit, started_at))
    }

    /// Waits for the container's end (killing it at `stop_after`), reads its state, removes it.
    async fn finish(
        &self,
        container: &str,
        name: &str,
        stop_after: Option<Duration>,
    ) -> Result<(ContainerState, bool), String> {
        let state = self.wait_and_inspect(container, name, stop_after).await;
        let remove = RemoveContainerOptionsBuilder::new().force(true).build();
        let _ = self.docker.remove_container(container, Some(remove)).await;
        state
    }

    async fn wait_and_inspect(
        &self,
        container: &str,
        name: &str,
        stop_after: Option<Duration>,
    ) -> Result<(ContainerState, bool), String> {
        let mut waiting = self.docker.wait_container(container, None);
        let hit_limit = match stop_after {
            Some(limit) => tokio::time::timeout(limit, waiting.next()).await.is_err(),
            None => {
                waiting.next().await;
                false
            }
        };
        if hit_limit {
            let kill = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
            let _ = self.docker.kill_container(container, Some(kill)).await;
            let _ = self.docker.wait_container(container, None).next().await;
        }
        let inspected = self
            .docker
            .inspect_container(container, None)
            .await
            .map_err(|e| format!("inspecting {name}: {e}"))?;
        let state = inspected.state.unwrap_or_default();
        if state.exit_code != Some(0) {
            // What a failed container said, as its awslogs stream would show it.
            let options = LogsOptionsBuilder::new()
                .stdout(true)
                .stderr(true)
                .tail("20")
                .build();
            let logs: Vec<_> = self.docker.logs(container, Some(options)).collect().await;
            for line in logs.into_iter().flatten() {
                tracing::warn!(container = name, "{}", line.to_string().trim_end());
            }
        }
        let reason = if state.oom_killed == Some(true) {
            Some(OOM_REASON.to_string())
        } else {
            state.error.filter(|e| !e.is_empty())
        };
        Ok((
            ContainerState {
                name: name.to_string(),
                exit_code: state.exit_code,
                reason,
                last_status: Some("STOPPED".into()),
                image_digest: inspected.image,
            },
            hit_limit,
        ))
    }
}
