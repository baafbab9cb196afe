use std::sync::Arc;

use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    mecapy_shared::telemetry::init("compute-dispatch");
    let state = mecapy_shared::AppState::from_env().await?;
    let runtime = Arc::new(mecapy_shared::sandbox::DockerRuntime::connect().await?);
    let dispatcher = Arc::new(compute_dispatch::Dispatcher::from_env(state, runtime).await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
        let dispatcher = dispatcher.clone();
        async move { Box::pin(dispatcher.handle(event.payload)).await }
    }))
    .await
}
