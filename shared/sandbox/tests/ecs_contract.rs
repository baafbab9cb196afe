//! The sandbox's ECS task definition against an ECS API (moto, started by `infra/services.sh`):
//! it is accepted as built, and what ECS keeps of it still carries every restriction. moto runs
//! no container; what ECS does with these fields is the sandbox tests' subject on Docker, whose
//! mapping is tested field by field against the same values (`sandbox::config`).

use mecapy_sandbox::ecs::{self, EcsLauncher, LaunchError, Launched, TaskRequest};
use mecapy_sandbox::{Limits, Restrictions};
use mecapy_testkit::moto::{cluster_with_instance, ecs_call, ecs_client, register};
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn the_sandbox_task_definition_is_accepted_and_keeps_every_restriction() {
    let limits = Limits {
        memory_mb: 300,
        cpus: 0.75,
        work_mb: 32,
        tmp_mb: 16,
        ..Limits::default()
    };
    let r = Restrictions::of(&limits);
    let family = format!("mecapy-contract-{}", uuid::Uuid::new_v4().simple());
    let registered = ecs_call(
        "RegisterTaskDefinition",
        ecs::task_definition(&r, &family, "mecapy-python:bookworm", "mecapy-stager"),
    )
    .await;
    assert_eq!(registered["taskDefinition"]["family"], family.as_str());

    let described = ecs_call("DescribeTaskDefinition", json!({"taskDefinition": family})).await;
    let task = &described["taskDefinition"];
    assert_eq!(task["networkMode"], "bridge");
    let work = &task["volumes"][0]["dockerVolumeConfiguration"];
    assert_eq!(work["scope"], "task");
    assert_eq!(work["driverOpts"]["o"], r.work.mount_options());

    assert_eq!(task["cpu"], "768", "the task's hard CPU limit");
    let c = &task["containerDefinitions"][2];
    assert_eq!(c["name"], ecs::SANDBOX_CONTAINER);
    assert_eq!(c["memory"], 300);
    assert_eq!(c["cpu"], 768);
    assert_eq!(c["user"], "1000:1000");
    assert_eq!(c["readonlyRootFilesystem"], true);
    assert_eq!(c["privileged"], false);
    assert_eq!(c["disableNetworking"], true);
    assert_eq!(c["dockerSecurityOptions"], json!(["no-new-privileges"]));
    let linux = &c["linuxParameters"];
    assert_eq!(linux["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(linux["initProcessEnabled"], true);
    assert_eq!(linux["maxSwap"], 0);
    assert_eq!(linux["tmpfs"][0]["containerPath"], "/tmp");
    assert_eq!(linux["tmpfs"][0]["size"], 16);
    assert_eq!(c["ulimits"][0]["hardLimit"], 0);
    assert_eq!(c["mountPoints"][0]["containerPath"], "/work");
}

/// A moto cluster with one instance, the default restrictions' task definition registered, and
/// a launcher on that cluster.
struct Cluster {
    cluster: String,
    r: Restrictions,
    family: String,
    launcher: EcsLauncher,
}

impl Cluster {
    async fn new() -> Cluster {
        let cluster = cluster_with_instance().await;
        let r = Restrictions::of(&Limits::default());
        let family = register(&r).await;
        let launcher = EcsLauncher::with_client(ecs_client().await, &cluster);
        Cluster {
            cluster,
            r,
            family,
            launcher,
        }
    }
}

#[tokio::test]
async fn a_job_task_starts_once_with_its_overrides_and_tag_and_stops_at_its_limit() {
    let c = Cluster::new().await;
    let (cluster, r, family, launcher) = (&c.cluster, &c.r, &c.family, &c.launcher);
    let job = Uuid::new_v4();
    let command = vec!["python3".to_string(), "/work/main.py".to_string()];
    let env = vec![("MECAPY_JOB_ID".to_string(), job.to_string())];
    let request = TaskRequest {
        job,
        task_definition: family,
        restrictions: r,
        command: &command,
        env: &env,
        stage_url: "http://127.0.0.1:4566/bucket/jobs/x/stage.json?X-Amz-Signature=0",
    };
    let first = launcher.start(&request).await.expect("task started");
    let Launched::Started(arn) = first.clone() else {
        panic!("a new job's task is started: {first:?}")
    };
    // A retried dispatch finds the task instead of starting a second one.
    assert_eq!(
        launcher.start(&request).await.expect("found"),
        Launched::AlreadyRunning(arn.clone())
    );
    assert_eq!(launcher.find(job).await.unwrap(), Some(arn.clone()));
    assert_eq!(launcher.find(Uuid::new_v4()).await.unwrap(), None);

    let described = ecs_call(
        "DescribeTasks",
        json!({"cluster": cluster, "tasks": [arn], "include": ["TAGS"]}),
    )
    .await;
    let task = &described["tasks"][0];
    assert_eq!(task["startedBy"], ecs::started_by(job));
    assert_eq!(
        task["tags"],
        json!([{"key": "org.mecapy.job-id", "value": job.to_string()}])
    );
    assert_eq!(
        task["overrides"]["cpu"], "512",
        "the task's CPU limit (0.5 vCPU)"
    );
    let overrides = task["overrides"]["containerOverrides"].as_array().unwrap();
    let of = |name: &str| {
        overrides
            .iter()
            .find(|o| o["name"] == name)
            .unwrap()
            .clone()
    };
    let sandbox = of("sandbox");
    // The job's command under `timeout` (its 30 s limit), its output sent to the work volume.
    let shell = "exec \"$@\" >/work/.mecapy/stdout 2>/work/.mecapy/stderr";
    let mut expected = vec![
        "/bin/sh", "-c", shell, "sh", "timeout", "-s", "KILL", "30.000",
    ];
    expected.extend(command.iter().map(String::as_str));
    assert_eq!(sandbox["command"], json!(expected));
    assert_eq!(
        sandbox["environment"],
        json!([{"name": "MECAPY_JOB_ID", "value": job.to_string()}])
    );
    assert_eq!(
        (sandbox["memory"].clone(), sandbox["cpu"].clone()),
        (json!(256), json!(512))
    );
    for staging in ["stage-in", "stage-out"] {
        assert_eq!(
            of(staging)["environment"][0]["name"],
            ecs::STAGE_URL_ENV,
            "{staging} finds the stage document"
        );
        assert!(of(staging)
            .get("command")
            .is_none_or(|c| c.is_null() || c == &json!([])));
    }

    launcher.stop_at_limit(&arn).await.expect("stopped");
    let described = ecs_call("DescribeTasks", json!({"cluster": cluster, "tasks": [arn]})).await;
    assert_eq!(described["tasks"][0]["lastStatus"], "STOPPED");
    assert_eq!(described["tasks"][0]["stoppedReason"], ecs::TIMEOUT_REASON);
    assert_eq!(
        launcher.find(job).await.unwrap(),
        None,
        "a stopped task is not found again"
    );
}

#[tokio::test]
async fn no_room_on_the_cluster_is_no_capacity_and_a_wrong_cluster_is_refused() {
    // One instance: tasks are placed until its CPU and memory are taken, then ECS has no room.
    let c = Cluster::new().await;
    let (r, family, launcher) = (&c.r, &c.family, &c.launcher);
    let command = vec!["true".to_string()];
    let request = |job| TaskRequest {
        job,
        task_definition: family,
        restrictions: r,
        command: &command,
        env: &[],
        stage_url: "http://127.0.0.1:4566/x",
    };
    let mut placed = 0;
    let full = loop {
        match launcher.start(&request(Uuid::new_v4())).await {
            Ok(Launched::Started(_)) if placed < 64 => placed += 1,
            other => break other,
        }
    };
    assert!(placed >= 1, "the instance takes at least one task");
    assert!(
        matches!(&full, Err(e @ LaunchError::NoCapacity(_)) if e.is_transient()),
        "after {placed} tasks: {full:?}"
    );

    let nowhere = EcsLauncher::with_client(ecs_client().await, "no-such-cluster");
    let refused = nowhere.start(&request(Uuid::new_v4())).await;
    assert!(
        matches!(&refused, Err(e) if !matches!(e, LaunchError::NoCapacity(_))),
        "{refused:?}"
    );
}
