use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    mecapy_shared::telemetry::init("upload-rules");
    let state = mecapy_shared::AppState::from_env().await?;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>| {
            let state = state.clone();
            async move {
                Ok::<_, lambda_runtime::Error>(upload_rules::handle(&state, event.payload).await)
            }
        },
    ))
    .await
}
