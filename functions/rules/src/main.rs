#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    mecapy_shared::telemetry::init("rules");
    let state = mecapy_shared::AppState::from_env().await?;
    lambda_http::run(lambda_http::service_fn(move |req| {
        rules::handle(state.clone(), req)
    }))
    .await
}
