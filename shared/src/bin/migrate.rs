//! `migrate`: applies the embedded migrations to `DATABASE_URL` (or the URL given as argument),
//! over TLS as `sslmode` says (`DATABASE_CA_CERT` is read too).

use mecapy_shared::db::{migrate, DatabaseConfig};
use mecapy_shared::http::error_chain;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    mecapy_shared::telemetry::init("migrate");
    let url = std::env::args().nth(1);
    let database = DatabaseConfig::from_lookup(|name| match (name, &url) {
        ("DATABASE_URL", Some(url)) => Some(url.clone()),
        _ => std::env::var(name).ok(),
    })?;
    let mut client = database
        .connect()
        .await
        .map_err(|e| format!("cannot connect to PostgreSQL: {}", error_chain(&e)))?;
    let report = migrate::run(&mut client).await?;
    println!(
        "migrations: {} applied now ({}), {} already applied",
        report.applied.len(),
        report.applied.join(", "),
        report.already
    );
    Ok(())
}
