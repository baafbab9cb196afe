//! The shape every SQS-fed function shares: the records of a batch handled at once (bounded),
//! and the ones that failed reported as batch item failures, so SQS delivers only those again.

use std::future::Future;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::StreamExt;

/// An SQS-fed function's whole `main`: its telemetry, its context from the environment (once per
/// cold start) and the Lambda runtime calling `handler` for each batch.
pub async fn run<F, Fut>(service: &'static str, handler: F) -> Result<(), lambda_http::Error>
where
    F: Fn(mecapy_usecases::Context, SqsEvent) -> Fut + Send,
    Fut: Future<Output = SqsBatchResponse> + Send,
{
    use lambda_http::{lambda_runtime, LambdaEvent};
    crate::telemetry::init(service);
    let state = mecapy_usecases::Context::from_env().await?;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<SqsEvent>| {
            let state = state.clone();
            // Boxed: the handler's future stays out of the runtime's (deep) future type.
            let work = Box::pin(handler(state, event.payload));
            async move { Ok::<_, lambda_http::Error>(work.await) }
        },
    ))
    .await
}

/// [`handle`] for a function whose records write events: once the batch is handled, the events
/// it recorded are published (what fails to go stays in the outbox for the sweep).
pub async fn handle_and_publish<T, F, Fut>(
    context: &mecapy_usecases::Context,
    event: SqsEvent,
    concurrency: usize,
    what: &str,
    handler: F,
) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let response = handle(event, concurrency, what, handler).await;
    context.publish_events().await;
    response
}

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
