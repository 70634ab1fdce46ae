//! Token buckets by key (a buyer, a peer address): a call takes a token; an empty bucket
//! refuses with `RESOURCE_EXHAUSTED`, its status details carrying a `google.rpc.RetryInfo`
//! with the time until a token is back.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::config::ConfigSource;

/// Independent locks, so that concurrent calls of different keys rarely wait for each other.
const SHARDS: usize = 16;

/// Past this many keys a shard drops its full buckets (a full bucket is the same as none), so
/// the map holds only the keys seen within about `burst / per_second`; the next pass waits
/// until the shard has doubled, so a pass costs each new key O(1) on average.
const PRUNE_ABOVE: usize = 4096;

/// `per_second` tokens come back each second, up to `burst`; `per_second = 0` is no limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl Rate {
    pub const OFF: Self = Self {
        per_second: 0.0,
        burst: 0,
    };

    /// `<key>.per_second` and `<key>.burst` (`default`'s unless set).
    pub fn load(source: &mut ConfigSource, key: &str, default: Self) -> Self {
        let per_second = source.get(&format!("{key}.per_second"), default.per_second);
        let burst = source.get(&format!("{key}.burst"), default.burst);
        if !per_second.is_finite() || per_second < 0.0 || (per_second > 0.0 && per_second < 0.001) {
            source.invalid(
                &format!("{key}.per_second"),
                "must be 0 (no limit) or at least 0.001",
            );
        }
        if per_second > 0.0 && burst == 0 {
            source.invalid(&format!("{key}.burst"), "must be at least 1 when limited");
        }
        Self { per_second, burst }
    }

    pub fn is_off(&self) -> bool {
        self.per_second <= 0.0
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Shard<K> {
    buckets: HashMap<K, Bucket>,
    /// Drop full buckets once there are more than this many.
    prune_above: usize,
}

pub struct Limiter<K> {
    rate: Rate,
    hasher: RandomState,
    shards: Vec<Mutex<Shard<K>>>,
}

impl<K: Hash + Eq> Limiter<K> {
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            hasher: RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        buckets: HashMap::new(),
                        prune_above: PRUNE_ABOVE,
                    })
                })
                .collect(),
        }
    }

    /// Takes a token of `key`, or says how long until one is back.
    pub fn take(&self, key: K) -> Result<(), Duration> {
        self.take_at(key, Instant::now())
    }

    fn take_at(&self, key: K, now: Instant) -> Result<(), Duration> {
        if self.rate.is_off() {
            return Ok(());
        }
        let Rate { per_second, burst } = self.rate;
        let burst = f64::from(burst);
        let shard = usize::try_from(self.hasher.hash_one(&key) % SHARDS as u64).unwrap_or(0);
        let mut shard = self.shards[shard]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if shard.buckets.len() > shard.prune_above && !shard.buckets.contains_key(&key) {
            shard.buckets.retain(|_, bucket| {
                let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
                bucket.tokens + elapsed * per_second < burst
            });
            shard.prune_above = (shard.buckets.len() * 2).max(PRUNE_ABOVE);
        }
        let bucket = shard.buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(
                Duration::try_from_secs_f64((1.0 - bucket.tokens) / per_second)
                    .unwrap_or(Duration::MAX),
            )
        }
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().map(|s| s.buckets.len()).unwrap_or(0))
            .sum()
    }
}

/// `RESOURCE_EXHAUSTED` saying `what` was refused, with the retry delay in the status details
/// (`google.rpc.RetryInfo`) and in the message.
pub fn exhausted(what: &str, retry_after: Duration) -> Status {
    // Rounded up: a client that waits the delay given finds its token back.
    let millis = retry_after.as_micros().div_ceil(1000).max(1);
    let delay = Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX));
    Status::with_error_details(
        Code::ResourceExhausted,
        format!("{what}: too many calls; retry in {millis} ms"),
        ErrorDetails::with_retry_info(Some(delay)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refuses_past_its_burst_and_refills_at_its_rate() {
        let limiter = Limiter::new(Rate {
            per_second: 2.0,
            burst: 3,
        });
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take_at("u1", start).is_ok());
        }
        let wait = limiter.take_at("u1", start).expect_err("burst spent");
        assert_eq!(wait, Duration::from_millis(500));
        assert!(limiter.take_at("u2", start).is_ok(), "keys are apart");
        let later = start + Duration::from_millis(500);
        assert!(limiter.take_at("u1", later).is_ok());
        assert!(limiter.take_at("u1", later).is_err());
        let much_later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(
                limiter.take_at("u1", much_later).is_ok(),
                "refilled to the burst only"
            );
        }
        assert!(limiter.take_at("u1", much_later).is_err());
    }

    #[test]
    fn off_is_no_limit_and_full_buckets_are_dropped() {
        let off = Limiter::new(Rate::OFF);
        assert!((0..10_000).all(|_| off.take("u").is_ok()));
        let limiter = Limiter::new(Rate {
            per_second: 1000.0,
            burst: 1,
        });
        let start = Instant::now();
        for key in 0..SHARDS * PRUNE_ABOVE * 2 {
            let _ = limiter.take_at(key, start);
        }
        assert_eq!(
            limiter.keys(),
            SHARDS * PRUNE_ABOVE * 2,
            "no bucket was full yet"
        );
        // A second later every one of them is full again: once a shard has doubled since its
        // last pass, the pass drops them, and only the new keys are left.
        let later = start + Duration::from_secs(1);
        let new = SHARDS * PRUNE_ABOVE * 3;
        for key in 0..new {
            let _ = limiter.take_at(key + 1_000_000, later);
        }
        assert_eq!(limiter.keys(), new, "the full buckets are gone");
    }

    #[test]
    fn the_refusal_carries_its_retry_delay() {
        let status = exhausted("user u1", Duration::from_millis(250));
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("retry in 250 ms"));
        let retry = status.get_details_retry_info().expect("retry info");
        assert_eq!(retry.retry_delay, Some(Duration::from_millis(250)));
    }
}
