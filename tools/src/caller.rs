//! The caller-side commands of the `lars` CLI, over the client library: `gethost`, `getroute`,
//! `report`, `simulator` and `example`. Output is one line a person reads at a glance; the exit
//! code tells a script what happened ([`ExitCode`]).

use lars_wire::HostAddr;
use lars_wire::{Caller, Client, ClientConfig, ClientError, RetCode};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Exit codes of the caller commands, for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum ExitCode {
    /// Done.
    Ok = 0,
    /// The agent did not answer, or answered something unusable.
    Failed = 1,
    /// Bad arguments.
    Usage = 2,
    /// The route does not exist (yet): NOEXIST.
    NoExist = 3,
    /// Every host of the route is overloaded: OVERLOAD.
    Overload = 4,
    /// The agent could not answer: SYSTEM_ERROR.
    SystemError = 5,
}

/// Where the agent is (the options every caller command takes).
#[derive(Debug, Clone)]
pub struct AgentAddr {
    /// The agent's IPv4 address.
    pub ip: Ipv4Addr,
    /// Its first UDP port.
    pub base_port: u16,
    /// Its number of shards.
    pub shards: u16,
    /// How long to wait for one answer.
    pub timeout: Duration,
}

impl AgentAddr {
    /// The client configuration for this agent.
    pub fn config(&self) -> ClientConfig {
        ClientConfig {
            agent_ip: self.ip,
            base_port: self.base_port,
            shards: self.shards,
            timeout: self.timeout,
        }
    }

    /// A client of this agent.
    pub fn client(&self) -> Result<Client, ClientError> {
        Client::new(self.config())
    }
}

/// The exit code and message for a failed call.
pub fn failure(error: &ClientError, modid: i32, cmdid: i32) -> (ExitCode, String) {
    match error {
        ClientError::Refused(RetCode::NoExist) => (
            ExitCode::NoExist,
            format!(
                "NOEXIST: the agent has no hosts for route ({modid}, {cmdid}) yet; it has asked \
                 lars-dns, so if the route exists a retry in a moment succeeds"
            ),
        ),
        ClientError::Refused(RetCode::Overload) => (
            ExitCode::Overload,
            format!("OVERLOAD: every host of route ({modid}, {cmdid}) is overloaded"),
        ),
        ClientError::Refused(_) => (
            ExitCode::SystemError,
            format!("SYSTEM_ERROR: the agent could not answer for route ({modid}, {cmdid})"),
        ),
        ClientError::Timeout { agent } => (
            ExitCode::Failed,
            format!("no answer from the agent at {agent}: is lars-agent running there?"),
        ),
        other => (ExitCode::Failed, other.to_string()),
    }
}

fn report_failure(error: &ClientError, modid: i32, cmdid: i32) -> ExitCode {
    let (code, message) = failure(error, modid, cmdid);
    eprintln!("lars: {message}");
    code
}

/// `lars gethost`: prints the picked host.
pub fn gethost(agent: &AgentAddr, modid: i32, cmdid: i32) -> ExitCode {
    let result = agent.client().and_then(|mut c| c.get_host(modid, cmdid));
    match result {
        Ok(host) => {
            println!("{host}");
            ExitCode::Ok
        }
        Err(e) => report_failure(&e, modid, cmdid),
    }
}

/// `lars getroute`: prints every host of the route, one per line.
pub fn getroute(agent: &AgentAddr, modid: i32, cmdid: i32) -> ExitCode {
    let result = agent.client().and_then(|mut c| c.get_route(modid, cmdid));
    match result {
        Ok(hosts) if hosts.is_empty() => {
            eprintln!(
                "lars: route ({modid}, {cmdid}) has no hosts at the agent (yet: it asks lars-dns)"
            );
            ExitCode::NoExist
        }
        Ok(hosts) => {
            for host in hosts {
                println!("{host}");
            }
            ExitCode::Ok
        }
        Err(e) => report_failure(&e, modid, cmdid),
    }
}

/// `lars report`: tells the agent how a call to `host` went.
pub fn report(agent: &AgentAddr, modid: i32, cmdid: i32, host: HostAddr, retcode: i32) -> ExitCode {
    let result = agent
        .client()
        .and_then(|mut c| c.report(modid, cmdid, host, retcode));
    match result {
        Ok(()) => {
            let outcome = if retcode == 0 { "success" } else { "failure" };
            println!(
                "reported {outcome} (retcode {retcode}) of {host} for route ({modid}, {cmdid})"
            );
            ExitCode::Ok
        }
        Err(e) => report_failure(&e, modid, cmdid),
    }
}

/// What the simulator does.
#[derive(Debug, Clone)]
pub struct SimulatorPlan {
    /// Calls to make.
    pub count: u32,
    /// Odds of a failure per call, in tenths (0..=10), for every host.
    pub err_rate: u8,
    /// A host whose calls always fail...
    pub fail_host: Option<HostAddr>,
    /// ...for this many of the simulator's calls (then it works again); all of them when absent.
    pub fail_calls: Option<u32>,
    /// Pause between calls.
    pub interval: Duration,
    /// Print every call.
    pub verbose: bool,
    /// Print a line every this many calls with how often each host was picked in them (0: no).
    pub window: u32,
    /// Call through the fast path (lars-wire's `FastClient`: picks from the route's view held
    /// in this process, reports in batches) instead of one datagram per call.
    pub fast: bool,
}

/// Per-host tally of the simulator.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Calls reported as successes.
    pub succ: u32,
    /// Calls reported as failures.
    pub err: u32,
}

/// The simulator's result.
#[derive(Debug, Default)]
pub struct SimulatorRun {
    /// Per host.
    pub hosts: BTreeMap<HostAddr, Tally>,
    /// OVERLOAD answers.
    pub overload: u32,
    /// NOEXIST answers.
    pub noexist: u32,
    /// Calls that failed otherwise (timeouts, …).
    pub failed: u32,
}

/// `lars simulator`: calls get_host `count` times, reports each call as a failure with the given
/// odds (and always for `fail_host` while it is failing), like Lars' simulator, then prints a
/// per-host table.
pub fn simulator(agent: &AgentAddr, modid: i32, cmdid: i32, plan: &SimulatorPlan) -> ExitCode {
    let mut client = match Caller::new(agent.config(), plan.fast) {
        Ok(client) => client,
        Err(e) => return report_failure(&e, modid, cmdid),
    };
    let mut run = SimulatorRun::default();
    let mut window: BTreeMap<HostAddr, Tally> = BTreeMap::new();
    let mut window_overload = 0;
    let mut seed = 0x2545_F491_4F6C_DD1D_u64 ^ u64::from(plan.count);
    for call in 1..=plan.count {
        match client.get_host(modid, cmdid) {
            Ok(host) => {
                let failing_host = plan.fail_host == Some(host)
                    && plan.fail_calls.is_none_or(|until| call <= until);
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let unlucky = (seed % 10) < u64::from(plan.err_rate);
                let retcode = if failing_host || unlucky { 1 } else { 0 };
                for tally in [
                    run.hosts.entry(host).or_default(),
                    window.entry(host).or_default(),
                ] {
                    if retcode == 0 {
                        tally.succ += 1;
                    } else {
                        tally.err += 1;
                    }
                }
                if let Err(e) = client.report(modid, cmdid, host, retcode) {
                    eprintln!("lars: report failed: {:#}", anyhow::Error::from(e));
                }
                if plan.verbose {
                    let outcome = if retcode == 0 { "succ" } else { "ERR " };
                    println!("call {call:>5}: get_host -> {host:<21} report {outcome}");
                }
            }
            Err(ClientError::Refused(RetCode::Overload)) => {
                run.overload += 1;
                window_overload += 1;
                if plan.verbose {
                    println!("call {call:>5}: get_host -> OVERLOAD (every host overloaded)");
                }
            }
            Err(ClientError::Refused(RetCode::NoExist)) => {
                run.noexist += 1;
                if plan.verbose {
                    println!("call {call:>5}: get_host -> NOEXIST (route not at the agent yet)");
                }
            }
            Err(e) => {
                run.failed += 1;
                let (_, message) = failure(&e, modid, cmdid);
                println!("call {call:>5}: {message}");
            }
        }
        if plan.window > 0 && (call % plan.window == 0 || call == plan.count) {
            println!(
                "{}",
                format_window(
                    call - (call - 1) % plan.window,
                    call,
                    &window,
                    window_overload
                )
            );
            window.clear();
            window_overload = 0;
        }
        if !plan.interval.is_zero() {
            std::thread::sleep(plan.interval);
        }
    }
    print!("{}", format_tally(modid, cmdid, &run));
    if run.hosts.is_empty() {
        if run.failed > 0 {
            ExitCode::Failed
        } else {
            ExitCode::NoExist
        }
    } else {
        ExitCode::Ok
    }
}

/// One line of the simulator's timeline: how often each host was picked in calls `from..=to`,
/// and how many of those calls were reported as failures.
pub fn format_window(
    from: u32,
    to: u32,
    picks: &BTreeMap<HostAddr, Tally>,
    overload: u32,
) -> String {
    let mut line = format!("calls {from:>5}-{to:<5}");
    for (host, tally) in picks {
        line.push_str(&format!("  {host} x{:<3}", tally.succ + tally.err));
        if tally.err > 0 {
            line.push_str(&format!("({} failed)", tally.err));
        }
    }
    if overload > 0 {
        line.push_str(&format!("  OVERLOAD x{overload}"));
    }
    line
}

/// The simulator's closing table.
pub fn format_tally(modid: i32, cmdid: i32, run: &SimulatorRun) -> String {
    let mut out = format!("\nroute ({modid}, {cmdid}):\n");
    out.push_str(&format!(
        "{:<21} {:>7} {:>7} {:>7} {:>8}\n",
        "HOST", "CALLS", "SUCC", "ERR", "ERR RATE"
    ));
    for (host, tally) in &run.hosts {
        let calls = tally.succ + tally.err;
        let rate = if calls == 0 {
            0.0
        } else {
            f64::from(tally.err) * 100.0 / f64::from(calls)
        };
        out.push_str(&format!(
            "{:<21} {:>7} {:>7} {:>7} {:>7.1}%\n",
            host.to_string(),
            calls,
            tally.succ,
            tally.err,
            rate
        ));
    }
    out.push_str(&format!(
        "OVERLOAD answers: {}, NOEXIST answers: {}, failed calls: {}\n",
        run.overload, run.noexist, run.failed
    ));
    out
}

/// `lars example`: the client library's calls one by one, as a caller would make them.
pub fn example(agent: &AgentAddr, modid: i32, cmdid: i32) -> ExitCode {
    let mut client = match agent.client() {
        Ok(client) => client,
        Err(e) => return report_failure(&e, modid, cmdid),
    };
    println!("reg_init({modid}, {cmdid}): asks for the route until the agent has it");
    match client.reg_init(modid, cmdid) {
        Ok(hosts) => println!("  route has {} host(s)", hosts.len()),
        Err(e) => return report_failure(&e, modid, cmdid),
    }
    println!("get_route({modid}, {cmdid}):");
    match client.get_route(modid, cmdid) {
        Ok(hosts) => {
            for host in hosts {
                println!("  {host}");
            }
        }
        Err(e) => return report_failure(&e, modid, cmdid),
    }
    println!("get_host({modid}, {cmdid}): which host to call now");
    let host = match client.get_host(modid, cmdid) {
        Ok(host) => host,
        Err(e) => return report_failure(&e, modid, cmdid),
    };
    println!("  call {host}");
    println!("report({modid}, {cmdid}, {host}, 0): the call succeeded");
    match client.report(modid, cmdid, host, 0) {
        Ok(()) => ExitCode::Ok,
        Err(e) => report_failure(&e, modid, cmdid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tally_shows_rates_per_host() {
        let mut run = SimulatorRun::default();
        run.hosts.insert(
            HostAddr::new(Ipv4Addr::new(10, 0, 0, 1), 80),
            Tally { succ: 3, err: 1 },
        );
        run.overload = 2;
        let text = format_tally(1, 2, &run);
        assert!(text.contains("10.0.0.1:80"), "{text}");
        assert!(text.contains("25.0%"), "{text}");
        assert!(text.contains("OVERLOAD answers: 2"), "{text}");
    }

    #[test]
    fn refusals_map_to_their_exit_codes() {
        let code = |e| failure(&e, 1, 1).0;
        assert_eq!(
            code(ClientError::Refused(RetCode::NoExist)),
            ExitCode::NoExist
        );
        assert_eq!(
            code(ClientError::Refused(RetCode::Overload)),
            ExitCode::Overload
        );
        assert_eq!(
            code(ClientError::Refused(RetCode::SystemError)),
            ExitCode::SystemError
        );
    }
}
