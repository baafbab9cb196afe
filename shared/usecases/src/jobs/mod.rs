//! Jobs: what a submission is (spec), how it is staged and submitted. The state machine, the
//! keys and the queue messages are the domain's (`mecapy_domain`).

pub mod spec;
pub mod submit;
pub use mecapy_domain::job::JobStatus;
pub use mecapy_domain::{keys, messages};
pub use spec::{Input, Manifest, SubmitRequest};
