//! The sandbox's ECS task definition against an ECS API (moto, started by `infra/services.sh`):
//! it is accepted as built, and what ECS keeps of it still carries every restriction. moto runs
//! no container; what ECS does with these fields is the sandbox tests' subject on Docker, whose
//! mapping is tested field by field against the same values (`sandbox::config`).

use mecapy_shared::sandbox::{ecs, Limits, Restrictions};
use serde_json::{json, Value};

fn moto_url() -> String {
    std::env::var("MOTO_URL").unwrap_or_else(|_| "http://127.0.0.1:5055".into())
}

/// One call of the ECS JSON API.
async fn ecs_call(target: &str, body: Value) -> Value {
    let url = moto_url();
    let reply = reqwest::Client::new()
        .post(format!("{url}/"))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", format!("AmazonEC2ContainerServiceV20141113.{target}"))
        // moto checks no signature; the credential scope names the service and region.
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "moto (the ECS API) does not answer at {url} ({e}): start it with \
                 `infra/services.sh up moto` (make test does)"
            )
        });
    let status = reply.status();
    let text = reply.text().await.expect("ECS API reply");
    assert!(status.is_success(), "{target}: {status} {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{target}: {e}: {text}"))
}

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
        ecs::task_definition(&r, &family, "mecapy-python:bookworm"),
    )
    .await;
    assert_eq!(registered["taskDefinition"]["family"], family.as_str());

    let described = ecs_call("DescribeTaskDefinition", json!({"taskDefinition": family})).await;
    let task = &described["taskDefinition"];
    assert_eq!(task["networkMode"], "none");
    let work = &task["volumes"][0]["dockerVolumeConfiguration"];
    assert_eq!(work["scope"], "task");
    assert_eq!(work["driverOpts"]["o"], r.work.mount_options());

    let c = &task["containerDefinitions"][0];
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
