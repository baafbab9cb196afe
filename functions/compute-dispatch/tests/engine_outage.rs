//! The container engine going away while the dispatcher is warm: the real Docker engine is
//! reached through a Unix-socket relay this test starts and stops, so the outage is real for
//! the dispatcher's client and no other test is disturbed.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{get_compute, post_compute};
use compute_dispatch::{Compute, Dispatcher};
use lambda_http::http::StatusCode;
use mecapy_sandbox::DockerRuntime;
use mecapy_testkit::{body_json, TestContext};
use serde_json::{json, Value};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;

const ENGINE: &str = "/var/run/docker.sock";

/// Relays `path` to the engine's socket until dropped; dropping it closes every connection.
struct Relay {
    tasks: JoinSet<()>,
}

impl Relay {
    fn start(path: &Path) -> Relay {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("bind relay socket");
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut engine) = UnixStream::connect(ENGINE).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    }
                });
            }
        });
        Relay { tasks }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

async fn stop(relay: Relay, path: &Path) {
    drop(relay);
    let _ = std::fs::remove_file(path);
    tokio::time::sleep(Duration::from_millis(100)).await;
}

async fn job_state(ctx: &TestContext, token: &str, id: &str) -> Value {
    body_json(&get_compute(&ctx.state, token, id).await)
}

async fn setup(
    max_receives: u32,
    path: &Path,
) -> (
    TestContext,
    mecapy_testkit::ComputeQueues,
    Dispatcher,
    Relay,
) {
    assert!(
        Path::new(ENGINE).exists(),
        "the Docker engine socket {ENGINE} is missing: start it with `infra/services.sh up`"
    );
    let ctx = TestContext::with(|c| c.max_receives = max_receives).await;
    let queues = ctx.compute_queues(max_receives, 1).await;
    let relay = Relay::start(path);
    let runtime = DockerRuntime::connect_to(&format!("unix://{}", path.display()))
        .await
        .expect("engine through the relay");
    let dispatcher = Dispatcher {
        state: ctx.state.context.clone(),
        compute: Compute::Engine(Arc::new(runtime)),
        retries: None,
        compute_queue: None,
        concurrency: 2,
    };
    (ctx, queues, dispatcher, relay)
}

/// Receives until a batch carries `id`'s manifest event (skipping `s3:TestEvent`).
#[tokio::test]
async fn engine_outage_is_retried_then_runs_and_a_poison_message_ends_in_the_dlq() {
    let path =
        std::env::temp_dir().join(format!("mecapy-engine-relay-{}.sock", uuid::Uuid::new_v4()));
    let (ctx, queues, dispatcher, relay) = setup(2, &path).await;
    let token = ctx.token_for("outage").await;
    let submit = |code: &'static str| {
        let state = ctx.state.clone();
        let token = token.clone();
        async move {
            let r = post_compute(&state, &token, &json!({"tool": "python", "code": code})).await;
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            body_json(&r)["job_id"].as_str().unwrap().to_string()
        }
    };

    // 1. The engine goes away: batch item failure, the job goes back to `queued`.
    stop(relay, &path).await;
    let id = submit("print('after the outage')").await;
    let batch = queues.batch_with(&id, Duration::from_secs(60)).await;
    let response = dispatcher.handle(batch.clone()).await.unwrap();
    assert_eq!(
        response.batch_item_failures.len(),
        1,
        "the record is retried"
    );
    queues.acknowledge(&batch, &response).await;
    let job = job_state(&ctx, &token, &id).await;
    assert_eq!(job["status"], "queued", "{job}");
    assert!(
        job["error"].as_str().unwrap_or("").contains("engine"),
        "{job}"
    );

    // 2. The engine is back: the redelivered message runs the job.
    let relay = Relay::start(&path);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let batch = queues.batch_with(&id, Duration::from_secs(60)).await;
    let response = dispatcher.handle(batch.clone()).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    queues.acknowledge(&batch, &response).await;
    let job = job_state(&ctx, &token, &id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 2);

    // 3. A message that keeps failing: after MAX_RECEIVES its job is `error` and it is in the DLQ.
    stop(relay, &path).await;
    let poison = submit("print('never')").await;
    for receive in 1..=2 {
        let batch = queues.batch_with(&poison, Duration::from_secs(60)).await;
        let response = dispatcher.handle(batch.clone()).await.unwrap();
        assert_eq!(response.batch_item_failures.len(), 1, "receive {receive}");
        queues.acknowledge(&batch, &response).await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    let job = job_state(&ctx, &token, &poison).await;
    assert_eq!(job["status"], "error", "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("gave up after 2 attempts"),
        "{job}"
    );
    // The next receive moves it to the dead-letter queue.
    let leftover = queues.receive_batch(1).await;
    assert!(leftover
        .records
        .iter()
        .all(|r| !r.body.as_deref().unwrap_or("").contains(&poison)));
    let mut in_dlq = false;
    for _ in 0..5 {
        let dead = queues.receive_from(&queues.dlq_url, 1).await;
        if dead
            .records
            .iter()
            .any(|r| r.body.as_deref().unwrap_or("").contains(&poison))
        {
            in_dlq = true;
            break;
        }
    }
    assert!(in_dlq, "the poison message is in the dead-letter queue");
    let _ = std::fs::remove_file(&path);
}
