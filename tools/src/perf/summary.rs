//! The result of a run: [`Report`] — built from the plan and what the engine measured — with the
//! verdict that decides the exit status, rendered either as the human summary
//! ([`Report::to_text`]) or as one JSON object ([`Report::to_json`]) with the same fields and the
//! options applied. Pure functions of their inputs: no I/O here.
//!
//! The verdict: a run fails (exit status 1) when it sent nothing, when it expected answers and
//! got none, when nothing completed, or when timeouts and send errors together exceed
//! [`MAX_FAILED_PERCENT`] of the requests.

use crate::perf::load::Outcome;
use crate::perf::options::{AppliedOptions, Plan, Target};
use crate::perf::tally::Counts;
use crate::perf::workload::{Kind, Load};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Timeouts plus send errors above this share of the requests fail the run.
pub const MAX_FAILED_PERCENT: f64 = 1.0;

/// What one kind of request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KindReport {
    /// Requests sent.
    pub sent: u64,
    /// Requests answered (always 0 for reports, which are not answered).
    pub answers: u64,
    /// Requests not answered in time.
    pub timeouts: u64,
    /// Requests the socket refused.
    pub send_errors: u64,
}

/// `get_host` answers by Lars return code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[allow(non_snake_case)]
pub struct Retcodes {
    /// 0: a host was picked.
    pub SUCC: u64,
    /// 1: every host of the route is overloaded.
    pub OVERLOAD: u64,
    /// 2: the agent could not answer.
    pub SYSTEM_ERROR: u64,
    /// 3: the route does not exist (yet).
    pub NOEXIST: u64,
    /// Any other value.
    pub other: u64,
}

/// Latency percentiles of the answered requests, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Latencies recorded.
    pub samples: u64,
    /// The smallest.
    pub min: u64,
    /// The mean.
    pub mean: f64,
    /// The median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p99_9: u64,
    /// The largest.
    pub max: u64,
}

impl Latency {
    /// The percentiles of `histogram`, or `None` when it is empty.
    pub fn of(histogram: &Histogram<u64>) -> Option<Latency> {
        (!histogram.is_empty()).then(|| Latency {
            samples: histogram.len(),
            min: histogram.min(),
            mean: histogram.mean(),
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p99_9: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        })
    }
}

/// One second of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SecondReport {
    /// Its number from the start, 1 for the first.
    pub second: u32,
    /// `warmup` or `measure`.
    pub phase: &'static str,
    /// Operations completed in it.
    pub completed: u64,
    /// Timeouts in it.
    pub timeouts: u64,
}

/// The result of a run; serialises as the `--json` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Always `lars-perf`.
    pub tool: &'static str,
    /// The options applied.
    pub options: AppliedOptions,
    /// Seconds measured.
    pub measured_secs: f64,
    /// Wall-clock seconds from the start to the last answer or timeout (warm-up and the wait for
    /// the last requests included).
    pub wall_secs: f64,
    /// Requests sent or attempted in the measured window, every kind.
    pub requests: u64,
    /// Answers to them.
    pub answers: u64,
    /// Requests not answered within the timeout.
    pub timeouts: u64,
    /// Timeouts as a percentage of the requests.
    pub timeout_pct: f64,
    /// Requests the sockets refused to send.
    pub send_errors: u64,
    /// Operations completed: answers, and reports sent as requests of their own (qps:
    /// iterations).
    pub completed: u64,
    /// Completed operations per measured second.
    pub throughput_per_sec: f64,
    /// Per request kind (only the kinds sent).
    pub by_kind: BTreeMap<&'static str, KindReport>,
    /// `get_host` answers by retcode (agent target only).
    pub retcodes: Option<Retcodes>,
    /// `get_route` answers that listed no host (when get_route was sent).
    pub get_route_empty: Option<u64>,
    /// Answers that matched no request in flight (late or duplicate).
    pub stray: u64,
    /// Datagrams that were not an expected answer, or echoes that came back different.
    pub bad: u64,
    /// Socket receive errors.
    pub recv_errors: u64,
    /// Open loop: requests due in the measured window that were never sent for want of a free
    /// slot.
    pub unsent: u64,
    /// Latencies of the answered requests (none when nothing was answered).
    pub latency_us: Option<Latency>,
    /// Open loop: how long after their intended time the requests went out (none for a closed
    /// loop). Part of every latency above; large values mean the generator fell behind.
    pub send_lag_us: Option<Latency>,
    /// Each full second of warm-up and measurement.
    pub per_second: Vec<SecondReport>,
    /// Whether the run is good (exit status 0).
    pub ok: bool,
    /// Why it is not.
    pub problem: Option<String>,
}

impl Report {
    /// The report of `outcome`, measured as `plan` says.
    pub fn new(plan: &Plan, outcome: &Outcome) -> Report {
        let counts = &outcome.stats.counts;
        let requests = counts.requests();
        let timeouts = counts.timeouts();
        let measured_secs = plan.duration.as_secs_f64();
        let used = kinds_of(&plan.load);
        let by_kind = used
            .iter()
            .map(|kind| {
                let i = kind.index();
                (
                    kind.name(),
                    KindReport {
                        sent: counts.sent[i],
                        answers: counts.answers[i],
                        timeouts: counts.timeouts[i],
                        send_errors: counts.send_errors[i],
                    },
                )
            })
            .collect();
        let [succ, overload, system_error, noexist, other] = counts.retcodes;
        let last_second = (plan.warmup + plan.duration).as_secs_f64().floor() as usize;
        let warmup_secs = plan.warmup.as_secs_f64();
        let per_second = outcome
            .seconds
            .iter()
            .take(last_second)
            .enumerate()
            .map(|(i, window)| SecondReport {
                second: i as u32 + 1,
                phase: if (i + 1) as f64 <= warmup_secs {
                    "warmup"
                } else {
                    "measure"
                },
                completed: window.completed,
                timeouts: window.timeouts,
            })
            .collect();
        let problem = verdict(&plan.load, counts);
        Report {
            tool: "lars-perf",
            options: plan.applied(),
            measured_secs,
            wall_secs: outcome.elapsed.as_secs_f64(),
            requests,
            answers: counts.answers(),
            timeouts,
            timeout_pct: percent(timeouts, requests),
            send_errors: counts.send_errors(),
            completed: counts.completed,
            throughput_per_sec: counts.completed as f64 / measured_secs,
            by_kind,
            retcodes: (plan.target == Target::Agent && used.contains(&Kind::GetHost)).then_some(
                Retcodes {
                    SUCC: succ,
                    OVERLOAD: overload,
                    SYSTEM_ERROR: system_error,
                    NOEXIST: noexist,
                    other,
                },
            ),
            get_route_empty: used.contains(&Kind::GetRoute).then_some(counts.route_empty),
            stray: counts.stray,
            bad: counts.bad,
            recv_errors: counts.recv_errors,
            unsent: counts.unsent,
            latency_us: Latency::of(&outcome.stats.latency),
            send_lag_us: Latency::of(&outcome.stats.send_lag),
            per_second,
            ok: problem.is_none(),
            problem,
        }
    }

    /// The process exit status this report calls for: 0 or 1.
    pub fn exit_code(&self) -> i32 {
        if self.ok { 0 } else { 1 }
    }

    /// One JSON object, on one line.
    pub fn to_json(&self) -> String {
        // A struct of numbers, strings, options and maps with string keys always serialises.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The human summary.
    pub fn to_text(&self) -> String {
        let o = &self.options;
        let mut out = String::new();
        let last_port = u32::from(o.base_port) + u32::from(o.shards) - 1;
        let what = match o.target {
            Target::Agent => "agent",
            Target::Echo => "echo server",
        };
        let loop_kind = match o.rate {
            Some(rate) => format!(
                "open loop at {}/s (latency from the intended send time)",
                grouped(rate.round() as u64)
            ),
            None => "closed loop".to_string(),
        };
        let _ = writeln!(
            out,
            "lars-perf: {} on {what} {}:{}..{last_port}, {loop_kind}",
            match &o.mix {
                Some(mix) if o.workload == "mix" => format!("mix {mix}"),
                _ => o.workload.to_string(),
            },
            o.agent,
            o.base_port,
        );
        let _ = writeln!(
            out,
            "  {} thread(s) x {} socket(s) x {} in flight, {} key(s) (modid {}, cmdid {}), timeout {} ms",
            o.threads,
            o.sockets,
            o.outstanding,
            grouped(o.keys),
            o.modid,
            o.cmdid,
            o.timeout_ms
        );
        let _ = writeln!(
            out,
            "  measured {:.2} s after {:.2} s of warm-up",
            o.duration_secs, o.warmup_secs
        );
        let kinds: Vec<String> = self
            .by_kind
            .iter()
            .map(|(name, k)| format!("{name} {}", grouped(k.sent + k.send_errors)))
            .collect();
        let _ = writeln!(
            out,
            "requests     {}  ({})",
            grouped(self.requests),
            kinds.join(", ")
        );
        let _ = writeln!(out, "answers      {}", grouped(self.answers));
        let _ = writeln!(
            out,
            "timeouts     {} ({:.2}%)",
            grouped(self.timeouts),
            self.timeout_pct
        );
        if let Some(r) = &self.retcodes {
            let _ = write!(
                out,
                "retcodes     SUCC {}  OVERLOAD {}  SYSTEM_ERROR {}  NOEXIST {}",
                grouped(r.SUCC),
                grouped(r.OVERLOAD),
                grouped(r.SYSTEM_ERROR),
                grouped(r.NOEXIST)
            );
            if r.other > 0 {
                let _ = write!(out, "  other {}", grouped(r.other));
            }
            out.push('\n');
        }
        if let Some(empty) = self.get_route_empty {
            let _ = writeln!(out, "get_route    {} empty route(s)", grouped(empty));
        }
        let troubles = [
            ("send errors", self.send_errors),
            ("recv errors", self.recv_errors),
            ("stray answers", self.stray),
            ("bad answers", self.bad),
            ("unsent", self.unsent),
        ];
        let troubles: Vec<String> = troubles
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{name} {}", grouped(*n)))
            .collect();
        if !troubles.is_empty() {
            let _ = writeln!(out, "problems     {}", troubles.join("  "));
        }
        let unit = if o.workload == "qps" {
            "iterations/s"
        } else {
            "/s"
        };
        let _ = writeln!(
            out,
            "throughput   {} {unit}  ({} completed)",
            grouped(self.throughput_per_sec.round() as u64),
            grouped(self.completed)
        );
        match &self.latency_us {
            Some(l) => {
                let _ = writeln!(
                    out,
                    "latency      p50 {} µs  p90 {} µs  p99 {} µs  p99.9 {} µs  max {} µs",
                    grouped(l.p50),
                    grouped(l.p90),
                    grouped(l.p99),
                    grouped(l.p99_9),
                    grouped(l.max)
                );
            }
            None => {
                let _ = writeln!(out, "latency      no answers");
            }
        }
        if let Some(l) = &self.send_lag_us {
            let _ = writeln!(
                out,
                "send lag     p50 {} µs  p99 {} µs  max {} µs  (behind schedule; part of the latency)",
                grouped(l.p50),
                grouped(l.p99),
                grouped(l.max)
            );
        }
        match &self.problem {
            None => out.push_str("result       ok\n"),
            Some(problem) => {
                let _ = writeln!(out, "result       FAILED: {problem}");
            }
        }
        out
    }
}

/// The kinds a load sends.
fn kinds_of(load: &Load) -> Vec<Kind> {
    match load {
        Load::Mix(mix) => [Kind::GetHost, Kind::GetRoute, Kind::Report]
            .into_iter()
            .filter(|k| mix.weight(*k) > 0)
            .collect(),
        Load::Qps => vec![Kind::GetHost, Kind::Report],
        Load::Echo => vec![Kind::Echo],
    }
}

/// Why a run failed, or `None` when it is good.
pub fn verdict(load: &Load, counts: &Counts) -> Option<String> {
    let requests = counts.requests();
    if requests == 0 {
        return Some("no request was sent in the measured window".to_string());
    }
    if load.expects_answers() && counts.answers() == 0 {
        return Some(format!(
            "nothing was answered ({} timeouts of {} requests)",
            grouped(counts.timeouts()),
            grouped(requests)
        ));
    }
    if counts.completed == 0 {
        return Some("nothing completed".to_string());
    }
    let failed = counts.timeouts() + counts.send_errors();
    let share = percent(failed, requests);
    if share > MAX_FAILED_PERCENT {
        return Some(format!(
            "{} timeouts and {} send errors are {share:.2}% of {} requests, more than {MAX_FAILED_PERCENT}%",
            grouped(counts.timeouts()),
            grouped(counts.send_errors()),
            grouped(requests)
        ));
    }
    None
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// `1234567` as `1,234,567`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perf::options::parse;
    use crate::perf::tally::{Stats, Window};
    use std::time::Duration;

    fn outcome(counts: Counts, latencies: &[u64]) -> Outcome {
        let mut stats = Stats::new();
        stats.counts = counts;
        for l in latencies {
            stats.latency.record(*l).unwrap();
        }
        Outcome {
            stats,
            seconds: vec![
                Window {
                    completed: 10,
                    timeouts: 0
                };
                4
            ],
            elapsed: Duration::from_secs(3),
        }
    }

    fn get_host_counts(sent: u64, answers: u64, timeouts: u64) -> Counts {
        let mut counts = Counts::default();
        counts.sent[0] = sent;
        counts.answers[0] = answers;
        counts.timeouts[0] = timeouts;
        counts.retcodes[3] = answers;
        counts.completed = answers;
        counts
    }

    #[test]
    fn the_json_object_has_the_documented_fields() {
        let plan = parse(&["--warmup", "1", "--duration", "2", "--json"]).unwrap();
        let report = Report::new(&plan, &outcome(get_host_counts(100, 100, 0), &[10, 20, 30]));
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        for field in [
            "tool",
            "options",
            "measured_secs",
            "wall_secs",
            "requests",
            "answers",
            "timeouts",
            "timeout_pct",
            "send_errors",
            "completed",
            "throughput_per_sec",
            "by_kind",
            "retcodes",
            "get_route_empty",
            "stray",
            "bad",
            "recv_errors",
            "unsent",
            "latency_us",
            "send_lag_us",
            "per_second",
            "ok",
            "problem",
        ] {
            assert!(json.get(field).is_some(), "no {field} in {json}");
        }
        assert_eq!(json["tool"], "lars-perf");
        assert_eq!(json["requests"], 100);
        assert_eq!(json["throughput_per_sec"], 50.0);
        assert_eq!(json["retcodes"]["NOEXIST"], 100);
        assert_eq!(json["retcodes"]["SUCC"], 0);
        assert_eq!(json["by_kind"]["get_host"]["answers"], 100);
        assert!(json["by_kind"].get("report").is_none());
        assert_eq!(json["latency_us"]["p50"], 20);
        assert_eq!(json["latency_us"]["max"], 30);
        assert_eq!(json["latency_us"]["samples"], 3);
        assert!(json["get_route_empty"].is_null());
        assert_eq!(json["ok"], true);
        assert!(json["problem"].is_null());
        // Three full seconds: one of warm-up, two measured; the drain's fourth is left out.
        let seconds = json["per_second"].as_array().unwrap();
        assert_eq!(seconds.len(), 3);
        assert_eq!(seconds[0]["phase"], "warmup");
        assert_eq!(seconds[1]["phase"], "measure");
        let options = &json["options"];
        assert_eq!(options["target"], "agent");
        assert_eq!(options["workload"], "get_host");
        assert_eq!(options["base_port"], 8888);
        assert_eq!(options["threads"], 1);
        assert_eq!(options["sockets"], 4);
        assert_eq!(options["outstanding"], 16);
        assert_eq!(options["keys"], 1);
        assert_eq!(options["modid"]["first"], 1);
        assert_eq!(options["open_loop"], false);
        assert!(options["rate"].is_null());
        assert_eq!(options["timeout_ms"], 1000);
        assert_eq!(options["mix"]["get_host"], 1);
    }

    #[test]
    fn echo_reports_have_no_retcodes_and_qps_lists_its_reports() {
        let echo = parse(&["--target", "echo"]).unwrap();
        let mut counts = Counts::default();
        counts.sent[Kind::Echo.index()] = 5;
        counts.answers[Kind::Echo.index()] = 5;
        counts.completed = 5;
        let report = Report::new(&echo, &outcome(counts, &[5]));
        assert!(report.retcodes.is_none());
        assert_eq!(report.by_kind.keys().copied().collect::<Vec<_>>(), ["echo"]);
        let qps = parse(&["--workload", "qps"]).unwrap();
        let report = Report::new(&qps, &outcome(get_host_counts(5, 5, 0), &[5]));
        assert_eq!(
            report.by_kind.keys().copied().collect::<Vec<_>>(),
            ["get_host", "report"]
        );
        assert!(report.to_text().contains("iterations/s"));
    }

    #[test]
    fn a_run_without_answers_fails() {
        let plan = parse(&[]).unwrap();
        let report = Report::new(&plan, &outcome(get_host_counts(50, 0, 50), &[]));
        assert!(!report.ok);
        assert_eq!(report.exit_code(), 1);
        assert!(
            report
                .problem
                .as_deref()
                .unwrap()
                .contains("nothing was answered")
        );
        assert!(report.latency_us.is_none());
        assert_eq!(report.timeout_pct, 100.0);
        let text = report.to_text();
        assert!(
            text.contains("FAILED") && text.contains("no answers"),
            "{text}"
        );
    }

    #[test]
    fn more_than_one_percent_of_timeouts_fails_the_run() {
        let load = Load::Mix(crate::perf::workload::Mix::only(Kind::GetHost));
        assert_eq!(verdict(&load, &get_host_counts(1000, 990, 10)), None);
        let problem = verdict(&load, &get_host_counts(1000, 989, 11)).unwrap();
        assert!(problem.contains("1.10%"), "{problem}");
        assert!(
            verdict(&load, &Counts::default())
                .unwrap()
                .contains("no request")
        );
    }

    #[test]
    fn report_only_loads_pass_without_answers_if_they_completed() {
        let load = Load::Mix(crate::perf::workload::Mix::only(Kind::Report));
        let mut counts = Counts::default();
        counts.sent[Kind::Report.index()] = 10;
        counts.completed = 10;
        assert_eq!(verdict(&load, &counts), None);
        counts.completed = 0;
        assert!(
            verdict(&load, &counts)
                .unwrap()
                .contains("nothing completed")
        );
    }

    #[test]
    fn the_summary_names_the_run_and_its_percentiles() {
        let plan = parse(&["--keys", "3", "--rate", "20000", "--duration", "2"]).unwrap();
        let report = Report::new(&plan, &outcome(get_host_counts(40_000, 40_000, 0), &[7, 9]));
        let text = report.to_text();
        for part in [
            "get_host on agent 127.0.0.1:8888..8890",
            "open loop at 20,000/s",
            "1 thread(s) x 4 socket(s) x 16 in flight, 3 key(s)",
            "requests     40,000",
            "NOEXIST 40,000",
            "throughput   20,000 /s",
            "p50 7 µs",
            "result       ok",
        ] {
            assert!(text.contains(part), "no `{part}` in\n{text}");
        }
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1234567), "1,234,567");
    }
}
