//! The one backoff: the wait before the `n`th retry (from 1) doubles from `base`, at most `max`.
//! The dispatcher's redeliveries, the webhooks' retries and the bus's calls each set their own
//! `base` and `max`.

use std::time::Duration;

/// `base · 2^(n-1)`, at most `max` (`n` 0 counts as 1).
pub fn backoff(base: Duration, max: Duration, n: u32) -> Duration {
    let factor = 1u32 << n.saturating_sub(1).min(20);
    base.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_from_the_base_up_to_the_cap() {
        let wait = |n| backoff(Duration::from_secs(2), Duration::from_secs(300), n).as_secs();
        for (n, secs) in [(0, 2), (1, 2), (2, 4), (8, 256), (9, 300), (u32::MAX, 300)] {
            assert_eq!(wait(n), secs, "retry {n}");
        }
    }
}
