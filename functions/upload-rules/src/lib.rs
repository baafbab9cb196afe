//! `upload-rules`: the bus's `FileUploaded` events (rule `UploadRulesRule` → SQS) set off the
//! uploader's matching upload rules, each starting its job once (`shared::rules::fire`). A
//! record whose database or storage was unreachable is a batch item failure and comes back;
//! the jobs it had already started are found again, not started twice.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use mecapy_shared::db::DbError;
use mecapy_shared::events::{Event, FileUploaded};
use mecapy_shared::http::error_chain;
use mecapy_shared::rules::{self, Fired};
use mecapy_shared::sqs_batch;
use mecapy_usecases::Context;

/// Records of one batch handled at once.
const CONCURRENCY: usize = 4;

/// Handles a batch; the records that should come back are its item failures.
pub async fn handle(state: Context, event: SqsEvent) -> SqsBatchResponse {
    let state = &state;
    // The events the records wrote (uploads finished, jobs queued) are published after.
    sqs_batch::handle_and_publish(state, event, CONCURRENCY, "upload", |message| async move {
        handle_message(state, &message).await
    })
    .await
}

async fn handle_message(state: &Context, message: &SqsMessage) -> Result<Option<Fired>, String> {
    let uploaded = match uploaded(message.body.as_deref().unwrap_or_default()) {
        Ok(u) => u,
        Err(reason) => {
            tracing::error!(reason, "unreadable FileUploaded event acknowledged");
            return Ok(None);
        }
    };
    let db = state
        .db
        .get()
        .await
        .map_err(|e| error_chain(&DbError::from(e)))?;
    let fired = rules::fire(state, &**db, &uploaded)
        .await
        .map_err(|e| error_chain(&e))?;
    tracing::info!(
        file_id = %uploaded.file_id,
        jobs = ?fired.jobs,
        disabled = fired.disabled.len(),
        skipped = fired.skipped,
        "upload rules fired"
    );
    Ok(Some(fired))
}

/// The `FileUploaded` detail of an EventBridge envelope (as the bus's rule delivers it).
pub fn uploaded(body: &str) -> Result<FileUploaded, String> {
    let envelope: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("not an EventBridge event: {e}"))?;
    let kind = envelope["detail-type"].as_str().unwrap_or_default();
    match Event::parse(kind, envelope["detail"].clone()) {
        Ok(Event::FileUploaded(e)) => Ok(e),
        Ok(_) => Err(format!("a {kind} event, not FileUploaded")),
        Err(e) => Err(format!("{kind:?}: {e}")),
    }
}
