//! Reading the stack's queues without disturbing the other readers: messages are taken (and
//! deleted) only when they match; the others become visible again after a short hiding.

use std::time::{Duration, Instant};

use aws_sdk_sqs::error::DisplayErrorContext;

use crate::env::StackEnv;

/// Seconds a non-matching message stays hidden once seen, so that the next receive shows
/// newer ones (LocalStack delivers the oldest visible messages first).
const HIDE_SECONDS: i32 = 2;

pub struct Queues {
    pub sqs: aws_sdk_sqs::Client,
}

impl Queues {
    pub async fn new(env: &StackEnv) -> Self {
        let config = mecapy_testkit::sdk_config_at(env.endpoint(), &env.local).await;
        Queues {
            sqs: aws_sdk_sqs::Client::new(&config),
        }
    }

    /// Receives from `url` until `want` messages whose body satisfies `matches` arrived (or
    /// `deadline` passed); deletes and returns those bodies.
    pub async fn take_matching(
        &self,
        url: &str,
        want: usize,
        deadline: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, String> {
        let started = Instant::now();
        let mut taken = Vec::new();
        while taken.len() < want {
            if started.elapsed() > deadline {
                return Err(format!(
                    "{} of {want} expected message(s) on {url} after {} s",
                    taken.len(),
                    deadline.as_secs()
                ));
            }
            let out = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .visibility_timeout(HIDE_SECONDS)
                .wait_time_seconds(1)
                .send()
                .await
                .map_err(|e| format!("receive from {url}: {}", DisplayErrorContext(e)))?;
            for m in out.messages() {
                let body = m.body().unwrap_or("");
                if !matches(body) {
                    continue;
                }
                taken.push(body.to_string());
                if let Some(handle) = m.receipt_handle() {
                    self.sqs
                        .delete_message()
                        .queue_url(url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .map_err(|e| format!("delete from {url}: {}", DisplayErrorContext(e)))?;
                }
            }
        }
        Ok(taken)
    }
}
