//! Backoff for records that must be delivered again. Left alone, a failed record comes back
//! only when the queue's visibility timeout (longer than the function's) expires; this makes it
//! visible again after `base * 2^(receives-1)`, capped, so a transient failure (engine down,
//! image not built yet) is retried in seconds rather than minutes, and a poison message reaches
//! the dead-letter queue after `maxReceiveCount` quick attempts.

use std::collections::HashMap;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsMessage;
use tokio::sync::Mutex;

pub struct RetryBackoff {
    client: aws_sdk_sqs::Client,
    base: Duration,
    max: Duration,
    /// Queue ARN → queue URL.
    urls: Mutex<HashMap<String, String>>,
}

impl RetryBackoff {
    pub fn new(client: aws_sdk_sqs::Client, base: Duration, max: Duration) -> Self {
        RetryBackoff {
            client,
            base,
            max,
            urls: Mutex::new(HashMap::new()),
        }
    }

    /// The delay before delivery number `receives + 1`.
    pub fn delay(&self, receives: u32) -> Duration {
        delay(self.base, self.max, receives)
    }

    /// Makes the record visible again after `delay`. Best effort: on failure the record simply
    /// waits for the queue's visibility timeout.
    pub async fn postpone(&self, record: &SqsMessage, delay: Duration) {
        let (Some(arn), Some(handle)) = (&record.event_source_arn, &record.receipt_handle) else {
            return;
        };
        let url = match self.queue_url(arn).await {
            Ok(url) => url,
            Err(e) => return tracing::warn!(arn, error = e, "no queue URL: default visibility"),
        };
        let changed = self
            .client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(handle)
            .visibility_timeout(delay.as_secs().min(43_199) as i32)
            .send()
            .await;
        match changed {
            Ok(_) => {
                tracing::info!(message_id = ?record.message_id, delay_s = delay.as_secs(), "retry scheduled")
            }
            Err(e) => {
                tracing::warn!(message_id = ?record.message_id, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "could not change the visibility: default visibility")
            }
        }
    }

    async fn queue_url(&self, arn: &str) -> Result<String, String> {
        if let Some(url) = self.urls.lock().await.get(arn) {
            return Ok(url.clone());
        }
        // arn:aws:sqs:{region}:{account}:{name}
        let parts: Vec<&str> = arn.split(':').collect();
        let [_, _, "sqs", _, account, name] = parts[..] else {
            return Err(format!("not an SQS queue ARN: {arn}"));
        };
        let url = self
            .client
            .get_queue_url()
            .queue_name(name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())?
            .queue_url
            .ok_or("GetQueueUrl answered without a URL")?;
        self.urls.lock().await.insert(arn.to_string(), url.clone());
        Ok(url)
    }
}

fn delay(base: Duration, max: Duration, receives: u32) -> Duration {
    mecapy_shared::backoff::backoff(base, max, receives)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_from_the_base_and_is_capped() {
        let (base, max) = (Duration::from_secs(5), Duration::from_secs(60));
        let delays: Vec<u64> = (1..=6).map(|r| delay(base, max, r).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 60, 60]);
        assert_eq!(delay(base, max, 0).as_secs(), 5);
        assert_eq!(delay(base, max, u32::MAX).as_secs(), 60);
    }
}
