//! `lars-perf`'s command line: the argh definition ([`PerfArgs`], whose doc comments are the
//! `--help` text) and its resolution into a checked [`Plan`] — defaults filled in, presets
//! applied, every combination that cannot work refused with a message naming the option. A
//! refused line exits with status 2 before any socket is opened. Owns no I/O beyond reading the
//! process's CPU affinity mask to check `--cpus`.

use crate::args::{parse_ip, parse_port};
use crate::perf::keys::{IdRange, KeySet, Ports};
use crate::perf::workload::{Kind, Load, Mix};
use argh::FromArgs;
use serde::Serialize;
use std::net::Ipv4Addr;
use std::num::NonZeroU16;
use std::time::Duration;

/// Most threads, sockets per thread, or requests in flight per socket.
pub const MAX_PER_LEVEL: usize = 1024;
/// Most shard ports (the agent's own limit).
pub const MAX_SHARDS: u16 = 64;

/// The command line of `lars-perf`, as argh parses it; its `description`, examples, notes and
/// exit codes are the `--help` text.
#[derive(FromArgs, Debug, Clone, PartialEq)]
#[argh(
    description = "lars-perf: load generator for lars-agent (and for a bare UDP echo server).\n\n\
    Drives --threads threads, each with --sockets UDP sockets, each keeping up to --outstanding \
    requests in flight. All of them together cycle over the key set (--keys, or --modid/--cmdid \
    ranges), each key once before any key again; a key goes to port base_port + \
    (modid+cmdid) % shards, like the client library.\n\n\
    Closed loop by default: a socket sends its next request as soon as an answer (or a timeout) \
    frees a slot, and latency runs from that send. With --rate, an open loop at a fixed total \
    rate: every request has an intended send time, and its latency runs from that time however \
    late it actually went out (corrected for coordinated omission). Latencies go to an HDR \
    histogram in microseconds; a request not answered within --timeout is a timeout, not a \
    latency. Reports are never answered: one counts as done once sent.\n\n\
    Workloads: get_host, get_route or report alone; a --mix of them; qps, the Lars qps tool (per \
    iteration a get_host, then a report of the picked host with SUCC; one key per thread, one \
    request in flight; throughput in iterations/s); echo, the same GetHostRequest datagrams sent \
    to an echo server (echo-server from lars-bench), expecting the exact bytes back.\n\n\
    Clients (--client): classic, the engine above (each thread a tokio runtime over \
    non-blocking sockets woken by epoll); blocking, the original Lars C++ qps client's exact \
    pattern: per thread one UDP socket connected to each shard port, blocking send and recv, one \
    request in flight (with --workload qps: a get_host, its answer, then a report, which is not \
    answered). Blocking runs a closed loop only: --sockets, --outstanding and --rate are \
    refused with it.\n\n\
    Each second, on a terminal only, one progress line on stderr. At the end the summary on \
    stdout, or with --json one JSON object with the same figures and the options applied.",
    example = "lars-perf --threads 1 --sockets 4 --outstanding 16 --duration 5\n\
    lars-perf --workload qps --threads 10 --keys 10\n\
    lars-perf --mix get_host=90,report=5,get_route=5 --keys 1000 --rate 100000 --json\n\
    lars-perf --target echo --base-port 9000 --cpus 1\n\
    lars-perf --client blocking --workload qps --threads 1 --keys 1",
    note = "A warm-up of --warmup seconds runs first and is not measured; requests still in \
    flight at the end are waited for (up to --timeout) but no new ones start.",
    error_code(0, "The run is good."),
    error_code(
        1,
        "Nothing was answered (nothing completed, for report-only loads), timeouts and send errors together exceed 1% of the requests, or the run could not start."
    ),
    error_code(2, "Bad arguments.")
)]
pub struct PerfArgs {
    /// IPv4 address of the agent or echo server (default 127.0.0.1)
    #[argh(option, default = "Ipv4Addr::LOCALHOST", from_str_fn(parse_ip))]
    pub agent: Ipv4Addr,
    /// UDP port of shard 0 (default 8888)
    #[argh(option, default = "8888", from_str_fn(parse_port))]
    pub base_port: u16,
    /// number of shard ports from base-port, 1..64 (default 3)
    #[argh(option, default = "3")]
    pub shards: u16,
    /// what is loaded: agent or echo (default agent; echo implies --workload echo)
    #[argh(option, from_str_fn(parse_target))]
    pub target: Option<Target>,
    /// get_host, get_route, report, qps or echo (default get_host, or echo with --target echo)
    #[argh(option, from_str_fn(parse_workload))]
    pub workload: Option<WorkloadName>,
    /// weighted request mix instead of --workload, e.g. get_host=90,report=5,get_route=5
    #[argh(option, from_str_fn(parse_mix))]
    pub mix: Option<Mix>,
    /// generator threads (default 1)
    #[argh(option)]
    pub threads: Option<usize>,
    /// UDP sockets per thread (default 4; qps: 1)
    #[argh(option)]
    pub sockets: Option<usize>,
    /// requests in flight per socket, up to 1024 (default 16; qps: 1)
    #[argh(option)]
    pub outstanding: Option<usize>,
    /// key set of N keys: modid 1, cmdid 1..N (default 1 key, (1, 1))
    #[argh(option)]
    pub keys: Option<u32>,
    /// modids of the key set: ID or FIRST..LAST, both included (default 1)
    #[argh(option, from_str_fn(parse_range))]
    pub modid: Option<IdRange>,
    /// cmdids of the key set: ID or FIRST..LAST, both included (default 1)
    #[argh(option, from_str_fn(parse_range))]
    pub cmdid: Option<IdRange>,
    /// open loop: requests per second in total (qps: iterations per second); closed loop when
    /// absent
    #[argh(option, from_str_fn(parse_rate))]
    pub rate: Option<f64>,
    /// seconds of warm-up before measuring, fractions allowed (default 1)
    #[argh(option, default = "Duration::from_secs(1)", from_str_fn(parse_seconds))]
    pub warmup: Duration,
    /// seconds to measure, fractions allowed (default 10)
    #[argh(
        option,
        default = "Duration::from_secs(10)",
        from_str_fn(parse_seconds)
    )]
    pub duration: Duration,
    /// milliseconds to wait for an answer before counting a timeout (default 1000)
    #[argh(option, default = "1000")]
    pub timeout: u64,
    /// CPUs to pin the generator threads to, e.g. 0,1 or 2-3; thread i on the i-th (cycling)
    #[argh(option, from_str_fn(parse_cpus))]
    pub cpus: Option<Vec<usize>>,
    /// caller: classic (default: lars-perf's own UDP requests on a tokio runtime, non-blocking
    /// sockets, one datagram per call), blocking (one connected socket per shard port, blocking
    /// send/recv, one request in flight per thread, like Lars' C++ qps client) or fast
    /// (lars-wire's FastClient shared by all threads: picks from route views, reports in
    /// batches; --workload qps or get_host, closed loop only)
    #[argh(option, default = "Client::Classic", from_str_fn(parse_client))]
    pub client: Client,
    /// print one JSON object instead of the summary
    #[argh(switch)]
    pub json: bool,
}

/// How the generator threads talk to the target (`--client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Client {
    /// The tokio engine of [`crate::perf::load`]: non-blocking sockets, any number of sockets
    /// and requests in flight, closed or open loop.
    Classic,
    /// The C++ qps client's pattern ([`crate::perf::blocking`]): per thread one socket
    /// connected to each shard port, blocking `send`/`recv`, one request in flight.
    Blocking,
    /// lars-wire's `FastClient` ([`crate::perf::fast`]): one client shared by every thread,
    /// picking from route views and reporting in batches.
    Fast,
}

/// What is being loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// lars-agent: requests are answered by the agent's rules.
    Agent,
    /// A UDP echo server: every datagram comes back unchanged.
    Echo,
}

/// A `--workload` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadName {
    /// Only this kind of agent request.
    One(Kind),
    /// The Lars `qps` preset.
    Qps,
    /// Echo requests.
    Echo,
}

fn parse_target(value: &str) -> Result<Target, String> {
    match value {
        "agent" => Ok(Target::Agent),
        "echo" => Ok(Target::Echo),
        _ => Err(format!("target `{value}` is not agent or echo")),
    }
}

fn parse_workload(value: &str) -> Result<WorkloadName, String> {
    match value {
        "get_host" => Ok(WorkloadName::One(Kind::GetHost)),
        "get_route" => Ok(WorkloadName::One(Kind::GetRoute)),
        "report" => Ok(WorkloadName::One(Kind::Report)),
        "qps" => Ok(WorkloadName::Qps),
        "echo" => Ok(WorkloadName::Echo),
        _ => Err(format!(
            "workload `{value}` is not get_host, get_route, report, qps or echo"
        )),
    }
}

fn parse_client(value: &str) -> Result<Client, String> {
    match value {
        "classic" => Ok(Client::Classic),
        "blocking" => Ok(Client::Blocking),
        "fast" => Ok(Client::Fast),
        _ => Err(format!("client `{value}` is not classic, blocking or fast")),
    }
}

fn parse_mix(value: &str) -> Result<Mix, String> {
    Mix::parse(value)
}

fn parse_range(value: &str) -> Result<IdRange, String> {
    IdRange::parse(value)
}

fn parse_rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "rate `{value}` is not a positive number per second"
        )),
    }
}

/// A number of seconds, fractions allowed: `5`, `0.5`.
pub fn parse_seconds(value: &str) -> Result<Duration, String> {
    match value.parse::<f64>() {
        Ok(secs) if secs.is_finite() && (0.0..=86_400.0).contains(&secs) => {
            Ok(Duration::from_secs_f64(secs))
        }
        _ => Err(format!("`{value}` is not a number of seconds in 0..86400")),
    }
}

/// A CPU list: numbers and inclusive ranges separated by commas, `0,2-3`. No CPU twice.
pub fn parse_cpus(value: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in value.split(',') {
        let number = |text: &str| {
            text.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{text}` in CPU list `{value}` is not a CPU number"))
        };
        let (first, last) = match part.split_once('-') {
            Some((first, last)) => (number(first)?, number(last)?),
            None => (number(part)?, number(part)?),
        };
        if first > last || last - first >= 4096 {
            return Err(format!("`{part}` in CPU list `{value}` is not a range"));
        }
        for cpu in first..=last {
            if cpus.contains(&cpu) {
                return Err(format!("CPU {cpu} is listed twice in `{value}`"));
            }
            cpus.push(cpu);
        }
    }
    Ok(cpus)
}

/// A checked run: every option resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// What is loaded.
    pub target: Target,
    /// Where its ports are.
    pub ports: Ports,
    /// What is sent.
    pub load: Load,
    /// Generator threads.
    pub threads: usize,
    /// Sockets per thread.
    pub sockets: usize,
    /// Requests in flight per socket, at most.
    pub outstanding: usize,
    /// The keys requests cycle over.
    pub keys: KeySet,
    /// Open loop at this many requests (qps: iterations) per second in total; closed loop when
    /// `None`.
    pub rate: Option<f64>,
    /// Time before measuring.
    pub warmup: Duration,
    /// Time measured.
    pub duration: Duration,
    /// How long an answer is waited for.
    pub timeout: Duration,
    /// CPUs the threads are pinned to, cycling; empty for no pinning.
    pub cpus: Vec<usize>,
    /// How the threads talk to the target.
    pub client: Client,
    /// Print JSON instead of the summary.
    pub json: bool,
}

impl Plan {
    /// Resolves and checks the command line; the error is the message for the user.
    pub fn from_args(args: &PerfArgs) -> Result<Plan, String> {
        let target = resolve_target(args)?;
        let load = match (args.workload, args.mix, target) {
            (Some(_), Some(_), _) => return Err("give --workload or --mix, not both".into()),
            (None, Some(_), Target::Echo) => {
                return Err("--mix is for the agent; the echo target takes only echo".into());
            }
            (None, Some(mix), Target::Agent) => Load::Mix(mix),
            (None, None, Target::Agent) => Load::Mix(Mix::only(Kind::GetHost)),
            (_, None, Target::Echo) => Load::Echo,
            (Some(WorkloadName::One(kind)), None, Target::Agent) => Load::Mix(Mix::only(kind)),
            (Some(WorkloadName::Qps), None, Target::Agent) => Load::Qps,
            (Some(WorkloadName::Echo), None, Target::Agent) => {
                return Err("--workload echo needs --target echo (or no --target)".into());
            }
        };

        if !(1..=MAX_SHARDS).contains(&args.shards) {
            return Err(format!("--shards must be in 1..{MAX_SHARDS}"));
        }
        if u32::from(args.base_port) + u32::from(args.shards) - 1 > 65535 {
            return Err(format!(
                "--base-port {} + --shards {} runs past port 65535",
                args.base_port, args.shards
            ));
        }
        let shards = NonZeroU16::new(args.shards).ok_or("--shards must be at least 1")?;

        let threads = level("--threads", args.threads, 1)?;
        if args.client == Client::Blocking {
            for (name, given) in [
                ("--sockets", args.sockets.is_some_and(|v| v != 1)),
                ("--outstanding", args.outstanding.is_some_and(|v| v != 1)),
                ("--rate", args.rate.is_some()),
            ] {
                if given {
                    return Err(format!(
                        "--client blocking keeps one request in flight per thread in a closed \
                         loop, over one socket per shard port; drop {name}"
                    ));
                }
            }
        }
        let (sockets, outstanding) = if load == Load::Qps || args.client == Client::Blocking {
            for (name, value) in [
                ("--sockets", args.sockets),
                ("--outstanding", args.outstanding),
            ] {
                if value.is_some_and(|v| v != 1) && load == Load::Qps {
                    return Err(format!(
                        "the qps workload keeps one request in flight on one socket per thread; drop {name}"
                    ));
                }
            }
            (1, 1)
        } else {
            (
                level("--sockets", args.sockets, 4)?,
                level("--outstanding", args.outstanding, 16)?,
            )
        };

        let (modid, cmdid) = match (args.keys, args.modid, args.cmdid) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err("give --keys or --modid/--cmdid, not both".into());
            }
            (Some(0), _, _) => return Err("--keys must be at least 1".into()),
            (Some(n), None, None) => (
                IdRange::one(1),
                IdRange {
                    first: 1,
                    last: i32::try_from(n).map_err(|_| "--keys is too large")?,
                },
            ),
            (None, modid, cmdid) => (
                modid.unwrap_or(IdRange::one(1)),
                cmdid.unwrap_or(IdRange::one(1)),
            ),
        };
        let keys = KeySet::new(modid, cmdid)?;

        if args.duration.is_zero() {
            return Err("--duration must be more than 0 seconds".into());
        }
        if args.timeout == 0 || args.timeout > 60_000 {
            return Err("--timeout must be in 1..60000 milliseconds".into());
        }

        let cpus = match &args.cpus {
            None => Vec::new(),
            Some(cpus) => {
                if let Some(allowed) = core_affinity::get_core_ids() {
                    let allowed: Vec<usize> = allowed.iter().map(|c| c.id).collect();
                    if let Some(bad) = cpus.iter().find(|c| !allowed.contains(c)) {
                        return Err(format!(
                            "--cpus: CPU {bad} is not in this process's affinity mask {allowed:?}"
                        ));
                    }
                }
                cpus.clone()
            }
        };

        if args.client == Client::Fast {
            let fits = matches!(load, Load::Qps)
                || (load == Load::Mix(Mix::only(Kind::GetHost)) && args.mix.is_none());
            if target != Target::Agent || !fits {
                return Err(
                    "--client fast runs --workload qps or get_host against the agent".into(),
                );
            }
            if args.rate.is_some() || args.sockets.is_some() || args.outstanding.is_some() {
                return Err(
                    "--client fast is a closed loop of calls: drop --rate, --sockets and --outstanding"
                        .into(),
                );
            }
        }

        Ok(Plan {
            target,
            ports: Ports {
                ip: args.agent,
                base_port: args.base_port,
                shards,
            },
            load,
            threads,
            sockets,
            outstanding,
            keys,
            rate: args.rate,
            warmup: args.warmup,
            duration: args.duration,
            timeout: Duration::from_millis(args.timeout),
            cpus,
            client: args.client,
            json: args.json,
        })
    }

    /// Sockets over all threads.
    pub fn total_sockets(&self) -> usize {
        self.threads * self.sockets
    }

    /// The options as they were applied, for the JSON output.
    pub fn applied(&self) -> AppliedOptions {
        AppliedOptions {
            target: self.target,
            agent: self.ports.ip.to_string(),
            base_port: self.ports.base_port,
            shards: self.ports.shards.get(),
            workload: self.load.name(),
            mix: match self.load {
                Load::Mix(mix) => Some(mix),
                Load::Qps | Load::Echo => None,
            },
            threads: self.threads,
            sockets: self.sockets,
            outstanding: self.outstanding,
            modid: self.keys.modid(),
            cmdid: self.keys.cmdid(),
            keys: self.keys.len(),
            open_loop: self.rate.is_some(),
            rate: self.rate,
            warmup_secs: self.warmup.as_secs_f64(),
            duration_secs: self.duration.as_secs_f64(),
            timeout_ms: self.timeout.as_millis() as u64,
            cpus: self.cpus.clone(),
            client: self.client,
        }
    }
}

/// The options of a run as applied (defaults and presets filled in), as they appear under
/// `"options"` in the JSON output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppliedOptions {
    /// `agent` or `echo`.
    pub target: Target,
    /// The target's address.
    pub agent: String,
    /// Its first port.
    pub base_port: u16,
    /// Its number of ports.
    pub shards: u16,
    /// `get_host`, `get_route`, `report`, `mix`, `qps` or `echo`.
    pub workload: &'static str,
    /// The weights, for agent mixes and single-kind workloads.
    pub mix: Option<Mix>,
    /// Generator threads.
    pub threads: usize,
    /// Sockets per thread.
    pub sockets: usize,
    /// Requests in flight per socket, at most.
    pub outstanding: usize,
    /// The modids of the key set.
    pub modid: IdRange,
    /// The cmdids of the key set.
    pub cmdid: IdRange,
    /// The number of keys.
    pub keys: u64,
    /// Whether the run was an open loop.
    pub open_loop: bool,
    /// Its total rate per second, for an open loop.
    pub rate: Option<f64>,
    /// Warm-up seconds.
    pub warmup_secs: f64,
    /// Measured seconds.
    pub duration_secs: f64,
    /// The answer timeout.
    pub timeout_ms: u64,
    /// CPUs the threads were pinned to (empty: not pinned).
    pub cpus: Vec<usize>,
    /// `classic` or `blocking`.
    pub client: Client,
}

/// `--target` and `--workload echo` agree, or the line is refused.
fn resolve_target(args: &PerfArgs) -> Result<Target, String> {
    let echo_workload = args.workload == Some(WorkloadName::Echo);
    match (args.target, args.workload) {
        (Some(Target::Agent), _) if echo_workload => {
            Err("--workload echo needs --target echo (or no --target)".into())
        }
        (Some(Target::Echo), Some(WorkloadName::One(Kind::GetHost))) => Ok(Target::Echo),
        (Some(Target::Echo), Some(WorkloadName::One(_) | WorkloadName::Qps)) => Err(
            "the echo target takes only echo (GetHostRequest) datagrams; drop --workload".into(),
        ),
        (Some(target), _) => Ok(target),
        (None, _) if echo_workload => Ok(Target::Echo),
        (None, _) => Ok(Target::Agent),
    }
}

/// Threads, sockets or outstanding: 1..=MAX_PER_LEVEL, `default` when absent.
fn level(name: &str, value: Option<usize>, default: usize) -> Result<usize, String> {
    match value.unwrap_or(default) {
        n @ 1..=MAX_PER_LEVEL => Ok(n),
        _ => Err(format!("{name} must be in 1..{MAX_PER_LEVEL}")),
    }
}

/// Parses the process's arguments into a [`Plan`], exiting with 0 after `--help` and with 2 for
/// bad arguments (the message on stderr).
pub fn from_env() -> Plan {
    let strings: Vec<String> = std::env::args().collect();
    let args: Vec<&str> = strings.iter().skip(1).map(String::as_str).collect();
    match parse(&args) {
        Ok(plan) => plan,
        Err(Parsed::Help(text)) => {
            println!("{text}");
            std::process::exit(0);
        }
        Err(Parsed::Bad(message)) => {
            eprintln!("{message}\nRun lars-perf --help for more information.");
            std::process::exit(2);
        }
    }
}

/// Why a command line gave no plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// `--help` was asked for: the text to print.
    Help(String),
    /// The line is wrong: the message to print.
    Bad(String),
}

/// Parses arguments (without the program name) into a [`Plan`].
pub fn parse(args: &[&str]) -> Result<Plan, Parsed> {
    match PerfArgs::from_args(&["lars-perf"], args) {
        Ok(args) => Plan::from_args(&args).map_err(|m| Parsed::Bad(format!("lars-perf: {m}"))),
        Err(early) => match early.status {
            Ok(()) => Err(Parsed::Help(early.output)),
            Err(()) => Err(Parsed::Bad(early.output.trim_end().to_string())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str]) -> Plan {
        parse(args).unwrap_or_else(|e| panic!("{args:?}: {e:?}"))
    }

    fn refused(args: &[&str]) -> String {
        match parse(args) {
            Err(Parsed::Bad(message)) => message,
            other => panic!("{args:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn the_fast_client_runs_the_qps_and_get_host_presets_in_a_closed_loop_only() {
        assert_eq!(plan(&[]).client, Client::Classic);
        assert_eq!(
            plan(&["--client", "fast", "--workload", "qps", "--threads", "10"]).client,
            Client::Fast
        );
        assert_eq!(plan(&["--client", "fast"]).client, Client::Fast);
        for bad in [
            &["--client", "fast", "--workload", "report"][..],
            &["--client", "fast", "--mix", "get_host=1,report=1"],
            &["--client", "fast", "--rate", "1000"],
            &["--client", "fast", "--target", "echo"],
            &["--client", "fast", "--sockets", "2"],
        ] {
            assert!(refused(bad).contains("--client fast"), "{bad:?}");
        }
        assert!(refused(&["--client", "blocking2"]).contains("classic, blocking or fast"));
    }

    #[test]
    fn defaults_are_a_closed_get_host_loop_on_the_lars_ports() {
        let p = plan(&[]);
        assert_eq!(p.target, Target::Agent);
        assert_eq!(p.ports.ip, Ipv4Addr::LOCALHOST);
        assert_eq!(p.ports.base_port, 8888);
        assert_eq!(p.ports.shards.get(), 3);
        assert_eq!(p.load, Load::Mix(Mix::only(Kind::GetHost)));
        assert_eq!((p.threads, p.sockets, p.outstanding), (1, 4, 16));
        assert_eq!(p.keys.len(), 1);
        assert_eq!(p.keys.key(0), (1, 1));
        assert_eq!(p.rate, None);
        assert_eq!(p.warmup, Duration::from_secs(1));
        assert_eq!(p.duration, Duration::from_secs(10));
        assert_eq!(p.timeout, Duration::from_secs(1));
        assert!(p.cpus.is_empty() && !p.json);
    }

    #[test]
    fn every_option_is_applied() {
        let p = plan(&[
            "--agent",
            "10.0.0.2",
            "--base-port",
            "9000",
            "--shards",
            "5",
            "--threads",
            "3",
            "--sockets",
            "2",
            "--outstanding",
            "8",
            "--modid",
            "2..3",
            "--cmdid",
            "-1..1",
            "--mix",
            "get_host=8,report=1,get_route=1",
            "--rate",
            "5000",
            "--warmup",
            "0.5",
            "--duration",
            "2",
            "--timeout",
            "250",
            "--json",
        ]);
        assert_eq!(p.ports.ip, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!((p.ports.base_port, p.ports.shards.get()), (9000, 5));
        assert_eq!((p.threads, p.sockets, p.outstanding), (3, 2, 8));
        assert_eq!(p.keys.len(), 6);
        assert_eq!(
            p.load,
            Load::Mix(Mix {
                get_host: 8,
                get_route: 1,
                report: 1
            })
        );
        assert_eq!(p.rate, Some(5000.0));
        assert_eq!(p.warmup, Duration::from_millis(500));
        assert_eq!(p.duration, Duration::from_secs(2));
        assert_eq!(p.timeout, Duration::from_millis(250));
        assert!(p.json);
        assert_eq!(p.total_sockets(), 6);
    }

    #[test]
    fn keys_n_means_modid_1_and_cmdids_1_to_n() {
        let p = plan(&["--keys", "100"]);
        assert_eq!(p.keys.len(), 100);
        assert_eq!(p.keys.key(0), (1, 1));
        assert_eq!(p.keys.key(99), (1, 100));
    }

    #[test]
    fn qps_is_one_socket_one_request_in_flight() {
        let p = plan(&["--workload", "qps", "--threads", "10"]);
        assert_eq!(p.load, Load::Qps);
        assert_eq!((p.threads, p.sockets, p.outstanding), (10, 1, 1));
        assert!(plan(&["--workload", "qps", "--sockets", "1"]).sockets == 1);
        assert!(refused(&["--workload", "qps", "--outstanding", "4"]).contains("--outstanding"));
        assert!(refused(&["--workload", "qps", "--sockets", "2"]).contains("--sockets"));
    }

    #[test]
    fn the_blocking_client_is_one_request_in_flight_per_thread_in_a_closed_loop() {
        assert_eq!(plan(&[]).client, Client::Classic);
        let p = plan(&[
            "--client",
            "blocking",
            "--workload",
            "qps",
            "--threads",
            "2",
        ]);
        assert_eq!(p.client, Client::Blocking);
        assert_eq!((p.threads, p.sockets, p.outstanding), (2, 1, 1));
        let p = plan(&["--client", "blocking", "--workload", "get_host"]);
        assert_eq!((p.sockets, p.outstanding), (1, 1));
        for (option, value) in [
            ("--sockets", "2"),
            ("--outstanding", "4"),
            ("--rate", "100"),
        ] {
            let message = refused(&["--client", "blocking", option, value]);
            assert!(message.contains(option), "{message}");
        }
        assert!(refused(&["--client", "fastest"]).contains("client"));
    }

    #[test]
    fn echo_target_and_echo_workload_imply_each_other() {
        assert_eq!(plan(&["--target", "echo"]).load, Load::Echo);
        let p = plan(&["--workload", "echo"]);
        assert_eq!((p.target, p.load), (Target::Echo, Load::Echo));
        assert_eq!(
            plan(&["--target", "echo", "--workload", "get_host"]).load,
            Load::Echo
        );
        assert!(refused(&["--target", "agent", "--workload", "echo"]).contains("--target echo"));
        assert!(refused(&["--target", "echo", "--workload", "qps"]).contains("echo"));
        assert!(refused(&["--target", "echo", "--mix", "get_host=1"]).contains("--mix"));
    }

    #[test]
    fn impossible_lines_are_refused_with_the_option_named() {
        assert!(refused(&["--workload", "get_host", "--mix", "report=1"]).contains("not both"));
        assert!(refused(&["--keys", "3", "--modid", "1"]).contains("--keys"));
        assert!(refused(&["--keys", "0"]).contains("--keys"));
        assert!(refused(&["--threads", "0"]).contains("--threads"));
        assert!(refused(&["--outstanding", "1025"]).contains("--outstanding"));
        assert!(refused(&["--shards", "0"]).contains("--shards"));
        assert!(refused(&["--shards", "65"]).contains("--shards"));
        assert!(refused(&["--base-port", "65535", "--shards", "2"]).contains("65535"));
        assert!(refused(&["--base-port", "0"]).contains("port"));
        assert!(refused(&["--duration", "0"]).contains("--duration"));
        assert!(refused(&["--duration", "-1"]).contains("seconds"));
        assert!(refused(&["--timeout", "0"]).contains("--timeout"));
        assert!(refused(&["--rate", "0"]).contains("rate"));
        assert!(refused(&["--rate", "inf"]).contains("rate"));
        assert!(refused(&["--agent", "::1"]).contains("IPv4"));
        assert!(refused(&["--workload", "flood"]).contains("workload"));
        assert!(refused(&["--target", "dns"]).contains("target"));
        assert!(refused(&["--bogus"]).contains("--bogus"));
        assert!(refused(&["--cpus", "99999"]).contains("affinity"));
    }

    #[test]
    fn help_is_not_an_error() {
        match parse(&["--help"]) {
            Err(Parsed::Help(text)) => {
                assert!(text.contains("--outstanding") && text.contains("Error codes"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cpu_lists_take_numbers_and_ranges() {
        assert_eq!(parse_cpus("0"), Ok(vec![0]));
        assert_eq!(parse_cpus("0,2-3"), Ok(vec![0, 2, 3]));
        assert!(parse_cpus("1,1").unwrap_err().contains("twice"));
        assert!(parse_cpus("3-1").unwrap_err().contains("range"));
        assert!(parse_cpus("a").is_err());
        assert!(parse_cpus("").is_err());
    }

    #[test]
    fn seconds_take_fractions() {
        assert_eq!(parse_seconds("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_seconds("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("NaN").is_err());
        assert!(parse_seconds("1s").is_err());
    }
}
