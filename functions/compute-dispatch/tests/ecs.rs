//! Jobs on ECS through `compute-dispatch`, on the real services: `compute-submit` in-process,
//! the dispatcher on `Compute::Ecs` against moto (the ECS API), which starts the job's task and
//! returns; the task run for real on the local Docker engine by `mecapy_testkit::LocalAgent` with the
//! overrides moto recorded (stage-in, the job without network, stage-out, against LocalStack
//! S3); its end handed to the dispatcher as the `ECS Task State Change` event the task-ends
//! queue delivers, which records the outcome.

mod common;

use std::time::Duration;

use common::{get_compute, post_compute};
use compute_dispatch::{Compute, Dispatcher, EcsCompute};
use lambda_http::http::StatusCode;
use mecapy_sandbox::ecs::{self, EcsLauncher, TaskRequest, TaskStateChange};
use mecapy_sandbox::{Limits, Restrictions};
use mecapy_shared::db;
use mecapy_shared::jobs::{keys, messages, Manifest};
use mecapy_testkit::moto::{cluster_with_instance, ecs_call, ecs_client};
use mecapy_testkit::{body_json, multipart_request, storage_at, TestContext};
use mecapy_testkit::{LocalAgent, LOCAL_STAGER_IMAGE};
use serde_json::{json, Value};
use uuid::Uuid;

const IMAGE: &str = "mecapy-python:bookworm";
/// Where the task's containers reach LocalStack: the docker bridge's address (services.sh).
const BRIDGE_S3: &str = "http://172.17.0.1:4566";

struct Ecs {
    ctx: TestContext,
    dispatcher: Dispatcher,
    cluster: String,
    family: String,
    task_definition: Value,
    token: String,
}

async fn ecs(max_receives: u32, cluster: Option<String>) -> Ecs {
    let mut ctx = TestContext::with(|c| c.max_receives = max_receives).await;
    // The stage document's URLs are fetched from the task's containers, on the bridge.
    ctx.state.storage = storage_at(BRIDGE_S3, &ctx.bucket, &ctx.env).await;
    let cluster = match cluster {
        Some(cluster) => cluster,
        None => cluster_with_instance().await,
    };
    let r = Restrictions::of(&Limits::default());
    let family = format!("mecapy-python-{}", Uuid::new_v4().simple());
    let task_definition = ecs::task_definition(&r, &family, IMAGE, LOCAL_STAGER_IMAGE);
    ecs_call("RegisterTaskDefinition", task_definition.clone()).await;
    let compute = Compute::Ecs(EcsCompute {
        launcher: EcsLauncher::with_client(ecs_client().await, &cluster),
        task_definition: family.clone(),
        start_allowance: Duration::from_secs(60),
    });
    let dispatcher = Dispatcher::on(ctx.state.context.clone(), compute, 4);
    let token = ctx.token_for("scientist").await;
    Ecs {
        ctx,
        dispatcher,
        cluster,
        family,
        task_definition,
        token,
    }
}

impl Ecs {
    /// `submit`, then dispatched (its task started); its id.
    async fn dispatched(&self, code: &str) -> Uuid {
        let job = self.submit(code).await;
        self.dispatcher.run_job(job).await.expect("dispatched");
        job
    }

    /// A job reading an uploaded CSV (its code names it `INPUT`); its id.
    async fn submit(&self, code: &str) -> Uuid {
        let name = format!("data-{}.csv", Uuid::new_v4().simple());
        let r = upload::handle(
            self.ctx.state.clone(),
            multipart_request(
                "/files",
                Some(&self.token),
                &name,
                "text/csv",
                b"x,y\n1,2\n3,4\n",
            ),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let file = body_json(&r)["id"].as_str().unwrap().to_string();
        let r = post_compute(
            &self.ctx.state,
            &self.token,
            &json!({"tool": "python", "code": code.replace("INPUT", &name), "input_file_ids": [file]}),
        )
        .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        body_json(&r)["job_id"].as_str().unwrap().parse().unwrap()
    }

    async fn job(&self, id: Uuid) -> Value {
        let r = get_compute(&self.ctx.state, &self.token, id).await;
        assert_eq!(r.status(), StatusCode::OK);
        body_json(&r)
    }

    /// One SQS record of `body`, received `receives` times, handed to the dispatcher: the
    /// batch item failures.
    async fn deliver(&self, body: &str, receives: u32) -> Vec<Value> {
        let batch = json!({"Records": [{
            "messageId": Uuid::new_v4().to_string(),
            "body": body,
            "attributes": {"ApproximateReceiveCount": receives.to_string()},
            "eventSource": "aws:sqs",
        }]});
        let reply = self.dispatcher.handle_event(batch, None).await.unwrap();
        reply["batchItemFailures"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The object `key` of the test's bucket (up to 1 MiB), which must be there (`what`).
    async fn stored(&self, key: &str, what: &str) -> Vec<u8> {
        let bytes = self.ctx.state.storage.get(key, 1 << 20).await.unwrap();
        bytes.unwrap_or_else(|| panic!("{what}")).to_vec()
    }

    /// Writes `bytes` (a `content_type`) as the object `key` of the test's bucket.
    async fn store(&self, key: &str, bytes: &[u8], content_type: &str) {
        let body = bytes.to_vec().into();
        self.ctx
            .state
            .storage
            .put(key, body, content_type)
            .await
            .unwrap();
    }

    async fn manifest(&self, job: Uuid) -> Manifest {
        let bytes = self.stored(&keys::manifest(job), "manifest").await;
        serde_json::from_slice(&bytes).unwrap()
    }

    /// The job's task as moto recorded it: exactly one, with its overrides.
    async fn task_of(&self, job: Uuid) -> Value {
        let listed = ecs_call(
            "ListTasks",
            json!({"cluster": self.cluster, "startedBy": ecs::started_by(job)}),
        )
        .await;
        let arns = listed["taskArns"].as_array().unwrap().clone();
        assert_eq!(arns.len(), 1, "one task for the job: {listed}");
        let described = ecs_call(
            "DescribeTasks",
            json!({"cluster": self.cluster, "tasks": arns}),
        )
        .await;
        described["tasks"][0].clone()
    }

    /// Runs the job's task on the local engine from what moto recorded, as an instance's
    /// agent would: its end, as the task-ends queue delivers it.
    async fn run_task(&self, job: Uuid) -> TaskStateChange {
        let task = self.task_of(job).await;
        assert_eq!(
            task["taskDefinitionArn"]
                .as_str()
                .unwrap()
                .split('/')
                .next_back()
                .unwrap()
                .split(':')
                .next()
                .unwrap(),
            self.family
        );
        let overrides = task["overrides"]["containerOverrides"].as_array().unwrap();
        let of = |name: &str| overrides.iter().find(|o| o["name"] == name).unwrap();
        let stage_url = of(ecs::STAGE_IN_CONTAINER)["environment"][0]["value"]
            .as_str()
            .unwrap()
            .to_string();
        // The overrides the dispatcher sent, rebuilt from the job's manifest: the same.
        let manifest = self.manifest(job).await;
        let r = Restrictions::of(&manifest.limits);
        let env = manifest.env();
        let request = TaskRequest {
            job,
            task_definition: &self.family,
            restrictions: &r,
            command: &manifest.command,
            env: &env,
            stage_url: &stage_url,
        };
        let rebuilt = request.overrides();
        let sandbox = rebuilt
            .container_overrides()
            .iter()
            .find(|o| o.name() == Some(ecs::SANDBOX_CONTAINER))
            .unwrap();
        assert_eq!(
            of(ecs::SANDBOX_CONTAINER)["command"],
            json!(sandbox.command())
        );
        let docker = bollard::Docker::connect_with_defaults().expect("Docker");
        docker.inspect_image(IMAGE).await.unwrap_or_else(|e| {
            panic!("{IMAGE} is missing ({e}): build it with `make images` (make test does)")
        });
        docker
            .inspect_image(LOCAL_STAGER_IMAGE)
            .await
            .unwrap_or_else(|e| {
                panic!("{LOCAL_STAGER_IMAGE} is missing ({e}): build it with `make images`")
            });
        LocalAgent::new(docker, Some(Limits::default().pids_limit))
            .run(
                &self.task_definition,
                &rebuilt,
                &ecs::started_by(job),
                manifest.limits.timeout + Duration::from_secs(10),
            )
            .await
            .expect("the task ran on the local engine")
    }

    /// Delivers the task's end: the job is `error`, its reason says each of `reasons`, and
    /// nothing is left under its results.
    async fn ends_in_error(&self, job: Uuid, change: &TaskStateChange, reasons: &[&str]) {
        let failures = self.deliver(&change.to_event().to_string(), 1).await;
        assert!(failures.is_empty(), "{failures:?}");
        let state = self.job(job).await;
        assert_eq!(state["status"], "error", "{state}");
        let reason = state["error"].as_str().unwrap_or_default();
        for expected in reasons {
            assert!(reason.contains(expected), "{expected:?} in {state}");
        }
        assert_eq!(self.results(job).await, Vec::<String>::new());
    }

    async fn results(&self, job: Uuid) -> Vec<String> {
        let storage = &self.ctx.state.storage;
        let listed = storage
            .client()
            .list_objects_v2()
            .bucket(storage.bucket())
            .prefix(keys::results_prefix(job))
            .send()
            .await
            .unwrap();
        listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    }
}

#[tokio::test]
async fn dispatch_starts_the_task_and_returns_and_its_end_records_the_outcome() {
    let e = ecs(3, None).await;
    let code = r#"
import numpy as np
data = np.loadtxt("inputs/INPUT", delimiter=",", skiprows=1)
open("out/mean.txt", "w").write(str(data[:, 1].mean()))
print("mean", data[:, 1].mean())
"#;
    let job = e.dispatched(code).await;
    assert_eq!(
        e.job(job).await["status"],
        "running",
        "no Lambda waits on it"
    );
    // A second delivery of the same announcement finds the job held: no second task.
    assert!(e.dispatcher.run_job(job).await.is_err());
    e.task_of(job).await;

    let change = e.run_task(job).await;
    let event = change.to_event().to_string();
    assert!(e.deliver(&event, 1).await.is_empty());
    let state = e.job(job).await;
    assert_eq!(state["status"], "succeeded", "{state}");
    assert_eq!(state["exit_code"], 0, "{state}");
    let stdout = e.stored(&keys::stdout(job), "stdout stored").await;
    assert_eq!(String::from_utf8_lossy(&stdout), "mean 3.0\n");
    let outputs = state["outputs"].to_string();
    assert!(outputs.contains("mean.txt"), "{state}");
    assert!(
        state["image_digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{state}"
    );

    // The same end delivered twice changes nothing.
    assert!(e.deliver(&event, 2).await.is_empty());
    assert_eq!(e.job(job).await["status"], "succeeded");
}

#[tokio::test]
async fn the_end_of_a_task_whose_job_was_requeued_meanwhile_is_its_outcome() {
    let e = ecs(3, None).await;
    let job = e.dispatched("print('late')").await;
    let change = e.run_task(job).await;
    // The task waited so long for an instance that the job's lease ran out: the sweep put it
    // back in the queue before its task ended.
    let db = e.ctx.state.db.get().await.unwrap();
    db::jobs::release(&**db, job, "its lease ran out")
        .await
        .unwrap();
    assert_eq!(e.job(job).await["status"], "queued");
    assert!(e
        .deliver(&change.to_event().to_string(), 1)
        .await
        .is_empty());
    let state = e.job(job).await;
    assert_eq!(state["status"], "succeeded", "{state}");
    // Its next dispatch finds it finished: no second task.
    e.dispatcher.run_job(job).await.expect("nothing to do");
    e.task_of(job).await;
}

#[tokio::test]
async fn a_refused_stage_in_or_a_task_that_never_started_is_an_error_with_nothing_stored() {
    let e = ecs(3, None).await;
    let job = e.dispatched("print('never')").await;
    // The input changes after the job was accepted.
    let manifest = e.manifest(job).await;
    e.store(&manifest.inputs[0].key, b"x,y\n9,9\n", "text/csv")
        .await;
    let change = e.run_task(job).await;
    e.ends_in_error(job, &change, &["changed since the job was submitted"])
        .await;

    // A task that never started (say, its image could not be pulled).
    let job = e.dispatched("print('never')").await;
    let mut change = e.run_task(job).await;
    change.started_at = None;
    change.stop_code = Some("TaskFailedToStart".into());
    change.stopped_reason = Some("CannotPullContainerError: access denied".into());
    e.ends_in_error(job, &change, &["never started", "CannotPull"])
        .await;
}

#[tokio::test]
async fn no_capacity_keeps_the_job_queued_then_gives_up_with_the_reason() {
    // A cluster whose one instance is full.
    let cluster = cluster_with_instance().await;
    let filler = ecs(2, Some(cluster.clone())).await;
    let r = Restrictions::of(&Limits::default());
    let launcher = EcsLauncher::with_client(ecs_client().await, &cluster);
    let command = vec!["true".to_string()];
    for placed in 0.. {
        assert!(placed < 64, "the instance never filled up");
        let started = launcher
            .start(&TaskRequest {
                job: Uuid::new_v4(),
                task_definition: &filler.family,
                restrictions: &r,
                command: &command,
                env: &[],
                stage_url: "http://127.0.0.1:4566/x",
            })
            .await;
        if started.is_err() {
            break;
        }
    }
    let e = filler;
    let job = e.submit("print(1)").await;
    let announce = messages::dispatch(job);
    assert_eq!(
        e.deliver(&announce, 1).await.len(),
        1,
        "delivered again later"
    );
    let state = e.job(job).await;
    assert_eq!(state["status"], "queued", "{state}");
    assert_eq!(e.deliver(&announce, 2).await.len(), 1, "the last receive");
    let state = e.job(job).await;
    assert_eq!(state["status"], "error", "{state}");
    assert!(
        state["error"]
            .as_str()
            .is_some_and(|r| r.contains("no capacity") && r.contains("gave up after 2 attempts")),
        "{state}"
    );
}
