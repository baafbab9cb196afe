use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    mecapy_shared::telemetry::init("webhooks");
    let state = mecapy_usecases::Context::from_env().await?;
    let retries = match &state.config.webhooks_queue_url {
        Some(url) => Some(webhooks::RetryQueue::new(
            mecapy_shared::queue::client(&state.aws().await),
            url,
        )),
        None => None,
    };
    let webhooks = std::sync::Arc::new(webhooks::Webhooks { state, retries });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let webhooks = webhooks.clone();
        async move { webhooks.handle(event.payload).await }
    }))
    .await
}
