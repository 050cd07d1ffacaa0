//! The agent's time: [`Millis`], milliseconds since an epoch the caller chooses (the agent uses
//! its own start, read once per request by the worker).
//!
//! The load-balancing rules never read a clock: the worker passes them the current `Millis`,
//! so the rules are exact and their tests instant. Plain data: no I/O, no clock read in here.

use std::time::Duration;

/// A point in time: milliseconds since an epoch the caller chooses (the agent uses its own
/// start). Eight bytes, so that per-host state stays small; the rules only subtract two of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(pub u64);

impl Millis {
    /// The epoch.
    pub const ZERO: Millis = Millis(0);

    /// `secs` seconds (after the epoch, or as a length of time); saturates instead of wrapping.
    pub const fn from_secs(secs: u64) -> Millis {
        Millis(secs.saturating_mul(1000))
    }

    /// How long after `earlier` this is; zero if it is not after it.
    pub const fn since(self, earlier: Millis) -> Millis {
        Millis(self.0.saturating_sub(earlier.0))
    }

    /// This time moved `by` later; saturates.
    pub const fn plus(self, by: Millis) -> Millis {
        Millis(self.0.saturating_add(by.0))
    }
}

impl From<Duration> for Millis {
    /// The whole milliseconds of `d` (for example `start.elapsed()`); saturates.
    fn from(d: Duration) -> Millis {
        Millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_saturate() {
        assert_eq!(Millis(5).since(Millis(9)), Millis::ZERO);
        assert_eq!(Millis::from_secs(u64::MAX), Millis(u64::MAX));
        assert_eq!(Millis(u64::MAX).plus(Millis(1)), Millis(u64::MAX));
        assert_eq!(Millis::from(Duration::from_micros(2500)), Millis(2));
    }
}
