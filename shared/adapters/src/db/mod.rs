//! PostgreSQL: the connection pool, the migrate step, how to connect (`tls`), and one module per
//! table with its SQL.

pub mod files;
pub mod jobs;
pub mod migrate;
pub mod outbox;
pub mod rules;
pub mod tls;
pub mod tools;
pub mod users;
pub mod webhooks;

use std::time::Duration;

pub use deadpool_postgres::Pool;
use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod, Runtime};
pub use tokio_postgres::GenericClient;

pub use tls::DatabaseConfig;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database query failed")]
    Query(#[source] tokio_postgres::Error),
    #[error("invalid database url: {0}")]
    BadUrl(String),
    #[error("{0}")]
    Migration(String),
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        // A server-side error is a query problem, except the ones that say the server is going
        // away or full; anything without a server error is the connection failing.
        let unavailable_codes = [
            "57P01", "57P02", "57P03", "53300", "08000", "08003", "08006",
        ];
        match e.as_db_error() {
            Some(db) if !unavailable_codes.contains(&db.code().code()) => DbError::Query(e),
            // The cause (a refused certificate, a timeout) is in the source chain only.
            _ => DbError::Unavailable(crate::error_chain(&e)),
        }
    }
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => DbError::Unavailable(other.to_string()),
        }
    }
}

/// A pool that connects lazily, so a cold start never waits on the database; getting a
/// connection gives up after a few seconds instead of hanging the invocation.
pub fn pool(database: &DatabaseConfig, max_size: usize) -> Result<Pool, DbError> {
    let manager = Manager::from_config(
        database.pg().clone(),
        database.tls(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| DbError::BadUrl(e.to_string()))
}
