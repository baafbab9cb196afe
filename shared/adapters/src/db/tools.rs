//! The `tools` table: what a job can run, and under which limits.

use serde::Serialize;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use super::DbError;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Tool {
    pub id: Uuid,
    pub name: String,
    pub image: String,
    pub memory_mb: i32,
    pub cpus: f64,
    pub timeout_seconds: i32,
    pub pids_limit: i32,
    pub network: bool,
    pub allowed_imports: Vec<String>,
}

const COLUMNS: &str = "id, name, image, memory_mb, cpus::float8 AS cpus, timeout_seconds, \
                       pids_limit, network, allowed_imports";

impl From<&Row> for Tool {
    fn from(r: &Row) -> Self {
        Tool {
            id: r.get("id"),
            name: r.get("name"),
            image: r.get("image"),
            memory_mb: r.get("memory_mb"),
            cpus: r.get("cpus"),
            timeout_seconds: r.get("timeout_seconds"),
            pids_limit: r.get("pids_limit"),
            network: r.get("network"),
            allowed_imports: r.get("allowed_imports"),
        }
    }
}

/// An enabled tool by name.
pub async fn by_name(db: &impl GenericClient, name: &str) -> Result<Option<Tool>, DbError> {
    let row = db
        .query_opt(
            &format!("SELECT {COLUMNS} FROM tools WHERE name = $1 AND enabled"),
            &[&name],
        )
        .await?;
    Ok(row.as_ref().map(Tool::from))
}

/// Changes a tool's wall-clock limit (operators, and tests that need a short timeout).
pub async fn set_timeout(db: &impl GenericClient, name: &str, seconds: i32) -> Result<(), DbError> {
    db.execute(
        "UPDATE tools SET timeout_seconds = $2, updated_at = now() WHERE name = $1",
        &[&name, &seconds],
    )
    .await?;
    Ok(())
}
