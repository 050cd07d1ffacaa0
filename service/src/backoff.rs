//! Capped exponential backoff for reconnects and database retries: `base`, `2 base`, `4 base`,
//! … up to `max`, reset by a success. Plain arithmetic; the caller sleeps.

use std::time::Duration;

/// Capped exponential backoff.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff with no failures yet.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max: max.max(base),
            failures: 0,
        }
    }

    /// Records a failure and returns how long to wait before the next try.
    pub fn fail(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let factor = 1u32 << (self.failures - 1).min(16);
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

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let waits: Vec<u64> = (0..5).map(|_| b.fail().as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 5, 5]);
        assert_eq!(b.succeed(), 5);
        assert_eq!(b.fail().as_secs(), 1);
    }

    #[test]
    fn backoff_survives_many_failures() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_secs(5));
        for _ in 0..100 {
            assert!(b.fail() <= Duration::from_secs(5));
        }
    }
}
