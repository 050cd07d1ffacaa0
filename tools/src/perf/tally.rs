//! What a generator thread counts: per request kind, what was sent, answered, timed out or
//! failed to send; `get_host` answers by retcode; answers that matched nothing or made no sense;
//! and the latencies in an HDR histogram (microseconds, 1 µs to 100 s, 3 significant digits —
//! the same bounds as lars-bench's benchmarks). Only requests whose intended send time falls in
//! the measured window are counted in [`Stats`]; everything, warm-up included, also feeds the
//! [`Window`] of the current second for the progress line and the per-second series.
//!
//! One [`Tally`] per thread, shared by that thread's socket tasks (never across threads); the
//! thread hands its window and stats to the main thread once a second and starts afresh, and
//! the main thread adds them up ([`Stats::add`]).

use crate::perf::workload::Kind;
use hdrhistogram::Histogram;
use std::time::{Duration, Instant};

/// Largest latency the histogram holds, in microseconds (larger ones are recorded as this).
pub const MAX_LATENCY_US: u64 = 100_000_000;

/// An empty latency histogram: 1 µs to 100 s, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static histogram bounds are valid")
}

/// `duration` in whole microseconds, at most [`MAX_LATENCY_US`].
fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .min(MAX_LATENCY_US)
}

/// The number of retcode counters: SUCC, OVERLOAD, SYSTEM_ERROR, NOEXIST, and any other value.
pub const RETCODES: usize = 5;

/// Counters of one stretch of a run (no latencies).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests sent, by [`Kind::index`]; reports that follow a qps `get_host` included.
    pub sent: [u64; 4],
    /// Requests answered, by kind.
    pub answers: [u64; 4],
    /// Requests not answered within the timeout, by kind.
    pub timeouts: [u64; 4],
    /// Requests the socket refused to send, by kind.
    pub send_errors: [u64; 4],
    /// `get_host` answers by retcode: SUCC, OVERLOAD, SYSTEM_ERROR, NOEXIST, other.
    pub retcodes: [u64; RETCODES],
    /// `get_route` answers that listed no host.
    pub route_empty: u64,
    /// Operations completed: answers, and reports sent as requests of their own (not the reports
    /// of qps iterations, whose iteration completes with its `get_host` answer).
    pub completed: u64,
    /// Answers that matched no request in flight: late answers to requests that timed out, or
    /// duplicates.
    pub stray: u64,
    /// Datagrams that were not a well-formed answer of an expected kind, or (echo) came back
    /// different from what was sent.
    pub bad: u64,
    /// Receive errors from the sockets.
    pub recv_errors: u64,
    /// Open loop: requests due before the end that were never sent because every slot of their
    /// socket was waiting for an answer.
    pub unsent: u64,
}

impl Counts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &Counts) {
        let add = |a: &mut [u64], b: &[u64]| a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        add(&mut self.sent, &other.sent);
        add(&mut self.answers, &other.answers);
        add(&mut self.timeouts, &other.timeouts);
        add(&mut self.send_errors, &other.send_errors);
        add(&mut self.retcodes, &other.retcodes);
        self.route_empty += other.route_empty;
        self.completed += other.completed;
        self.stray += other.stray;
        self.bad += other.bad;
        self.recv_errors += other.recv_errors;
        self.unsent += other.unsent;
    }

    /// Requests sent or attempted, every kind.
    pub fn requests(&self) -> u64 {
        self.sent.iter().sum::<u64>() + self.send_errors.iter().sum::<u64>()
    }

    /// Requests answered, every kind.
    pub fn answers(&self) -> u64 {
        self.answers.iter().sum()
    }

    /// Timeouts, every kind.
    pub fn timeouts(&self) -> u64 {
        self.timeouts.iter().sum()
    }

    /// Send errors, every kind.
    pub fn send_errors(&self) -> u64 {
        self.send_errors.iter().sum()
    }
}

/// The counters and latencies of the measured part of a stretch of a run.
#[derive(Debug, Clone)]
pub struct Stats {
    /// The counters.
    pub counts: Counts,
    /// Latencies of answered requests, in microseconds.
    pub latency: Histogram<u64>,
    /// Open loop: how long after its intended time each request went out, in microseconds (a
    /// generator that keeps its schedule shows tens of µs; more means it, or its CPU, could not
    /// keep up, and that delay is part of every latency).
    pub send_lag: Histogram<u64>,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats::new()
    }
}

impl Stats {
    /// Nothing counted yet.
    pub fn new() -> Stats {
        Stats {
            counts: Counts::default(),
            latency: latency_histogram(),
            send_lag: latency_histogram(),
        }
    }

    /// Adds `other` to these stats.
    pub fn add(&mut self, other: &Stats) {
        self.counts.add(&other.counts);
        // Both histograms have the same bounds and `other` saturates at them, so every value of
        // `other` fits in `self` and this cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.send_lag.add(&other.send_lag);
    }
}

/// What the progress line and the per-second series show of one second: operations completed
/// and timeouts, warm-up included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// Operations completed in the second.
    pub completed: u64,
    /// Timeouts in the second.
    pub timeouts: u64,
}

impl Window {
    /// Adds `other` to this window.
    pub fn add(&mut self, other: &Window) {
        self.completed += other.completed;
        self.timeouts += other.timeouts;
    }
}

/// One thread's counters since it last handed them over.
#[derive(Debug)]
pub struct Tally {
    measure_start: Instant,
    stats: Stats,
    window: Window,
}

impl Tally {
    /// An empty tally of a run whose measured window opens at `measure_start`.
    pub fn new(measure_start: Instant) -> Tally {
        Tally {
            measure_start,
            stats: Stats::new(),
            window: Window::default(),
        }
    }

    /// Whether a request meant to go out at `intended` is measured.
    pub fn is_measured(&self, intended: Instant) -> bool {
        intended >= self.measure_start
    }

    /// The window and stats since the last call, leaving this tally empty.
    pub fn take(&mut self) -> (Window, Stats) {
        (
            std::mem::take(&mut self.window),
            std::mem::take(&mut self.stats),
        )
    }

    /// The stats so far, for tests.
    pub fn counts(&self) -> &Counts {
        &self.stats.counts
    }

    /// A request of `kind` went out.
    pub fn sent(&mut self, kind: Kind, measured: bool) {
        if measured {
            self.stats.counts.sent[kind.index()] += 1;
        }
    }

    /// An open-loop request went out `lag` after its intended time.
    pub fn send_lag(&mut self, measured: bool, lag: Duration) {
        if measured {
            self.stats.send_lag.saturating_record(micros(lag));
        }
    }

    /// A request of `kind` could not be sent.
    pub fn send_failed(&mut self, kind: Kind, measured: bool) {
        if measured {
            self.stats.counts.send_errors[kind.index()] += 1;
        }
    }

    /// An operation completed without an answer (a report sent as a request of its own).
    pub fn completed(&mut self, measured: bool) {
        self.window.completed += 1;
        if measured {
            self.stats.counts.completed += 1;
        }
    }

    /// A request of `kind` was answered `latency` after it was meant to go out.
    pub fn answered(&mut self, kind: Kind, measured: bool, latency: Duration) {
        self.window.completed += 1;
        if measured {
            let counts = &mut self.stats.counts;
            counts.answers[kind.index()] += 1;
            counts.completed += 1;
            self.stats.latency.saturating_record(micros(latency).max(1));
        }
    }

    /// A `get_host` answer carried `retcode`.
    pub fn retcode(&mut self, retcode: i32, measured: bool) {
        if measured {
            let slot = usize::try_from(retcode)
                .ok()
                .filter(|r| *r < RETCODES - 1)
                .unwrap_or(RETCODES - 1);
            self.stats.counts.retcodes[slot] += 1;
        }
    }

    /// A `get_route` answer listed no host.
    pub fn route_empty(&mut self, measured: bool) {
        if measured {
            self.stats.counts.route_empty += 1;
        }
    }

    /// A request of `kind` was not answered in time.
    pub fn timed_out(&mut self, kind: Kind, measured: bool) {
        self.window.timeouts += 1;
        if measured {
            self.stats.counts.timeouts[kind.index()] += 1;
        }
    }

    /// An answer matched nothing in flight (counted if it arrived in the measured window).
    pub fn stray(&mut self, now: Instant) {
        if now >= self.measure_start {
            self.stats.counts.stray += 1;
        }
    }

    /// A datagram was not a well-formed, expected answer.
    pub fn bad(&mut self, now: Instant) {
        if now >= self.measure_start {
            self.stats.counts.bad += 1;
        }
    }

    /// A receive failed.
    pub fn recv_error(&mut self, now: Instant) {
        if now >= self.measure_start {
            self.stats.counts.recv_errors += 1;
        }
    }

    /// `n` measured requests were due but never sent.
    pub fn unsent(&mut self, n: u64) {
        self.stats.counts.unsent += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_requests_meant_for_the_measured_window_are_counted_but_all_are_shown() {
        let t0 = Instant::now();
        let mut tally = Tally::new(t0 + Duration::from_secs(1));
        assert!(!tally.is_measured(t0));
        assert!(tally.is_measured(t0 + Duration::from_secs(1)));
        tally.sent(Kind::GetHost, false);
        tally.answered(Kind::GetHost, false, Duration::from_micros(10));
        tally.sent(Kind::GetHost, true);
        tally.answered(Kind::GetHost, true, Duration::from_micros(20));
        tally.timed_out(Kind::GetHost, false);
        let (window, stats) = tally.take();
        assert_eq!(
            window,
            Window {
                completed: 2,
                timeouts: 1
            }
        );
        assert_eq!(stats.counts.sent[Kind::GetHost.index()], 1);
        assert_eq!(stats.counts.answers(), 1);
        assert_eq!(stats.counts.timeouts(), 0);
        assert_eq!(stats.latency.len(), 1);
        assert_eq!(stats.latency.max(), 20);
        let (window, stats) = tally.take();
        assert_eq!(window, Window::default());
        assert_eq!(stats.counts, Counts::default());
    }

    #[test]
    fn retcodes_outside_lars_four_are_counted_as_other() {
        let mut tally = Tally::new(Instant::now());
        for code in [0, 1, 2, 3, 3, 4, -1] {
            tally.retcode(code, true);
        }
        assert_eq!(tally.counts().retcodes, [1, 1, 1, 2, 2]);
    }

    #[test]
    fn latencies_are_whole_microseconds_clamped_to_the_histogram() {
        let mut tally = Tally::new(Instant::now());
        tally.answered(Kind::Echo, true, Duration::from_nanos(300));
        tally.answered(Kind::Echo, true, Duration::from_secs(1000));
        let (_, stats) = tally.take();
        assert_eq!(stats.latency.min(), 1);
        assert!(stats.latency.max() >= MAX_LATENCY_US);
    }

    #[test]
    fn stats_add_up() {
        let mut a = Stats::new();
        let mut b = Stats::new();
        a.counts.sent[0] = 2;
        b.counts.sent[0] = 3;
        b.counts.unsent = 1;
        a.latency.record(5).unwrap();
        b.latency.record(7).unwrap();
        a.add(&b);
        assert_eq!(a.counts.sent[0], 5);
        assert_eq!(a.counts.unsent, 1);
        assert_eq!(a.counts.requests(), 5);
        assert_eq!(a.latency.len(), 2);
    }
}
