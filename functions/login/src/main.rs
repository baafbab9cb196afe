#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    mecapy_shared::telemetry::init("login");
    let state = login::LoginState::from_env()?;
    mecapy_shared::http::run_with(state, login::handle).await
}
