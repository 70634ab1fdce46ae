//! `ticketctl bench ...`: measurements whose figures go into `docs/BENCHMARKS.md`.

mod compare;
mod flash_sale;
mod mq;
mod stock;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum Target {
    /// The broker's produce -> consume round trip: single sends and batches at a few
    /// concurrency levels, and through the outbox relay.
    Mq(mq::Args),
    /// Prededucts per second through stock-svc against raw EVALSHA of the same script.
    Stock(stock::Args),
    /// A flash sale end to end: throughput, latencies, messages per saga, the services'
    /// memory and CPU, and whether it sold correctly.
    FlashSale(flash_sale::Args),
    /// The same flash sale as the asynchronous design and as the synchronous chain it
    /// replaces, side by side, then the broker's and Redis' own ceilings.
    Compare(compare::CompareArgs),
}

pub async fn run(target: Target) -> anyhow::Result<()> {
    match target {
        Target::Mq(args) => mq::run(args).await,
        Target::Stock(args) => stock::run(args).await,
        Target::FlashSale(args) => flash_sale::run(args).await,
        Target::Compare(args) => compare::run(args).await,
    }
}

/// Latency percentiles in milliseconds of a set of samples (microseconds).
pub fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted_us.len() - 1) as f64).round() as usize;
    sorted_us[rank.min(sorted_us.len() - 1)] as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::percentile_ms;

    #[test]
    fn percentiles_pick_the_ranked_sample() {
        let samples: Vec<u64> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(percentile_ms(&samples, 50.0), 51.0);
        assert_eq!(percentile_ms(&samples, 99.0), 99.0);
        assert_eq!(percentile_ms(&samples, 100.0), 100.0);
        assert!(percentile_ms(&[], 50.0).is_nan());
    }
}
