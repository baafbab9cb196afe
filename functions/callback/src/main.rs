use mecapy_shared::config::LoginConfig;
use mecapy_shared::AppState;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    mecapy_shared::telemetry::init("callback");
    let state = AppState::from_env()
        .await?
        .with_login(LoginConfig::from_env()?);
    mecapy_shared::http::run_with(state, callback::handle).await
}
