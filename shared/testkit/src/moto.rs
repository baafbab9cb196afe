//! moto, the ECS API of the tests (started by `infra/services.sh` on loopback): raw calls, a
//! client, a cluster with one container instance, a registered task definition.

use serde_json::{json, Value};
use uuid::Uuid;

use mecapy_sandbox::ecs;
use mecapy_sandbox::Restrictions;

pub fn moto_url() -> String {
    std::env::var("MOTO_URL").unwrap_or_else(|_| "http://127.0.0.1:5055".into())
}

/// One call of the ECS JSON API.
pub async fn ecs_call(target: &str, body: Value) -> Value {
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

pub async fn ecs_client() -> aws_sdk_ecs::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto_url())
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    aws_sdk_ecs::Client::new(&config)
}

/// A cluster of its own with one container instance (an EC2 instance of moto's).
pub async fn cluster_with_instance() -> String {
    let cluster = format!("mecapy-contract-{}", Uuid::new_v4().simple());
    ecs_call("CreateCluster", json!({"clusterName": cluster})).await;
    let form = [
        ("Action", "RunInstances"),
        ("Version", "2016-11-15"),
        ("ImageId", "ami-12c6146b"),
        ("MinCount", "1"),
        ("MaxCount", "1"),
        ("InstanceType", "m5.large"),
    ];
    let xml = reqwest::Client::new()
        .post(format!("{}/", moto_url()))
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0",
        )
        .form(&form)
        .send()
        .await
        .expect("moto's EC2 API")
        .text()
        .await
        .expect("RunInstances reply");
    let instance = xml
        .split("<instanceId>")
        .nth(1)
        .and_then(|rest| rest.split("</instanceId>").next())
        .unwrap_or_else(|| panic!("no instance in {xml}"));
    ecs_call(
        "RegisterContainerInstance",
        json!({
            "cluster": cluster,
            "instanceIdentityDocument": json!({"instanceId": instance, "region": "us-east-1"}).to_string(),
        }),
    )
    .await;
    cluster
}

/// The task definition of `r` under a family of its own.
pub async fn register(r: &Restrictions) -> String {
    let family = format!("mecapy-python-{}", Uuid::new_v4().simple());
    ecs_call(
        "RegisterTaskDefinition",
        ecs::task_definition(r, &family, "mecapy-python:bookworm", "mecapy-stager"),
    )
    .await;
    family
}
