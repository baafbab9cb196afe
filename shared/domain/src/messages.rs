//! Messages on the compute queue besides the bucket's S3 events: one place builds and reads them.

use uuid::Uuid;

/// Asks the dispatcher to run `job` (the sweep sends it for a job whose message was lost).
pub fn dispatch(job: Uuid) -> String {
    serde_json::json!({"type": "DispatchJob", "version": 1, "job_id": job}).to_string()
}

/// The job a [`dispatch`] message names; `None` for any other message.
pub fn job_to_dispatch(message: &serde_json::Value) -> Option<Uuid> {
    (message["type"] == "DispatchJob")
        .then(|| message["job_id"].as_str()?.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_messages_round_trip() {
        let id = Uuid::new_v4();
        let body: serde_json::Value = serde_json::from_str(&dispatch(id)).unwrap();
        assert_eq!(job_to_dispatch(&body), Some(id));
        let other = serde_json::json!({"type": "DispatchJob", "job_id": "nope"});
        assert_eq!(job_to_dispatch(&other), None);
        assert_eq!(job_to_dispatch(&serde_json::json!({})), None);
    }
}
