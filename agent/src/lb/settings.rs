//! The `[loadbalance]` settings: the thresholds and timeouts of the load-balancing rules, with
//! Lars' key names and defaults, and the check of their ranges.
//!
//! Plain data, no I/O, no clock, no locks. The config loader reads and validates it once at
//! start; every [`Route`](super::route::Route) then shares one read-only copy.

use lars_service::ConfigError;
use serde::Deserialize;

/// The `[loadbalance]` section of `lars_agent.toml`. Every key is optional; a missing key takes
/// the Lars default, an unknown key is an error.
///
/// A host is *idle* (healthy, picked in turn) or *overloaded* (picked only as a probe). Its
/// state is decided by *virtual* counts that start from a bias (`init_succ_cnt` virtual successes
/// for an idle host, `init_err_cnt` virtual errors for an overloaded one) so that a few reports
/// cannot flip it, by runs of consecutive results, and by the real error rate over a time window.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LbSettings {
    /// While some hosts of a route are overloaded, one pick in every `probe_num + 1` goes to an
    /// overloaded host (a probe) to find out whether it recovered; when every host is
    /// overloaded, the other picks answer OVERLOAD. Default 10. At least 1.
    pub probe_num: u32,
    /// Virtual successes an idle host starts each window with, so that a few early failures do
    /// not overload it. Default 180. At least 1.
    pub init_succ_cnt: u32,
    /// Virtual errors an overloaded host starts with, so that it needs a run of successes to
    /// come back. Default 5. At least 1.
    pub init_err_cnt: u32,
    /// An idle host whose virtual error rate `verr / (vsucc + verr)` rises above this after a
    /// failure is overloaded. Default 0.1. In `0..=1`.
    pub err_rate: f64,
    /// An overloaded host whose virtual success rate `vsucc / (vsucc + verr)` rises above this
    /// after a success is idle again. Default 0.5. In `0..=1`.
    pub succ_rate: f64,
    /// An idle host with this many failures in a row is overloaded. Default 15. At least 1.
    pub contin_err_limit: u32,
    /// An overloaded host with this many successes in a row is idle again. Default 15. At
    /// least 1.
    pub contin_succ_limit: u32,
    /// At the end of an idle host's window, a real error rate `rerr / (rsucc + rerr)` of at least
    /// this overloads it; below it the host starts a fresh window. Default 0.7. In `0..=1`.
    pub window_err_rate: f64,
    /// Length of an idle host's window, in seconds: the first report at least this long after
    /// the window began judges the window and starts a new one. Default 15. At least 1.
    pub idle_timeout: u64,
    /// Seconds after which an overloaded host is set idle again at its next report, whatever its
    /// counts. Default 15. At least 1.
    pub overload_timeout: u64,
    /// Seconds after which a route's hosts are pulled from dns again (also how long a missing
    /// route is cached as missing, and how long an unanswered dns request is waited for).
    /// Default 15. At least 1.
    pub update_timeout: u64,
    /// Panic mode (Envoy's panic threshold, counted as Lars counts: by overloaded hosts): when
    /// more than this percent of a route's hosts are overloaded, its picks go round robin over
    /// all of its hosts, overloaded ones included, instead of loading the few idle hosts with
    /// everything or answering OVERLOAD to every caller. 0 (the default) turns it off: Lars'
    /// behaviour. In `0..=99` (at 100 no route could ever be more overloaded than that).
    pub panic_threshold: u32,
    /// Push-empty protection: percent (0..=100) of a shard's routes with hosts that may lose
    /// every host in one burst (empty dns answers within `update_timeout` of each other) that
    /// no route edit accounts for (the dns did not mark it `removed`). An unaccounted empty
    /// answer waits one `update_timeout`; if its burst is larger, the route keeps its last hosts.
    /// 100 turns the protection off for unmarked answers. Default 50.
    pub push_empty_threshold: u8,
}

impl Default for LbSettings {
    fn default() -> LbSettings {
        LbSettings {
            probe_num: 10,
            init_succ_cnt: 180,
            init_err_cnt: 5,
            err_rate: 0.1,
            succ_rate: 0.5,
            contin_err_limit: 15,
            contin_succ_limit: 15,
            window_err_rate: 0.7,
            idle_timeout: 15,
            overload_timeout: 15,
            update_timeout: 15,
            panic_threshold: 0,
            push_empty_threshold: 50,
        }
    }
}

impl LbSettings {
    /// Checks the ranges the types cannot express; `origin` names the file (or "built-in
    /// defaults") in the error, which also names the key as `loadbalance.KEY`.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let counts = [
            ("loadbalance.probe_num", self.probe_num),
            ("loadbalance.init_succ_cnt", self.init_succ_cnt),
            ("loadbalance.init_err_cnt", self.init_err_cnt),
            ("loadbalance.contin_err_limit", self.contin_err_limit),
            ("loadbalance.contin_succ_limit", self.contin_succ_limit),
        ];
        for (key, value) in counts {
            if value == 0 {
                return Err(ConfigError::invalid(origin, key, "must be at least 1"));
            }
        }
        let rates = [
            ("loadbalance.err_rate", self.err_rate),
            ("loadbalance.succ_rate", self.succ_rate),
            ("loadbalance.window_err_rate", self.window_err_rate),
        ];
        for (key, value) in rates {
            if !(0.0..=1.0).contains(&value) {
                return Err(ConfigError::invalid(
                    origin,
                    key,
                    format!("{value} is not a rate between 0 and 1"),
                ));
            }
        }
        let timeouts = [
            ("loadbalance.idle_timeout", self.idle_timeout),
            ("loadbalance.overload_timeout", self.overload_timeout),
            ("loadbalance.update_timeout", self.update_timeout),
        ];
        for (key, value) in timeouts {
            if value == 0 {
                return Err(ConfigError::invalid(
                    origin,
                    key,
                    "must be at least 1 (seconds)",
                ));
            }
        }
        if self.panic_threshold > 99 {
            return Err(ConfigError::invalid(
                origin,
                "loadbalance.panic_threshold",
                format!(
                    "{} is not a percent of a route's hosts (0..=99: panic when more than this percent are overloaded; 0 turns panic mode off)",
                    self.panic_threshold
                ),
            ));
        }
        if self.push_empty_threshold > 100 {
            return Err(ConfigError::invalid(
                origin,
                "loadbalance.push_empty_threshold",
                "a percentage, 0..=100",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        loadbalance: LbSettings,
    }

    fn parse(text: &str) -> Result<LbSettings, String> {
        toml::from_str::<File>(text)
            .map(|f| f.loadbalance)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_lars_values() {
        let lb = LbSettings::default();
        assert_eq!(lb.probe_num, 10);
        assert_eq!(lb.init_succ_cnt, 180);
        assert_eq!(lb.init_err_cnt, 5);
        assert_eq!(lb.err_rate, 0.1);
        assert_eq!(lb.succ_rate, 0.5);
        assert_eq!(lb.contin_err_limit, 15);
        assert_eq!(lb.contin_succ_limit, 15);
        assert_eq!(lb.window_err_rate, 0.7);
        assert_eq!(lb.idle_timeout, 15);
        assert_eq!(lb.overload_timeout, 15);
        assert_eq!(lb.update_timeout, 15);
        assert_eq!(lb.panic_threshold, 0, "panic mode is off: Lars' behaviour");
        lb.validate("built-in defaults").unwrap();
    }

    #[test]
    fn a_missing_section_or_key_takes_the_default() {
        assert_eq!(parse("").unwrap(), LbSettings::default());
        let lb = parse("[loadbalance]\nprobe_num = 3\nerr_rate = 1\n").unwrap();
        assert_eq!(lb.probe_num, 3);
        assert_eq!(lb.err_rate, 1.0);
        assert_eq!(lb.init_succ_cnt, 180);
    }

    #[test]
    fn an_unknown_key_or_a_negative_count_is_named() {
        let err = parse("[loadbalance]\nprobe_nun = 3\n").unwrap_err();
        assert!(err.contains("probe_nun"), "{err}");
        let err = parse("[loadbalance]\ncontin_err_limit = -1\n").unwrap_err();
        assert!(err.contains("contin_err_limit"), "{err}");
        let err = parse("[loadbalance]\npanic_threshold = -5\n").unwrap_err();
        assert!(err.contains("panic_threshold"), "{err}");
    }

    #[test]
    fn out_of_range_values_name_the_key_and_reason() {
        type Spoil = fn(&mut LbSettings);
        let cases: [(Spoil, &str); 11] = [
            (|l| l.probe_num = 0, "loadbalance.probe_num"),
            (|l| l.init_succ_cnt = 0, "loadbalance.init_succ_cnt"),
            (|l| l.init_err_cnt = 0, "loadbalance.init_err_cnt"),
            (|l| l.contin_succ_limit = 0, "loadbalance.contin_succ_limit"),
            (|l| l.err_rate = 1.5, "loadbalance.err_rate"),
            (|l| l.succ_rate = -0.1, "loadbalance.succ_rate"),
            (
                |l| l.window_err_rate = f64::NAN,
                "loadbalance.window_err_rate",
            ),
            (|l| l.idle_timeout = 0, "loadbalance.idle_timeout"),
            (|l| l.update_timeout = 0, "loadbalance.update_timeout"),
            (|l| l.panic_threshold = 100, "loadbalance.panic_threshold"),
            (
                |l| l.push_empty_threshold = 101,
                "loadbalance.push_empty_threshold",
            ),
        ];
        for (spoil, key) in cases {
            let mut lb = LbSettings::default();
            spoil(&mut lb);
            let err = lb.validate("conf/lars_agent.toml").unwrap_err().to_string();
            assert!(
                err.contains(key) && err.contains("conf/lars_agent.toml"),
                "{err}"
            );
        }
        let edges = LbSettings {
            err_rate: 0.0,
            succ_rate: 1.0,
            window_err_rate: 1.0,
            panic_threshold: 99,
            ..LbSettings::default()
        };
        edges.validate("x").unwrap();
    }
}
