//! Everything the MecaPy functions share: configuration, the HTTP edge, authentication, storage,
//! the database and telemetry. Functions are thin recipes over this crate.

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod http;
pub mod jobs;
pub mod rules;
pub mod sandbox;
pub mod sqs_batch;
pub mod uploads;
pub mod webhooks;

pub use mecapy_adapters::{bus, db, storage, telemetry};
pub use mecapy_domain::events;
pub use mecapy_pyvalidate as validation;

pub use app::AppState;
pub use http::ApiError;
