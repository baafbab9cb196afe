//! The migrate step: applies the numbered files of `migrations/` once each, in order, inside a
//! transaction, and records each with its checksum. Re-running is a no-op; a migration edited
//! after it was applied is refused with its name.

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::DbError;

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// Arbitrary constant: serialises concurrent migrate runs on one database.
const LOCK_KEY: i64 = 0x6d65_6361_7079;

#[derive(Debug, PartialEq, Eq)]
pub struct Report {
    pub applied: Vec<String>,
    pub already: usize,
}

pub fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// The version a file name starts with (`0003_tools.sql` → 3).
fn version(name: &str) -> Result<i32, DbError> {
    name.split('_')
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| DbError::Migration(format!("migration {name} does not start with a number")))
}

/// Applies the embedded migrations.
pub async fn run(client: &mut Client) -> Result<Report, DbError> {
    run_list(client, MIGRATIONS).await
}

pub async fn run_list(client: &mut Client, migrations: &[(&str, &str)]) -> Result<Report, DbError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer PRIMARY KEY,
                name       text NOT NULL,
                checksum   text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let result = apply(client, migrations).await;
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    let report = result?;
    unlock?;
    Ok(report)
}

async fn apply(client: &mut Client, migrations: &[(&str, &str)]) -> Result<Report, DbError> {
    let rows = client
        .query("SELECT version, name, checksum FROM schema_migrations", &[])
        .await?;
    let applied: std::collections::HashMap<i32, (String, String)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();

    let mut report = Report {
        applied: vec![],
        already: 0,
    };
    let mut seen = std::collections::HashSet::new();
    for (name, sql) in migrations {
        let v = version(name)?;
        if !seen.insert(v) {
            return Err(DbError::Migration(format!(
                "two migrations share the number {v} ({name})"
            )));
        }
        let sum = checksum(sql);
        if let Some((applied_name, applied_sum)) = applied.get(&v) {
            if *applied_sum != sum {
                return Err(DbError::Migration(format!(
                    "migration {name} was edited after it was applied as {applied_name} \
                     (checksum {applied_sum} then, {sum} now): add a new migration instead"
                )));
            }
            report.already += 1;
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await.map_err(|e| {
            DbError::Migration(format!(
                "migration {name} failed: {}",
                e.as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or(e.to_string())
            ))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&v, name, &sum],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(migration = name, "applied migration");
        report.applied.push(name.to_string());
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_migrations_are_numbered_in_order() {
        let versions: Vec<i32> = MIGRATIONS
            .iter()
            .map(|(n, _)| version(n).unwrap())
            .collect();
        assert!(!versions.is_empty());
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    }

    #[test]
    fn file_without_number_is_refused() {
        assert!(version("users.sql").is_err());
    }
}
