//! Rate limits for logs a flood could trigger (hosts flapping between idle and overload, bad
//! datagrams): at most `per_second` lines a second per limiter; what is held back is counted and
//! reported on the next line that is let through, so a flood cannot fill a disk and nothing goes
//! unmentioned. Plain data with the time passed in; one per worker.

use crate::clock::Millis;

/// A per-second line budget.
#[derive(Debug)]
pub struct LogLimit {
    per_second: u32,
    window: u64,
    used: u32,
    suppressed: u64,
}

impl LogLimit {
    /// At most `per_second` lines a second.
    pub fn new(per_second: u32) -> LogLimit {
        LogLimit {
            per_second,
            window: 0,
            used: 0,
            suppressed: 0,
        }
    }

    /// Whether a line may be logged now; `Some(n)` lets it through and says how many lines were
    /// held back since the last one that was.
    pub fn allow(&mut self, now: Millis) -> Option<u64> {
        let window = now.0 / 1000;
        if window != self.window {
            self.window = window;
            self.used = 0;
        }
        if self.used < self.per_second {
            self.used += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_budget_and_counted() {
        let mut limit = LogLimit::new(3);
        let allowed = (0..100)
            .filter(|_| limit.allow(Millis(10)).is_some())
            .count();
        assert_eq!(allowed, 3);
        assert_eq!(limit.allow(Millis(1010)), Some(97));
        assert_eq!(limit.allow(Millis(1020)), Some(0));
    }
}
