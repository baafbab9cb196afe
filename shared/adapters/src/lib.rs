//! MecaPy's adapters: what talks to a service. PostgreSQL (`db`: the pool over verified TLS, one
//! module per table, the migrations, the event outbox), S3 (`storage`), the event bus (`bus`)
//! and the JSON logs (`telemetry`). They build on the domain and on nothing above it.

pub mod bus;
pub mod db;
pub mod queue;
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

/// An adapter's failure as the domain sees it: its service down (worth retrying), or internal.
macro_rules! to_domain_error {
    ($error:ty, $unavailable:path, $service:literal, $describe:expr) => {
        impl From<$error> for mecapy_domain::error::DomainError {
            fn from(e: $error) -> Self {
                match e {
                    $unavailable(cause) => Self::Unavailable {
                        service: $service,
                        cause,
                    },
                    other => Self::Internal($describe(&other)),
                }
            }
        }
    };
}
to_domain_error!(
    db::DbError,
    db::DbError::Unavailable,
    "database",
    |e: &db::DbError| error_chain(e)
);
to_domain_error!(
    storage::StorageError,
    storage::StorageError::Unavailable,
    "object storage",
    |e: &storage::StorageError| e.to_string()
);

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
