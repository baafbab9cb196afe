//! The one SQS sender: a queue the functions put their own messages on (the dispatcher's
//! requeued jobs, the webhooks' delayed retries), each message delayed up to SQS's 15 minutes.

use std::time::Duration;

/// SQS's longest delivery delay.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

/// The SQS client of a function's queues, its requests named in its `aws call` lines.
pub fn client(config: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    crate::sdk_client!(aws_sdk_sqs, config)
}

#[derive(Clone)]
pub struct Queue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl Queue {
    pub fn new(client: aws_sdk_sqs::Client, url: &str) -> Self {
        Queue {
            client,
            url: url.to_string(),
        }
    }

    /// Sends `body`, delivered after `delay` (at most [`MAX_DELAY`]); the error names SQS's cause.
    pub async fn send(&self, body: String, delay: Duration) -> Result<(), String> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(delay.min(MAX_DELAY).as_secs() as i32)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
    }
}
