//! How the delivery poll sends (`delivery.*`): attempts, backoff, poll, lease, concurrency.

use std::time::Duration;

use ticket_platform::config::ConfigSource;

/// How the poll sends.
#[derive(Clone, Debug)]
pub struct DeliverySettings {
    /// Attempts before a notification is FAILED (`delivery.max_attempts`).
    pub max_attempts: i32,
    /// The wait after the first failed attempt, doubling after each (`delivery.backoff_ms`),
    /// up to `delivery.max_backoff_ms`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// How often due rows are looked for when none was found (`delivery.poll_ms`).
    pub poll: Duration,
    /// How long a claim keeps other workers off a row (`delivery.lease_ms`).
    pub lease: Duration,
    /// Sends under way at once (`delivery.concurrency`).
    pub concurrency: usize,
}

impl DeliverySettings {
    pub fn load(source: &mut ConfigSource) -> Self {
        let max_attempts = source.get("delivery.max_attempts", 5i32);
        if !(1..=100).contains(&max_attempts) {
            source.invalid("delivery.max_attempts", "must be between 1 and 100");
        }
        let concurrency = source.get("delivery.concurrency", 16usize);
        if !(1..=256).contains(&concurrency) {
            source.invalid("delivery.concurrency", "must be between 1 and 256");
        }
        let lease = source.millis("delivery.lease_ms", Duration::from_secs(60));
        if lease < Duration::from_secs(1) {
            source.invalid("delivery.lease_ms", "must be at least 1000");
        }
        Self {
            max_attempts,
            backoff: source.millis("delivery.backoff_ms", Duration::from_secs(1)),
            max_backoff: source.millis("delivery.max_backoff_ms", Duration::from_secs(300)),
            poll: {
                let poll = source.millis("delivery.poll_ms", Duration::from_millis(200));
                if poll < Duration::from_millis(10) {
                    source.invalid("delivery.poll_ms", "must be at least 10");
                }
                poll
            },
            lease,
            concurrency,
        }
    }

    /// The longest one attempt may take (the contact's lookup and the send): half the lease, so
    /// that no other worker claims a notification whose attempt is still under way.
    pub fn attempt_limit(&self) -> Duration {
        self.lease / 2
    }

    /// The wait after the `attempts`-th failed attempt.
    pub fn backoff_after(&self, attempts: i32) -> Duration {
        let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        self.backoff
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DeliverySettings {
        DeliverySettings {
            max_attempts: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
            poll: Duration::from_millis(200),
            lease: Duration::from_secs(60),
            concurrency: 4,
        }
    }

    #[test]
    fn an_attempt_ends_well_within_its_lease() {
        let settings = settings();
        assert_eq!(settings.attempt_limit(), Duration::from_secs(30));
    }

    #[test]
    fn the_wait_doubles_up_to_its_ceiling() {
        let settings = settings();
        let waits: Vec<u64> = (1..=5)
            .map(|n| settings.backoff_after(n).as_secs())
            .collect();
        assert_eq!(waits, vec![1, 2, 4, 5, 5]);
    }
}
