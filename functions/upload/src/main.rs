#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    mecapy_shared::app::run_api("upload", upload::handle).await
}
