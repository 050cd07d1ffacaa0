//! Whether an uplink's peer is still there while its connection stays open: the rules that call
//! a frozen or hung lars-dns or lars-reporter dead, so the uplink closes the connection and fails
//! over instead of waiting on it forever (the kernel of a stopped process keeps the connection
//! open and acknowledges what it is sent; only the process stops answering and reading).
//!
//! Two rules, both about progress, never about speed:
//! - **unanswered**: while a request is unanswered, some frame must come back within
//!   `answer_timeout`, counted from the later of the request and the last frame heard. A dns
//!   that is slow but keeps answering (a burst of re-asks after a reconnect) is alive; one that
//!   sends nothing at all is not. Answers are counted, not matched: a pushed change counts as an
//!   answer, so a request can look answered when it is not; the idle probe catches that case.
//! - **write stall**: bytes waiting to be written must make some progress within
//!   `write_stall_timeout`. A peer that stops reading closes its receive window; then nothing
//!   more can be written. This is the only sign a frozen lars-reporter gives (it never answers).
//!
//! And one duty: when the connection has been silent for `probe_interval` (nothing asked and
//! nothing heard), [`Verdict::Probe`] asks the uplink to send a request whose answer proves the
//! peer alive; it is then an unanswered request like any other.
//!
//! Sans-I/O: the uplink's shell feeds in what happened with the time ([`Millis`] since an epoch
//! it chooses), asks for the [`Verdict`], and arms its timer at [`Liveness::next_check`]. No
//! socket, no clock, no allocation.

use crate::clock::Millis;
use crate::config::UplinkConfig;

/// Why a connection was called dead although it was open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LivenessFailure {
    /// A request stayed unanswered and nothing came back for `answer_timeout`.
    Unanswered,
    /// A write made no progress for `write_stall_timeout`.
    WriteStall,
}

impl LivenessFailure {
    /// Every reason, in [`crate::stats::UplinkStats::liveness_failures`] order.
    pub const ALL: [LivenessFailure; 2] =
        [LivenessFailure::Unanswered, LivenessFailure::WriteStall];

    /// The label used in the stats.
    pub fn label(self) -> &'static str {
        match self {
            LivenessFailure::Unanswered => "unanswered",
            LivenessFailure::WriteStall => "write_stall",
        }
    }
}

/// The limits one uplink applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessRules {
    /// Longest silence while a request is unanswered.
    pub answer_timeout: Millis,
    /// Silence after which a probe is due; `None` for a peer that never answers.
    pub probe_interval: Option<Millis>,
    /// Longest a pending write may make no progress.
    pub write_stall_timeout: Millis,
}

impl LivenessRules {
    /// The dns uplink's rules: lars-dns answers every request, so all three apply.
    pub fn dns(config: &UplinkConfig) -> LivenessRules {
        LivenessRules {
            answer_timeout: Millis(config.answer_timeout_ms),
            probe_interval: Some(Millis(config.probe_interval_ms)),
            write_stall_timeout: Millis(config.write_stall_timeout_ms),
        }
    }

    /// The report uplink's rules: lars-reporter never answers, so only the write stall applies
    /// (the uplink asks nothing, so the answer rule never fires, and it never probes).
    pub fn report(config: &UplinkConfig) -> LivenessRules {
        LivenessRules {
            probe_interval: None,
            ..LivenessRules::dns(config)
        }
    }

    /// What `failure` means under these rules, for the log.
    pub fn explain(&self, failure: LivenessFailure) -> String {
        match failure {
            LivenessFailure::Unanswered => format!(
                "a request unanswered and nothing heard for {} ms",
                self.answer_timeout.0
            ),
            LivenessFailure::WriteStall => format!(
                "a write made no progress for {} ms (the peer reads nothing)",
                self.write_stall_timeout.0
            ),
        }
    }
}

/// What the uplink should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing: the peer is alive as far as anyone can tell.
    Alive,
    /// Send a request that the peer answers, then call [`Liveness::asked`] (or
    /// [`Liveness::nothing_to_probe`] when there is nothing to ask).
    Probe,
    /// Close the connection and fail over.
    Dead(LivenessFailure),
}

/// The liveness of one connection, from its start.
#[derive(Debug, Clone)]
pub struct Liveness {
    rules: LivenessRules,
    /// Requests sent and not answered yet (answers counted, not matched).
    unanswered: u64,
    /// Where the answer rule counts from: the later of the moment a request became unanswered
    /// and the last frame heard.
    answer_clock: Millis,
    /// The last request sent or frame heard, for the probe.
    last_traffic: Millis,
    /// Since when bytes have waited to be written without any progress.
    stalled_since: Option<Millis>,
}

impl Liveness {
    /// A connection that came up at `now`, with nothing asked or pending.
    pub fn new(rules: LivenessRules, now: Millis) -> Liveness {
        Liveness {
            rules,
            unanswered: 0,
            answer_clock: now,
            last_traffic: now,
            stalled_since: None,
        }
    }

    /// `requests` requests, each expecting an answer, were queued for the peer at `now`.
    pub fn asked(&mut self, requests: u64, now: Millis) {
        if requests == 0 {
            return;
        }
        if self.unanswered == 0 {
            self.answer_clock = now;
        }
        self.unanswered = self.unanswered.saturating_add(requests);
        self.last_traffic = now;
    }

    /// `answers` frames came from the peer at `now` (none is a no-op).
    pub fn heard(&mut self, answers: u64, now: Millis) {
        if answers == 0 {
            return;
        }
        self.unanswered = self.unanswered.saturating_sub(answers);
        self.answer_clock = now;
        self.last_traffic = now;
    }

    /// A probe was due at `now` but the uplink had nothing to ask (it holds no route): the next
    /// one is due a `probe_interval` later. Nothing is lost meanwhile: the first request the
    /// uplink sends falls under the answer rule.
    pub fn nothing_to_probe(&mut self, now: Millis) {
        self.last_traffic = now;
    }

    /// Whether bytes wait to be written at `now`; starts the stall clock when they begin to.
    pub fn writing(&mut self, pending: bool, now: Millis) {
        match (pending, self.stalled_since) {
            (false, _) => self.stalled_since = None,
            (true, None) => self.stalled_since = Some(now),
            (true, Some(_)) => {}
        }
    }

    /// A write at `now` took some bytes: the stall clock starts again.
    pub fn wrote(&mut self, now: Millis) {
        self.stalled_since = Some(now);
    }

    /// Requests not answered yet.
    #[cfg(test)]
    pub fn unanswered(&self) -> u64 {
        self.unanswered
    }

    /// The verdict at `now`.
    pub fn check(&self, now: Millis) -> Verdict {
        if let Some(since) = self.stalled_since
            && now.since(since) >= self.rules.write_stall_timeout
        {
            return Verdict::Dead(LivenessFailure::WriteStall);
        }
        if self.unanswered > 0 {
            if now.since(self.answer_clock) >= self.rules.answer_timeout {
                return Verdict::Dead(LivenessFailure::Unanswered);
            }
        } else if let Some(interval) = self.rules.probe_interval
            && now.since(self.last_traffic) >= interval
        {
            return Verdict::Probe;
        }
        Verdict::Alive
    }

    /// The earliest time [`Liveness::check`] may give another verdict if nothing happens
    /// meanwhile; `None` when only an event can change it.
    pub fn next_check(&self) -> Option<Millis> {
        let stall = self
            .stalled_since
            .map(|since| since.plus(self.rules.write_stall_timeout));
        let answer_or_probe = if self.unanswered > 0 {
            Some(self.answer_clock.plus(self.rules.answer_timeout))
        } else {
            self.rules
                .probe_interval
                .map(|interval| self.last_traffic.plus(interval))
        };
        match (stall, answer_or_probe) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: LivenessRules = LivenessRules {
        answer_timeout: Millis(1000),
        probe_interval: Some(Millis(5000)),
        write_stall_timeout: Millis(2000),
    };

    fn at(ms: u64) -> Millis {
        Millis(ms)
    }

    #[test]
    fn a_request_met_by_silence_for_answer_timeout_is_a_dead_peer() {
        let mut live = Liveness::new(RULES, at(0));
        live.asked(1, at(100));
        assert_eq!(live.next_check(), Some(at(1100)));
        assert_eq!(live.check(at(1099)), Verdict::Alive);
        assert_eq!(
            live.check(at(1100)),
            Verdict::Dead(LivenessFailure::Unanswered)
        );
    }

    #[test]
    fn an_answer_in_time_keeps_the_peer_alive_and_the_link_goes_idle() {
        let mut live = Liveness::new(RULES, at(0));
        live.asked(2, at(100));
        live.heard(2, at(900));
        assert_eq!(live.unanswered(), 0);
        // Nothing is owed: silence is fine until a probe is due.
        assert_eq!(live.check(at(5899)), Verdict::Alive);
        assert_eq!(live.next_check(), Some(at(5900)));
        assert_eq!(live.check(at(5900)), Verdict::Probe);
    }

    #[test]
    fn a_slow_peer_that_keeps_answering_is_alive() {
        // 1000 re-asks after a reconnect, answered a few at a time, each answer within the
        // timeout of the one before: alive all along, although the last answer comes long
        // after the first request.
        let mut live = Liveness::new(RULES, at(0));
        live.asked(1000, at(0));
        for step in 1..=100 {
            let now = at(step * 900);
            assert_eq!(live.check(now), Verdict::Alive, "at {now:?}");
            live.heard(10, now);
        }
        assert_eq!(live.unanswered(), 0);
        assert_eq!(live.check(at(90_000 + 4999)), Verdict::Alive);
    }

    #[test]
    fn answers_that_stop_half_way_are_a_dead_peer() {
        let mut live = Liveness::new(RULES, at(0));
        live.asked(10, at(0));
        live.heard(4, at(500));
        assert_eq!(live.check(at(1499)), Verdict::Alive);
        assert_eq!(
            live.check(at(1500)),
            Verdict::Dead(LivenessFailure::Unanswered),
            "six still unanswered, nothing heard for answer_timeout"
        );
    }

    #[test]
    fn the_answer_clock_starts_with_the_first_unanswered_request_not_the_last_frame() {
        // Idle for a long time, then a request: its full answer_timeout counts from the request.
        let mut live = Liveness::new(RULES, at(0));
        live.heard(1, at(10));
        live.asked(1, at(4000));
        assert_eq!(live.check(at(4999)), Verdict::Alive);
        assert_eq!(
            live.check(at(5000)),
            Verdict::Dead(LivenessFailure::Unanswered)
        );
        // A second request while the first is unanswered does not extend the deadline.
        let mut live = Liveness::new(RULES, at(0));
        live.asked(1, at(100));
        live.asked(1, at(900));
        assert_eq!(
            live.check(at(1100)),
            Verdict::Dead(LivenessFailure::Unanswered)
        );
    }

    #[test]
    fn an_unanswered_probe_is_a_dead_peer() {
        let mut live = Liveness::new(RULES, at(0));
        assert_eq!(live.check(at(5000)), Verdict::Probe);
        live.asked(1, at(5000));
        assert_eq!(live.check(at(5999)), Verdict::Alive);
        assert_eq!(
            live.check(at(6000)),
            Verdict::Dead(LivenessFailure::Unanswered)
        );
    }

    #[test]
    fn traffic_from_the_peer_postpones_the_probe() {
        // Pushed changes prove the peer alive as well as a probe's answer would.
        let mut live = Liveness::new(RULES, at(0));
        live.heard(1, at(4000));
        assert_eq!(live.check(at(8999)), Verdict::Alive);
        assert_eq!(live.check(at(9000)), Verdict::Probe);
    }

    #[test]
    fn with_nothing_to_probe_the_next_probe_is_an_interval_later() {
        let mut live = Liveness::new(RULES, at(0));
        assert_eq!(live.check(at(5000)), Verdict::Probe);
        live.nothing_to_probe(at(5000));
        assert_eq!(live.check(at(5001)), Verdict::Alive);
        assert_eq!(live.next_check(), Some(at(10_000)));
    }

    #[test]
    fn a_write_without_progress_for_write_stall_timeout_is_a_dead_peer() {
        let mut live = Liveness::new(RULES, at(0));
        live.writing(true, at(100));
        // Still pending later: the clock keeps its start.
        live.writing(true, at(1500));
        assert_eq!(live.next_check(), Some(at(2100)));
        assert_eq!(live.check(at(2099)), Verdict::Alive);
        assert_eq!(
            live.check(at(2100)),
            Verdict::Dead(LivenessFailure::WriteStall)
        );
    }

    #[test]
    fn a_write_that_makes_progress_restarts_the_stall_clock_and_an_empty_buffer_stops_it() {
        let mut live = Liveness::new(RULES, at(0));
        live.writing(true, at(0));
        live.wrote(at(1900));
        live.writing(true, at(1900));
        assert_eq!(live.check(at(3899)), Verdict::Alive);
        assert_eq!(
            live.check(at(3900)),
            Verdict::Dead(LivenessFailure::WriteStall)
        );
        live.writing(false, at(3000));
        assert_eq!(live.check(at(4999)), Verdict::Alive);
    }

    #[test]
    fn a_peer_that_never_answers_is_judged_by_its_writes_alone() {
        let config = UplinkConfig {
            answer_timeout_ms: 1000,
            probe_interval_ms: 5000,
            write_stall_timeout_ms: 2000,
            ..UplinkConfig::default()
        };
        let mut live = Liveness::new(LivenessRules::report(&config), at(0));
        // Hours of silence: no probe, no verdict, no timer.
        assert_eq!(live.check(at(3_600_000)), Verdict::Alive);
        assert_eq!(live.next_check(), None);
        live.writing(true, at(3_600_000));
        assert_eq!(live.next_check(), Some(at(3_602_000)));
        assert_eq!(
            live.check(at(3_602_000)),
            Verdict::Dead(LivenessFailure::WriteStall)
        );
        assert_eq!(LivenessRules::dns(&config), RULES);
    }
}
