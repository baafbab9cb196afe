#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    mecapy_shared::telemetry::init("compute-submit");
    let state = mecapy_shared::AppState::from_env().await?;
    lambda_http::run(lambda_http::service_fn(move |req| {
        compute_submit::handle(state.clone(), req)
    }))
    .await
}
