use std::sync::Arc;

use mecapy_shared::config::EdgeConfig;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    mecapy_shared::telemetry::init("api-docs");
    // No database, no object storage, no bus: the edge's settings and the rendered document.
    let edge = Arc::new(EdgeConfig::from_env()?);
    let docs = Arc::new(api_docs::Docs::new());
    mecapy_shared::http::run_with(edge, move |edge, req| {
        api_docs::handle(edge, docs.clone(), req)
    })
    .await
}
