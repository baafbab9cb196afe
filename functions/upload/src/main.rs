#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    mecapy_shared::http::run_api("upload", upload::handle).await
}
