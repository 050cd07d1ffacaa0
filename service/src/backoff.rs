//! Capped exponential backoff with jitter for reconnects and database retries. The ceiling of the
//! n-th wait in a row is `base · 2ⁿ⁻¹`, capped at `max`, reset by a success; the wait itself is
//! drawn from the upper half of it ("equal jitter"), so a fleet of agents that lost the same dns
//! at the same moment does not come back to it in lock step. Plain arithmetic and a seedable RNG
//! ([`Backoff::seeded`] makes tests exact); the caller sleeps.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// Capped exponential backoff with equal jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
    rng: SmallRng,
}

impl Backoff {
    /// A backoff with no failures yet, its jitter seeded from the operating system, so two
    /// processes (or two uplinks of one) never draw the same waits.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff::with_rng(base, max, SmallRng::from_os_rng())
    }

    /// A backoff whose jitter is drawn from `seed`: the same seed gives the same waits.
    pub fn seeded(base: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff::with_rng(base, max, SmallRng::seed_from_u64(seed))
    }

    fn with_rng(base: Duration, max: Duration, rng: SmallRng) -> Backoff {
        Backoff {
            base,
            max: max.max(base),
            failures: 0,
            rng,
        }
    }

    /// Records a failure and returns how long to wait before the next try: a wait in
    /// `[ceiling / 2, ceiling]` (see [`Backoff::ceiling`]).
    ///
    /// Equal jitter rather than full jitter (`[0, ceiling]`, the AWS architecture blog's
    /// "Exponential Backoff and Jitter"): full jitter spreads a fleet's retries the widest, but
    /// it may draw a wait near zero, and an uplink whose peer refuses connections would then
    /// retry at once, again and again. Half the ceiling as a floor keeps the backoff a backoff
    /// (never less than `base / 2` between tries) and still spreads the fleet over half of
    /// each ceiling.
    pub fn fail(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let ceiling = self.ceiling();
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(self.rng.random_range(0..=spread))
    }

    /// The longest wait [`Backoff::fail`] draws after the failures so far: `base · 2ⁿ⁻¹` after
    /// `n` failures in a row, capped at `max` (`base` before any failure).
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32 << self.failures.saturating_sub(1).min(16);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// Records a success; returns how many failures came before it.
    pub fn succeed(&mut self) -> u32 {
        std::mem::take(&mut self.failures)
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_ceiling_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::seeded(Duration::from_secs(1), Duration::from_secs(5), 7);
        let ceilings: Vec<u64> = (0..5)
            .map(|_| {
                b.fail();
                b.ceiling().as_secs()
            })
            .collect();
        assert_eq!(ceilings, vec![1, 2, 4, 5, 5]);
        assert_eq!(b.succeed(), 5);
        b.fail();
        assert_eq!(b.ceiling().as_secs(), 1);
    }

    #[test]
    fn every_wait_lies_in_the_upper_half_of_its_ceiling() {
        for seed in 0..50 {
            let mut b = Backoff::seeded(100 * MS, 1000 * MS, seed);
            for _ in 0..12 {
                let wait = b.fail();
                let ceiling = b.ceiling();
                assert!(
                    wait >= ceiling / 2 && wait <= ceiling,
                    "seed {seed}, failure {}: {wait:?} outside [{:?}, {ceiling:?}]",
                    b.failures(),
                    ceiling / 2
                );
            }
        }
    }

    #[test]
    fn waits_spread_over_the_upper_half() {
        // 1000 agents failing once each: their first waits cover the band from base / 2 to base,
        // not one point of it.
        let waits: Vec<Duration> = (0..1000)
            .map(|seed| Backoff::seeded(100 * MS, 1000 * MS, seed).fail())
            .collect();
        let lowest = waits.iter().min().copied().unwrap_or_default();
        let highest = waits.iter().max().copied().unwrap_or_default();
        assert!(lowest < 55 * MS, "lowest first wait {lowest:?}");
        assert!(highest > 95 * MS, "highest first wait {highest:?}");
    }

    #[test]
    fn the_same_seed_draws_the_same_waits_and_different_seeds_diverge() {
        let draw = |seed| {
            let mut b = Backoff::seeded(100 * MS, 1000 * MS, seed);
            (0..8).map(|_| b.fail()).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn backoff_survives_many_failures() {
        let mut b = Backoff::new(10 * MS, Duration::from_secs(5));
        for _ in 0..100 {
            assert!(b.fail() <= Duration::from_secs(5));
        }
        assert_eq!(b.ceiling(), Duration::from_secs(5));
    }
}
