#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    mecapy_shared::telemetry::init("api-docs");
    let state = mecapy_shared::AppState::from_env().await?;
    let docs = std::sync::Arc::new(api_docs::Docs::new());
    lambda_http::run(lambda_http::service_fn(move |req| {
        api_docs::handle(state.clone(), docs.clone(), req)
    }))
    .await
}
