//! The demo journey and the end-to-end checks, through the stack deployed to LocalStack
//! (`make deploy`): HTTP to its REST API, objects in its bucket, messages on its queues.
//!
//! - [`env`]: where the stack is (`.run/stack.env`, `infra/local.env`) and whether it answers;
//! - [`api`]: an HTTP client of the API that keeps every answer for the report;
//! - [`auth`]: a development user's real login, provider-signed and forged tokens;
//! - [`journey`]: the demo journey, step by step, with durations;
//! - [`lambda`], [`logs`], [`queues`]: the Lambda, CloudWatch Logs and SQS calls the tests and
//!   the bench need ([`aws`]: the signed requests under the first two).

pub mod api;
pub mod auth;
pub mod aws;
pub mod env;
pub mod journey;
pub mod lambda;
pub mod logs;
pub mod queues;

pub use api::{Api, Failure, Payload, Reply};
pub use env::{SetupError, StackEnv};
pub use journey::{demo_journey, DemoOptions, DemoResult, Journey, Step};
