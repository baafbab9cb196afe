//! The HTTP edge of the MecaPy functions: request parsing, problem+json errors and the one
//! mapping from domain errors, CORS and headers, authentication, the wire types and the OpenAPI
//! document, and the runners of the API and queue functions. The use cases are
//! `mecapy_usecases`; functions are thin recipes over both.

pub mod api;
pub mod app;
pub mod auth;
pub mod http;
pub mod sqs_batch;

pub use mecapy_adapters::{bus, db, queue, storage, telemetry};
pub use mecapy_domain::{backoff, events};
pub use mecapy_pyvalidate as validation;
pub use mecapy_usecases::{config, jobs, rules, uploads, webhooks};

pub use app::AppState;
pub use http::ApiError;
