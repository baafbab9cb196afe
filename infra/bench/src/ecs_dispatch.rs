//! The ECS dispatch cost per job: what the dispatch Lambda does for one job on `Compute::Ecs`
//! (claim it, read its manifest, HEAD its code, write its stage document, start its task and
//! return), timed as `Dispatcher::run_job` against moto (the ECS API, as
//! `functions/compute-dispatch/tests/ecs.rs` uses it: a cluster of one instance, a registered
//! task definition), LocalStack S3 and PostgreSQL, with the event bus and compute queue of the
//! deployed function (LocalStack EventBridge and SQS). No task runs: moto only records it.
//!
//! How to read it: `run_job`'s wall time is the invocation's own work for one record, what the
//! Lambda bills minus the runtime's overhead (the batch parsed, the reply; about a millisecond).
//! moto and LocalStack answer in-process-fast on loopback, so the figure is the dispatcher's own
//! cost (claim, signing, JSON) plus loopback round trips; on AWS add each call's latency, the ECS
//! API's first (`RunTask` is typically tens to a few hundred ms, `ListTasks` tens), S3's and
//! SQS's (~10-30 ms each). The calls are counted, not inferred: every AWS client of the
//! dispatcher is built on a counting HTTP client, so retries would show. The presigned URLs and
//! POST are signed locally (no call); PostgreSQL is not instrumented: one statement per job (the
//! claim, `UPDATE … RETURNING`), which tokio-postgres prepares then executes, 2 round trips.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_types::config_bag::ConfigBag;
use compute_dispatch::{Compute, ComputeQueue, Dispatcher, EcsCompute};
use lambda_http::http::StatusCode;
use mecapy_sandbox::ecs::{self, EcsLauncher};
use mecapy_sandbox::{Limits, Restrictions};
use mecapy_shared::storage::Storage;
use mecapy_testkit::moto::{cluster_with_instance, ecs_call, moto_url, register};
use mecapy_testkit::{create_queue, multipart_request, sdk_config_at, TestContext};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{fmt, percentile};

/// The HTTP requests of the dispatcher's AWS clients: (service and operation, time).
#[derive(Debug, Clone, Default)]
struct Calls(Arc<Mutex<Vec<(String, Duration)>>>);

impl Calls {
    fn take(&self) -> Vec<(String, Duration)> {
        std::mem::take(&mut *self.0.lock().expect("calls"))
    }
}

/// The SDK's default HTTP client, each request counted under `service`.
#[derive(Debug)]
struct Counting {
    service: &'static str,
    inner: SharedHttpClient,
    calls: Calls,
}

impl HttpClient for Counting {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(CountingConnector {
            service: self.service,
            inner: self.inner.http_connector(settings, components),
            calls: self.calls.clone(),
        })
    }

    fn validate_base_client_config(
        &self,
        components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        self.inner.validate_base_client_config(components, cfg)
    }
}

#[derive(Debug)]
struct CountingConnector {
    service: &'static str,
    inner: SharedHttpConnector,
    calls: Calls,
}

impl HttpConnector for CountingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        // JSON APIs (ECS, SQS) name the operation in X-Amz-Target; S3 by its method.
        let operation = match request.headers().get("x-amz-target") {
            Some(target) => target.rsplit('.').next().unwrap_or(target).to_string(),
            None => request.method().to_string(),
        };
        let name = format!("{} {operation}", self.service);
        let calls = self.calls.clone();
        let reply = self.inner.call(request);
        HttpConnectorFuture::new(async move {
            let t = Instant::now();
            let reply = reply.await;
            calls.0.lock().expect("calls").push((name, t.elapsed()));
            reply
        })
    }
}

/// The local settings at `endpoint` (explicit endpoint and test credentials, never AWS's), on
/// the SDK's default HTTPS client with every request counted.
async fn counted(
    endpoint: &str,
    ctx: &TestContext,
    service: &'static str,
    calls: &Calls,
) -> aws_config::SdkConfig {
    let inner = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .build_https();
    let client = Counting {
        service,
        inner,
        calls: calls.clone(),
    };
    sdk_config_at(endpoint, &ctx.env)
        .await
        .to_builder()
        .http_client(client)
        .build()
}

/// Submits a python job reading the uploaded `file` through compute-submit: its id.
async fn submit(ctx: &TestContext, token: &str, file: &str, name: &str) -> Uuid {
    let code = format!("print(open('inputs/{name}').read())");
    let body = json!({"tool": "python", "code": code, "input_file_ids": [file]});
    crate::submit_job(ctx, token, body)
        .await
        .parse()
        .expect("job id")
}

async fn status(ctx: &TestContext, token: &str, job: Uuid) -> Value {
    crate::status(ctx, token, job).await["status"].clone()
}

/// Calls per service and operation, e.g. `ECS ListTasks` → 2.
type Counts = BTreeMap<String, usize>;

fn counts(calls: &[(String, Duration)]) -> Counts {
    let mut counts = Counts::new();
    for (name, _) in calls {
        *counts.entry(name.clone()).or_default() += 1;
    }
    counts
}

/// "ECS 3 (ListTasks 2, RunTask 1)", one service.
fn describe(counts: &Counts, service: &str) -> String {
    let ops: Vec<String> = counts
        .iter()
        .filter_map(|(name, n)| {
            let op = name.strip_prefix(service)?.trim_start();
            Some(format!("{op} {n}"))
        })
        .collect();
    let total: usize = counts
        .iter()
        .filter(|(name, _)| name.starts_with(service))
        .map(|(_, n)| n)
        .sum();
    format!("{service} {total} ({})", ops.join(", "))
}

/// Time in `service`'s calls.
fn time_in(calls: &[(String, Duration)], service: &str) -> Duration {
    calls
        .iter()
        .filter(|(name, _)| name.starts_with(service))
        .map(|(_, took)| *took)
        .sum()
}

/// Rows: `BENCH_ECS_JOBS` jobs (20 by default) dispatched one at a time after one unmeasured
/// first job (the dispatcher's connections opened): `run_job` p50 / p95 / mean, the calls per
/// job and the time spent in them.
pub async fn measure() {
    let jobs = crate::count_from_env("BENCH_ECS_JOBS", 20);
    let ctx = TestContext::new().await;
    let token = ctx.token_for("bench-ecs").await;
    let name = format!("data-{}.csv", Uuid::new_v4().simple());
    let r = upload::handle(
        ctx.state.clone(),
        multipart_request("/files", Some(&token), &name, "text/csv", b"x,y\n1,2\n"),
    )
    .await
    .expect("infallible");
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.body());
    let file: Value = serde_json::from_slice(r.body().as_ref()).expect("json");
    let file = file["id"].as_str().expect("file id").to_string();

    // The dispatcher's clients, counted; compute-submit's (ctx.state) are not.
    let calls = Calls::default();
    let endpoint = ctx.env["AWS_ENDPOINT_URL"].clone();
    let s3 = counted(&endpoint, &ctx, "S3", &calls).await;
    let sqs = aws_sdk_sqs::Client::new(&counted(&endpoint, &ctx, "SQS", &calls).await);
    let ecs_client = aws_sdk_ecs::Client::new(&counted(&moto_url(), &ctx, "ECS", &calls).await);
    let queue = |kind: &str| {
        let (sqs, name) = (sqs.clone(), format!("{}-ecs-{kind}", ctx.bucket));
        async move { create_queue(&sqs, &name, vec![]).await }
    };
    let compute_url = queue("compute").await;

    let cluster = cluster_with_instance().await;
    let family = register(&Restrictions::of(&Limits::default())).await;
    let mut state = ctx.state.clone();
    state.storage = Storage::new(&s3, &ctx.bucket);
    let mut dispatcher = Dispatcher::on(
        state.context,
        Compute::Ecs(EcsCompute {
            launcher: EcsLauncher::with_client(ecs_client, &cluster),
            task_definition: family,
            start_allowance: Duration::from_secs(60),
        }),
        16,
    );
    dispatcher.compute_queue = Some(ComputeQueue::new(sqs.clone(), &compute_url));

    let mut ids = Vec::with_capacity(jobs + 1);
    for _ in 0..=jobs {
        ids.push(submit(&ctx, &token, &file, &name).await);
    }
    calls.take();
    let (mut first, mut times, mut per_job) = (Duration::ZERO, vec![], vec![]);
    for (i, &job) in ids.iter().enumerate() {
        let t = Instant::now();
        dispatcher.run_job(job).await.expect("dispatched");
        let elapsed = t.elapsed();
        let made = calls.take();
        assert_eq!(status(&ctx, &token, job).await, "running", "job {job}");
        // Its task ends (moto frees the instance's room for the next one), uncounted.
        let listed = ecs_call(
            "ListTasks",
            json!({"cluster": cluster, "startedBy": ecs::started_by(job)}),
        )
        .await;
        let tasks = listed["taskArns"].as_array().cloned().unwrap_or_default();
        assert_eq!(tasks.len(), 1, "one task for job {job}: {listed}");
        ecs_call(
            "StopTask",
            json!({"cluster": cluster, "task": tasks[0], "reason": "bench"}),
        )
        .await;
        if i == 0 {
            first = elapsed;
        } else {
            times.push(elapsed);
            per_job.push(made);
        }
    }
    let _ = sqs.delete_queue().queue_url(&compute_url).send().await;

    let mut sorted = times.clone();
    sorted.sort();
    let mean = times.iter().sum::<Duration>() / jobs as u32;
    println!(
        "| ECS dispatch, Lambda work per job (`run_job` on `Compute::Ecs`: claim, manifest, code HEAD, stage document, task started) against moto, LocalStack S3 and SQS, PostgreSQL, {jobs} jobs one at a time, p50 / p95 / mean | {} / {} / {} | |",
        fmt(percentile(&sorted, 0.50)),
        fmt(percentile(&sorted, 0.95)),
        fmt(mean)
    );
    println!(
        "| ECS dispatch, first job of a fresh dispatcher (connections opened), not in the figures above | {} | |",
        fmt(first)
    );
    let all: Vec<Counts> = per_job.iter().map(|c| counts(c)).collect();
    let same = all.iter().all(|c| c == &all[0]);
    let services = ["ECS", "S3", "SQS"];
    let described: Vec<String> = services.iter().map(|s| describe(&all[0], s)).collect();
    println!(
        "| ECS dispatch, API calls per job (counted at the dispatcher's HTTP clients{}) | {}; 4 presigned (the code's and the input's GETs, the results' POST, the stage document's GET): local signing, no call; PostgreSQL 1 statement (not counted: the claim) | |",
        if same {
            ", the same for every job"
        } else {
            ", they varied: the first measured job's"
        },
        described.join("; ")
    );
    let spent: Vec<String> = services
        .iter()
        .map(|s| {
            let total: Duration = per_job.iter().map(|c| time_in(c, s)).sum();
            format!("{s} {}", fmt(total / jobs as u32))
        })
        .collect();
    let in_calls: Duration = per_job
        .iter()
        .flat_map(|c| c.iter().map(|(_, took)| *took))
        .sum::<Duration>()
        / jobs as u32;
    println!(
        "| ECS dispatch, per job mean: time in the calls ({}) / the rest (claim in PostgreSQL, signing, JSON) | {} / {} | |",
        spent.join(", "),
        fmt(in_calls),
        fmt(mean.saturating_sub(in_calls))
    );
}
