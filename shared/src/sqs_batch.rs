//! The shape every SQS-fed function shares: the records of a batch handled at once (bounded),
//! and the ones that failed reported as batch item failures, so SQS delivers only those again.

use std::future::Future;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::StreamExt;

/// Runs `handle` on each record, `concurrency` at a time; a record whose handling fails (its
/// reason logged, naming `what`) is an item failure of the response.
pub async fn handle<T, F, Fut>(
    event: SqsEvent,
    concurrency: usize,
    what: &str,
    handle: F,
) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let results: Vec<(String, Result<T, String>)> =
        futures_util::stream::iter(event.records.into_iter().map(|message| {
            let id = message.message_id.clone().unwrap_or_default();
            let work = handle(message);
            async move { (id, work.await) }
        }))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut response = SqsBatchResponse::default();
    for (id, result) in results {
        if let Err(reason) = result {
            tracing::warn!(message_id = %id, reason, "{what} not handled; delivered again");
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}
