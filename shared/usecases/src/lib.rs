//! The use cases: submit a job, finish an upload, fire upload rules, deliver a webhook, and the
//! configuration and [`Context`] they work with. They return the domain's errors
//! ([`mecapy_domain::error::DomainError`]); the HTTP edge and the queue consumers decide what
//! those mean to their callers.

pub mod config;
pub mod context;
pub mod jobs;
pub mod rules;
pub mod uploads;
pub mod webhooks;

pub use context::{Context, StartupError};

pub(crate) use mecapy_adapters::{db, storage};
pub(crate) use mecapy_domain::events;
pub(crate) use mecapy_pyvalidate as validation;
