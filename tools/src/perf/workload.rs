//! What a run sends: the request kinds, the weighted mix of `get_host`, `get_route` and `report`
//! (`--mix get_host=90,report=5,get_route=5` or a one-kind `--workload`), the Lars `qps` preset
//! and the `echo` load, and [`MixCycle`], the deterministic order in which a socket takes kinds
//! from a mix. No randomness and no allocation per request: a mix is unrolled once into a short
//! cycle (smooth weighted round robin, so the kinds interleave evenly) that each socket walks
//! from its own starting point.

use serde::Serialize;
use std::fmt;

/// One kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `GetHostRequest` (msgid 4), answered by a `GetHostResponse` with the same `seq`.
    GetHost,
    /// `API_GetRouteRequest` (msgid 7), answered by an `API_GetRouteResponse` for the same key;
    /// it carries no `seq`, so answers are matched to requests by key, oldest first.
    GetRoute,
    /// `ReportRequest` (msgid 6); the agent does not answer, so it is done once sent.
    Report,
    /// A `GetHostRequest` sent to an echo server, answered by the very same bytes.
    Echo,
}

impl Kind {
    /// Every kind, in the order of per-kind counters.
    pub const ALL: [Kind; 4] = [Kind::GetHost, Kind::GetRoute, Kind::Report, Kind::Echo];

    /// Its position in [`Kind::ALL`] and in per-kind counters.
    pub fn index(self) -> usize {
        match self {
            Kind::GetHost => 0,
            Kind::GetRoute => 1,
            Kind::Report => 2,
            Kind::Echo => 3,
        }
    }

    /// Whether a request of this kind waits for an answer.
    pub fn is_answered(self) -> bool {
        self != Kind::Report
    }

    /// The name used in options and output.
    pub fn name(self) -> &'static str {
        match self {
            Kind::GetHost => "get_host",
            Kind::GetRoute => "get_route",
            Kind::Report => "report",
            Kind::Echo => "echo",
        }
    }
}

/// Relative weights of the agent request kinds; at least one is not zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Mix {
    /// Weight of `get_host`.
    pub get_host: u32,
    /// Weight of `get_route`.
    pub get_route: u32,
    /// Weight of `report`.
    pub report: u32,
}

/// Longest cycle a mix may unroll to (after dividing the weights by their common divisor).
pub const MAX_MIX_CYCLE: u32 = 100_000;

impl Mix {
    /// Only `kind` (which must not be [`Kind::Echo`]).
    pub fn only(kind: Kind) -> Mix {
        let mut mix = Mix {
            get_host: 0,
            get_route: 0,
            report: 0,
        };
        *mix.weight_mut(kind) = 1;
        mix
    }

    fn weight_mut(&mut self, kind: Kind) -> &mut u32 {
        match kind {
            Kind::GetHost | Kind::Echo => &mut self.get_host,
            Kind::GetRoute => &mut self.get_route,
            Kind::Report => &mut self.report,
        }
    }

    /// The weight of `kind` (0 for [`Kind::Echo`]).
    pub fn weight(&self, kind: Kind) -> u32 {
        match kind {
            Kind::GetHost => self.get_host,
            Kind::GetRoute => self.get_route,
            Kind::Report => self.report,
            Kind::Echo => 0,
        }
    }

    /// Parses `get_host=90,report=5,get_route=5`: each kind at most once, weights are whole
    /// numbers, kinds left out weigh 0, and the weights must not all be 0.
    pub fn parse(value: &str) -> Result<Mix, String> {
        let mut mix = Mix {
            get_host: 0,
            get_route: 0,
            report: 0,
        };
        let mut seen = Vec::new();
        for part in value.split(',') {
            let Some((name, weight)) = part.split_once('=') else {
                return Err(format!("`{part}` is not KIND=WEIGHT (e.g. get_host=90)"));
            };
            let kind = match name.trim() {
                "get_host" => Kind::GetHost,
                "get_route" => Kind::GetRoute,
                "report" => Kind::Report,
                other => {
                    return Err(format!(
                        "`{other}` is not a request kind (get_host, get_route, report)"
                    ));
                }
            };
            if seen.contains(&kind) {
                return Err(format!("{} is given twice", kind.name()));
            }
            seen.push(kind);
            *mix.weight_mut(kind) = weight
                .trim()
                .parse()
                .map_err(|_| format!("weight `{weight}` of {name} is not a whole number"))?;
        }
        let total = u64::from(mix.get_host) + u64::from(mix.get_route) + u64::from(mix.report);
        if total == 0 {
            return Err("every weight of the mix is 0".to_string());
        }
        if mix
            .reduced()
            .iter()
            .map(|(_, w)| u64::from(*w))
            .sum::<u64>()
            > u64::from(MAX_MIX_CYCLE)
        {
            return Err(format!(
                "the mix's weights need a cycle longer than {MAX_MIX_CYCLE} requests; use smaller weights"
            ));
        }
        Ok(mix)
    }

    /// The kinds with their weights divided by the weights' greatest common divisor.
    fn reduced(&self) -> Vec<(Kind, u32)> {
        let kinds = [Kind::GetHost, Kind::GetRoute, Kind::Report];
        let divisor = kinds.iter().map(|k| self.weight(*k)).fold(0, gcd).max(1);
        kinds
            .iter()
            .map(|k| (*k, self.weight(*k) / divisor))
            .filter(|(_, w)| *w > 0)
            .collect()
    }
}

impl fmt::Display for Mix {
    /// `get_host=90,get_route=5,report=5`, kinds of weight 0 left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for kind in [Kind::GetHost, Kind::GetRoute, Kind::Report] {
            let weight = self.weight(kind);
            if weight > 0 {
                if !first {
                    f.write_str(",")?;
                }
                first = false;
                write!(f, "{}={weight}", kind.name())?;
            }
        }
        Ok(())
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The requests of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Requests to the agent in the proportions of a mix, each to the socket's next key.
    Mix(Mix),
    /// The Lars `qps` tool: per iteration a `get_host`, and when it picked a host, a `report` of
    /// that host with SUCC; one key per thread, one request in flight.
    Qps,
    /// `GetHostRequest`s to an echo server, expecting the same bytes back.
    Echo,
}

impl Load {
    /// The workload's name in output: the one kind of a single-kind mix, `mix`, `qps` or `echo`.
    pub fn name(&self) -> &'static str {
        match self {
            Load::Mix(mix) => {
                let kinds = [Kind::GetHost, Kind::GetRoute, Kind::Report];
                let used: Vec<Kind> = kinds.into_iter().filter(|k| mix.weight(*k) > 0).collect();
                match used.as_slice() {
                    [one] => one.name(),
                    _ => "mix",
                }
            }
            Load::Qps => "qps",
            Load::Echo => "echo",
        }
    }

    /// Whether any request of this load waits for an answer.
    pub fn expects_answers(&self) -> bool {
        match self {
            Load::Mix(mix) => mix.get_host > 0 || mix.get_route > 0,
            Load::Qps | Load::Echo => true,
        }
    }
}

/// The order in which one socket takes request kinds: a fixed cycle in which each kind appears
/// as often as its weight (after reduction), spread as evenly as smooth weighted round robin
/// spreads it, walked from a per-socket starting point so sockets do not move in lockstep.
#[derive(Debug, Clone)]
pub struct MixCycle {
    cycle: Vec<Kind>,
    position: usize,
}

impl MixCycle {
    /// The cycle of `load`, starting at position `start` (modulo its length).
    pub fn new(load: &Load, start: usize) -> MixCycle {
        let cycle = match load {
            Load::Mix(mix) => smooth_round_robin(&mix.reduced()),
            Load::Qps => vec![Kind::GetHost],
            Load::Echo => vec![Kind::Echo],
        };
        let position = start % cycle.len();
        MixCycle { cycle, position }
    }

    /// The kind of the next request.
    pub fn peek(&self) -> Kind {
        self.cycle[self.position]
    }

    /// Moves to the kind after it.
    pub fn advance(&mut self) {
        self.position = (self.position + 1) % self.cycle.len();
    }

    /// The whole cycle.
    pub fn cycle(&self) -> &[Kind] {
        &self.cycle
    }
}

/// Unrolls weights into one cycle: each step every kind gains its weight, the richest kind is
/// taken and pays the total back (nginx's smooth weighted round robin).
fn smooth_round_robin(weights: &[(Kind, u32)]) -> Vec<Kind> {
    let total: i64 = weights.iter().map(|(_, w)| i64::from(*w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut cycle = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (credit, (_, weight)) in current.iter_mut().zip(weights) {
            *credit += i64::from(*weight);
        }
        let best = (0..weights.len())
            .max_by_key(|i| (current[*i], std::cmp::Reverse(*i)))
            .unwrap_or(0);
        current[best] -= total;
        cycle.push(weights[best].0);
    }
    cycle
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_with_kinds_in_any_order_and_missing_ones_at_zero() {
        assert_eq!(
            Mix::parse("get_host=90,report=5,get_route=5"),
            Ok(Mix {
                get_host: 90,
                get_route: 5,
                report: 5
            })
        );
        assert_eq!(Mix::parse("report=1"), Ok(Mix::only(Kind::Report)));
        assert_eq!(
            Mix::parse(" get_host = 3 , get_route=1"),
            Ok(Mix {
                get_host: 3,
                get_route: 1,
                report: 0
            })
        );
    }

    #[test]
    fn bad_mixes_say_what_is_wrong() {
        assert!(Mix::parse("get_host").unwrap_err().contains("KIND=WEIGHT"));
        assert!(
            Mix::parse("gethost=1")
                .unwrap_err()
                .contains("not a request kind")
        );
        assert!(
            Mix::parse("get_host=1,get_host=2")
                .unwrap_err()
                .contains("twice")
        );
        assert!(
            Mix::parse("get_host=-1")
                .unwrap_err()
                .contains("whole number")
        );
        assert!(Mix::parse("get_host=0,report=0").unwrap_err().contains("0"));
        assert!(
            Mix::parse("get_host=99999,report=99998")
                .unwrap_err()
                .contains("cycle")
        );
    }

    #[test]
    fn the_cycle_holds_each_kind_as_often_as_its_reduced_weight_and_interleaves() {
        let mix = Mix::parse("get_host=90,report=5,get_route=5").unwrap();
        let cycle = MixCycle::new(&Load::Mix(mix), 0);
        let kinds = cycle.cycle();
        assert_eq!(kinds.len(), 20);
        let count = |k| kinds.iter().filter(|x| **x == k).count();
        assert_eq!(count(Kind::GetHost), 18);
        assert_eq!(count(Kind::GetRoute), 1);
        assert_eq!(count(Kind::Report), 1);
        // Evenly spread: the two rare kinds are not next to each other.
        let route = kinds.iter().position(|k| *k == Kind::GetRoute).unwrap();
        let report = kinds.iter().position(|k| *k == Kind::Report).unwrap();
        assert!(route.abs_diff(report) >= 5, "{kinds:?}");

        let half = MixCycle::new(&Load::Mix(Mix::parse("get_host=1,report=1").unwrap()), 0);
        assert_eq!(half.cycle(), [Kind::GetHost, Kind::Report]);
    }

    #[test]
    fn sockets_start_at_different_points_of_the_cycle_and_wrap() {
        let mix = Load::Mix(Mix::parse("get_host=1,report=1").unwrap());
        let mut a = MixCycle::new(&mix, 0);
        let b = MixCycle::new(&mix, 1);
        assert_ne!(a.peek(), b.peek());
        let first = a.peek();
        a.advance();
        a.advance();
        assert_eq!(a.peek(), first);
    }

    #[test]
    fn presets_send_one_kind() {
        assert_eq!(MixCycle::new(&Load::Qps, 7).cycle(), [Kind::GetHost]);
        assert_eq!(MixCycle::new(&Load::Echo, 3).cycle(), [Kind::Echo]);
        assert_eq!(Load::Mix(Mix::only(Kind::GetRoute)).name(), "get_route");
        assert_eq!(
            Load::Mix(Mix::parse("get_host=1,report=1").unwrap()).name(),
            "mix"
        );
        assert!(!Load::Mix(Mix::only(Kind::Report)).expects_answers());
    }
}
