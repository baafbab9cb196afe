//! `migrate`: applies the embedded migrations to `DATABASE_URL` (or the URL given as argument).

use mecapy_shared::db::migrate;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    mecapy_shared::telemetry::init("migrate");
    let url = match std::env::args().nth(1) {
        Some(url) => url,
        None => std::env::var("DATABASE_URL").map_err(|_| "DATABASE_URL is not set")?,
    };
    let (mut client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("cannot connect to PostgreSQL: {e}"))?;
    tokio::spawn(connection);
    let report = migrate::run(&mut client).await?;
    println!(
        "migrations: {} applied now ({}), {} already applied",
        report.applied.len(),
        report.applied.join(", "),
        report.already
    );
    Ok(())
}
