use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use compute_dispatch::{Compute, EcsCompute};
use lambda_runtime::{service_fn, LambdaEvent};
use mecapy_sandbox::ecs::EcsLauncher;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    mecapy_shared::telemetry::init("compute-dispatch");
    let state = mecapy_usecases::Context::from_env().await?;
    let compute = match &state.config.ecs {
        Some(ecs) => Compute::Ecs(EcsCompute {
            launcher: EcsLauncher::new(&state.aws().await, &ecs.cluster),
            task_definition: ecs.task_definition.clone(),
            start_allowance: ecs.start_allowance,
        }),
        None => Compute::Engine(Arc::new(mecapy_sandbox::DockerRuntime::connect().await?)),
    };
    let dispatcher = Arc::new(compute_dispatch::Dispatcher::from_env(state, compute).await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let dispatcher = dispatcher.clone();
        let deadline = deadline(event.context.deadline);
        async move { Box::pin(dispatcher.handle_event(event.payload, Some(deadline))).await }
    }))
    .await
}

/// The invocation's deadline (milliseconds since the epoch) as an `Instant`.
fn deadline(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}
