//! MecaPy's domain: what a job, a file, a key and an event are, and the rules between them.
//! Pure: no HTTP, no SQL, no AWS; every other crate builds on it and it builds on none of them.

pub mod backoff;
pub mod error;
pub mod events;
pub mod files;
pub mod identity;
pub mod job;
pub mod keys;
pub mod messages;
