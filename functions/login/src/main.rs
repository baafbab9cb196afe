#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    mecapy_shared::http::run_api("login", login::handle).await
}
