#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    mecapy_shared::app::run_api("compute-submit", compute_submit::handle).await
}
