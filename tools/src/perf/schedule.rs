//! When an open-loop socket's requests are meant to go out. A run at `--rate R` over `S`
//! sockets gives each socket `R / S` requests a second at fixed intervals, socket `g` offset by
//! `g / R` so the sockets interleave into one even stream of `R` a second.
//!
//! The intended send time of every request is fixed in advance and never moves: a request that
//! goes out late (its socket had no free slot, or the thread was busy) still has its latency
//! measured from its intended time. That is the correction for coordinated omission — a stalled
//! agent cannot make the generator politely wait and hide the stall from the histogram. Pure
//! arithmetic over `Instant`s passed in: no clock is read here.

use std::time::{Duration, Instant};

/// One socket's open-loop send times: request `k` is meant to go out at
/// `first + k * interval`.
#[derive(Debug, Clone)]
pub struct Schedule {
    first: Instant,
    interval_ns: f64,
    next: u64,
}

impl Schedule {
    /// `per_second` requests a second (more than 0), the first at `first`.
    pub fn new(first: Instant, per_second: f64) -> Schedule {
        Schedule {
            first,
            interval_ns: 1e9 / per_second,
            next: 0,
        }
    }

    /// The schedule of socket `socket` of `sockets` sharing a total of `rate` a second from
    /// `start`.
    pub fn for_socket(start: Instant, rate: f64, sockets: usize, socket: usize) -> Schedule {
        let offset = Duration::from_secs_f64(socket as f64 / rate);
        Schedule::new(start + offset, rate / sockets as f64)
    }

    /// The intended send time of request `k`.
    pub fn at(&self, k: u64) -> Instant {
        self.first + Duration::from_nanos((k as f64 * self.interval_ns) as u64)
    }

    /// The intended send time of the next request.
    pub fn next_at(&self) -> Instant {
        self.at(self.next)
    }

    /// Whether the next request is due at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        self.next_at() <= now
    }

    /// The next request went out (or was given up).
    pub fn advance(&mut self) {
        self.next += 1;
    }

    /// How many requests have gone out.
    pub fn issued(&self) -> u64 {
        self.next
    }

    /// How many requests are meant to go out before `t`: the first `k` with `at(k) >= t`.
    pub fn count_before(&self, t: Instant) -> u64 {
        let Some(elapsed) = t.checked_duration_since(self.first) else {
            return 0;
        };
        let mut k = (elapsed.as_nanos() as f64 / self.interval_ns).ceil() as u64;
        while k > 0 && self.at(k - 1) >= t {
            k -= 1;
        }
        while self.at(k) < t {
            k += 1;
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_spaced_evenly_from_the_first() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, 1000.0);
        assert_eq!(s.at(0), t0);
        assert_eq!(s.at(1), t0 + Duration::from_millis(1));
        assert_eq!(s.at(1500), t0 + Duration::from_millis(1500));
    }

    #[test]
    fn sockets_share_the_rate_and_interleave() {
        let t0 = Instant::now();
        // 4 sockets at 4000/s in total: each 1000/s, offset by 250 µs.
        let all: Vec<Schedule> = (0..4)
            .map(|g| Schedule::for_socket(t0, 4000.0, 4, g))
            .collect();
        let mut times: Vec<Instant> = all.iter().flat_map(|s| (0..3).map(|k| s.at(k))).collect();
        times.sort();
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap.abs_diff(Duration::from_micros(250)) < Duration::from_nanos(2),
                "{gap:?}"
            );
        }
    }

    #[test]
    fn the_next_request_is_due_once_its_time_has_come_and_stays_due_when_late() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 100.0);
        assert!(s.is_due(t0));
        s.advance();
        assert!(!s.is_due(t0 + Duration::from_millis(9)));
        assert!(s.is_due(t0 + Duration::from_millis(10)));
        // Very late: the intended time does not move, so its latency will include the delay.
        let late = t0 + Duration::from_secs(1);
        assert!(s.is_due(late));
        assert_eq!(s.next_at(), t0 + Duration::from_millis(10));
        assert_eq!(s.issued(), 1);
    }

    #[test]
    fn counting_the_requests_meant_before_a_time() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, 1000.0);
        assert_eq!(s.count_before(t0), 0);
        assert_eq!(s.count_before(t0 + Duration::from_nanos(1)), 1);
        assert_eq!(s.count_before(t0 + Duration::from_millis(1)), 1);
        assert_eq!(s.count_before(t0 + Duration::from_micros(1001)), 2);
        assert_eq!(s.count_before(t0 + Duration::from_secs(2)), 2000);
        let odd = Schedule::new(t0, 3.0);
        for k in 0..100 {
            assert_eq!(odd.count_before(odd.at(k)), k);
            assert_eq!(odd.count_before(odd.at(k) + Duration::from_nanos(1)), k + 1);
        }
    }
}
