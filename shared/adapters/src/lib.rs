//! MecaPy's adapters: what talks to a service. PostgreSQL (`db`: the pool over verified TLS, one
//! module per table, the migrations, the event outbox), S3 (`storage`), the event bus (`bus`)
//! and the JSON logs (`telemetry`). They build on the domain and on nothing above it.

pub mod bus;
pub mod db;
pub mod storage;
pub mod telemetry;

/// A setting read from the environment that is missing or malformed: start-up fails naming it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl From<db::DbError> for mecapy_domain::error::DomainError {
    fn from(e: db::DbError) -> Self {
        match e {
            db::DbError::Unavailable(cause) => Self::Unavailable {
                service: "database",
                cause,
            },
            other => Self::Internal(error_chain(&other)),
        }
    }
}

impl From<storage::StorageError> for mecapy_domain::error::DomainError {
    fn from(e: storage::StorageError) -> Self {
        match e {
            storage::StorageError::Unavailable(cause) => Self::Unavailable {
                service: "object storage",
                cause,
            },
            other => Self::Internal(other.to_string()),
        }
    }
}

/// `error: cause: cause...`, for logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
