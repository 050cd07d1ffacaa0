//! The `lars` command tree (argh) and its dispatcher. Exit codes: 0 done, 1 the command failed
//! (agent or store unreachable, bad data), 2 bad arguments; the caller commands add 3 NOEXIST,
//! 4 OVERLOAD and 5 SYSTEM_ERROR (see [`crate::caller::ExitCode`]).

use crate::args::{parse_id, parse_ip, parse_port};
use crate::caller::{self, AgentAddr, ExitCode, SimulatorPlan};
use crate::route_admin;
use crate::status;
use argh::FromArgs;
use lars_wire::HostAddr;
use std::net::Ipv4Addr;
use std::net::SocketAddr;
use std::time::Duration;

/// lars: the Lars command line. Caller commands (gethost, getroute, report, simulator, example)
/// talk to the local lars-agent over UDP; init creates a store, route and status work on an
/// existing one (--store, else $LARS_STORE, else ~/.local/state/lars/lars.db: `lars store`);
/// agent-stats reads a running agent's counters, stats any service's metrics.
#[derive(FromArgs, Debug)]
pub struct Cli {
    /// the agent's IPv4 address (default 127.0.0.1)
    #[argh(option, default = "Ipv4Addr::LOCALHOST", from_str_fn(parse_ip))]
    agent: Ipv4Addr,
    /// the agent's first UDP port (default 8888)
    #[argh(option, default = "8888", from_str_fn(parse_port))]
    base_port: u16,
    /// the agent's number of UDP ports (default 3)
    #[argh(option, default = "3")]
    shards: u16,
    /// how long to wait for one answer from the agent, in ms (default 1000)
    #[argh(option, default = "1000")]
    timeout_ms: u64,
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Command {
    GetHost(GetHostCmd),
    GetRoute(GetRouteCmd),
    Report(ReportCmd),
    Simulator(SimulatorCmd),
    Example(ExampleCmd),
    AgentStats(AgentStatsCmd),
    Stats(StatsCmd),
    Init(InitCmd),
    Route(RouteCmd),
    Status(StatusCmd),
    Store(StoreCmd),
}

/// ask the agent which host to call for (MODID, CMDID); prints ip:port
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "gethost")]
struct GetHostCmd {
    /// service module id
    #[argh(positional, from_str_fn(parse_id))]
    modid: i32,
    /// service command id
    #[argh(positional, from_str_fn(parse_id))]
    cmdid: i32,
}

/// list the hosts the agent holds for (MODID, CMDID), one per line
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "getroute")]
struct GetRouteCmd {
    /// service module id
    #[argh(positional, from_str_fn(parse_id))]
    modid: i32,
    /// service command id
    #[argh(positional, from_str_fn(parse_id))]
    cmdid: i32,
}

/// tell the agent how a call to IP:PORT went (RETCODE 0 success, anything else failure)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "report")]
struct ReportCmd {
    /// service module id
    #[argh(positional, from_str_fn(parse_id))]
    modid: i32,
    /// service command id
    #[argh(positional, from_str_fn(parse_id))]
    cmdid: i32,
    /// host IPv4 address (a.b.c.d)
    #[argh(positional, from_str_fn(parse_ip))]
    ip: Ipv4Addr,
    /// host port (1..65535)
    #[argh(positional, from_str_fn(parse_port))]
    port: u16,
    /// the call's outcome: 0 for success, anything else is a failure
    #[argh(positional)]
    retcode: i32,
}

/// call get_host COUNT times and report each call, failing with odds ERR-RATE/10, then print a
/// per-host table (like Lars' simulator)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "simulator")]
struct SimulatorCmd {
    /// service module id
    #[argh(positional, from_str_fn(parse_id))]
    modid: i32,
    /// service command id
    #[argh(positional, from_str_fn(parse_id))]
    cmdid: i32,
    /// odds of a failure per call in tenths, 0-10 (default 0)
    #[argh(option, default = "0", from_str_fn(parse_err_rate))]
    err_rate: u8,
    /// number of calls (default 100)
    #[argh(option, default = "100")]
    count: u32,
    /// a host (ip:port) whose calls always fail
    #[argh(option, from_str_fn(parse_host))]
    fail_host: Option<HostAddr>,
    /// with --fail-host: it fails only during the first N calls, then works again
    #[argh(option)]
    fail_calls: Option<u32>,
    /// print a line every N calls with how often each host was picked (default 0: off)
    #[argh(option, default = "0")]
    window: u32,
    /// pause between calls in ms (default 0)
    #[argh(option, default = "0")]
    interval_ms: u64,
    /// print every call
    #[argh(switch, short = 'v')]
    verbose: bool,
    /// call through the fast path (lars-wire's FastClient: picks from the route's view held in
    /// this process and reports in batches every millisecond) instead of one datagram per call
    #[argh(switch)]
    fast: bool,
}

/// walk through the client library's calls for (MODID, CMDID): reg_init, get_route, get_host,
/// report
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "example")]
struct ExampleCmd {
    /// service module id
    #[argh(positional, from_str_fn(parse_id))]
    modid: i32,
    /// service command id
    #[argh(positional, from_str_fn(parse_id))]
    cmdid: i32,
}

/// show a running agent's counters: workers, requests, drops, uplinks
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "agent-stats")]
struct AgentStatsCmd {
    /// the agent's stats endpoint (default 127.0.0.1:8890, its `[agent] stats_addr`)
    #[argh(option, default = "SocketAddr::from(([127, 0, 0, 1], 8890))")]
    addr: SocketAddr,
    /// print the raw Prometheus text instead of the table
    #[argh(switch)]
    raw: bool,
}

/// show any Lars service's metrics as a table (lars-dns, lars-reporter or lars-agent)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "stats")]
struct StatsCmd {
    /// the metrics endpoint: http://HOST:PORT/metrics or HOST:PORT (e.g. 127.0.0.1:7788 for
    /// lars-dns, 127.0.0.1:7789 for lars-reporter, 127.0.0.1:8890 for lars-agent)
    #[argh(positional)]
    url: String,
    /// print the raw Prometheus text instead of the table
    #[argh(switch)]
    raw: bool,
}

fn parse_err_rate(value: &str) -> Result<u8, String> {
    match value.parse::<u8>() {
        Ok(rate @ 0..=10) => Ok(rate),
        _ => Err(format!(
            "err-rate `{value}` is not a whole number of tenths in 0..10"
        )),
    }
}

fn parse_host(value: &str) -> Result<HostAddr, String> {
    let (ip, port) = value
        .rsplit_once(':')
        .ok_or_else(|| format!("host `{value}` is not ip:port"))?;
    Ok(HostAddr::new(parse_ip(ip)?, parse_port(port)?))
}

/// create the store if it is not there: the MySQL database or SQLite file, the tables and the
/// route version (idempotent; prints what it did). No other command creates a store.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "init")]
struct InitCmd {
    /// store URL: sqlite://PATH or mysql://user:pass@host:port/db (default: $LARS_STORE, else
    /// ~/.local/state/lars/lars.db; `lars store` shows which)
    #[argh(option)]
    store: Option<String>,
}

/// administer routes in the store: add or remove hosts, list routes
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "route")]
struct RouteCmd {
    #[argh(subcommand)]
    action: RouteAction,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum RouteAction {
    Add(RouteAdd),
    Del(RouteDel),
    List(RouteList),
    Name(RouteName),
}

/// add host IP:PORT to route (MODID, CMDID); the dns pushes it to subscribed agents
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "add")]
struct RouteAdd {
    /// service module id
    #[argh(positional, from_str_fn(parse_id))]
    modid: i32,
    /// service command id
    #[argh(positional, from_str_fn(parse_id))]
    cmdid: i32,
    /// host IPv4 address (a.b.c.d)
    #[argh(positional, from_str_fn(parse_ip))]
    ip: Ipv4Addr,
    /// host port (1..65535)
    #[argh(positional, from_str_fn(parse_port))]
    port: u16,
    /// store URL: sqlite://PATH or mysql://user:pass@host:port/db (default: $LARS_STORE, else
    /// ~/.local/state/lars/lars.db; `lars store` shows which)
    #[argh(option)]
    store: Option<String>,
}

/// remove host IP PORT from route (MODID, CMDID), or the whole route when no host is given
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "del")]
struct RouteDel {
    /// service module id
    #[argh(positional, from_str_fn(parse_id))]
    modid: i32,
    /// service command id
    #[argh(positional, from_str_fn(parse_id))]
    cmdid: i32,
    /// host as IP PORT (a.b.c.d and 1..65535); omit both to remove the whole route
    #[argh(positional)]
    host: Vec<String>,
    /// store URL: sqlite://PATH or mysql://user:pass@host:port/db (default: $LARS_STORE, else
    /// ~/.local/state/lars/lars.db; `lars store` shows which)
    #[argh(option)]
    store: Option<String>,
}

/// list routes: all, one module's, or one route
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list")]
struct RouteList {
    /// MODID to list one module's routes, MODID CMDID to list one route
    #[argh(positional)]
    ids: Vec<String>,
    /// store URL: sqlite://PATH or mysql://user:pass@host:port/db (default: $LARS_STORE, else
    /// ~/.local/state/lars/lars.db; `lars store` shows which)
    #[argh(option)]
    store: Option<String>,
}

/// name module MODID, or with CMDID command CMDID (one name for that cmdid in every module, as
/// in Lars): `lars route name 1 users`, `lars route name 1 2 "log in"`
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "name")]
struct RouteName {
    /// service module id
    #[argh(positional, from_str_fn(parse_id))]
    modid: i32,
    /// [CMDID] NAME: the name (one argument; quote it if it has spaces), after CMDID to name a
    /// command
    #[argh(positional)]
    rest: Vec<String>,
    /// store URL: sqlite://PATH or mysql://user:pass@host:port/db (default: $LARS_STORE, else
    /// ~/.local/state/lars/lars.db; `lars store` shows which)
    #[argh(option)]
    store: Option<String>,
}

/// show which store the store commands use without --store: $LARS_STORE, else the default file
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "store")]
struct StoreCmd {
    /// print only the URL (for scripts; run_lars starts the services on it)
    #[argh(switch)]
    url: bool,
    /// a store URL, to see how it is understood
    #[argh(option)]
    store: Option<String>,
}

/// show the call statistics lars-reporter stored: all, one module's, or one route's
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "status")]
struct StatusCmd {
    /// MODID to show one module's statistics, MODID CMDID to show one route's
    #[argh(positional)]
    ids: Vec<String>,
    /// store URL: sqlite://PATH or mysql://user:pass@host:port/db (default: $LARS_STORE, else
    /// ~/.local/state/lars/lars.db; `lars store` shows which)
    #[argh(option)]
    store: Option<String>,
}

/// An argument error found after argh parsed the line (a lone IP, a bad id in a list).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// `[MODID [CMDID]]` of `route list` and `status`.
fn parse_filter(ids: &[String], command: &str) -> anyhow::Result<(Option<i32>, Option<i32>)> {
    let ids = ids
        .iter()
        .map(|id| parse_id(id))
        .collect::<Result<Vec<i32>, String>>()
        .map_err(usage)?;
    match ids.as_slice() {
        [] => Ok((None, None)),
        [modid] => Ok((Some(*modid), None)),
        [modid, cmdid] => Ok((Some(*modid), Some(*cmdid))),
        _ => Err(usage(format!("{command} takes at most MODID and CMDID"))),
    }
}

/// Parses the process's arguments, exiting with 0 for `--help` and 2 for bad arguments.
pub fn from_env() -> Cli {
    let strings: Vec<String> = std::env::args().collect();
    let command = strings.first().map(String::as_str).unwrap_or("lars");
    let command = std::path::Path::new(command)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("lars");
    let args: Vec<&str> = strings.iter().skip(1).map(String::as_str).collect();
    match Cli::from_args(&[command], &args) {
        Ok(cli) => cli,
        Err(early) => match early.status {
            Ok(()) => {
                println!("{}", early.output);
                std::process::exit(0);
            }
            Err(()) => {
                eprintln!(
                    "{}\nRun {command} --help for more information.",
                    early.output.trim_end()
                );
                std::process::exit(2);
            }
        },
    }
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    let agent = AgentAddr {
        ip: cli.agent,
        base_port: cli.base_port,
        shards: cli.shards,
        timeout: Duration::from_millis(cli.timeout_ms),
    };
    let code = match cli.command {
        Command::GetHost(c) => caller::gethost(&agent, c.modid, c.cmdid),
        Command::GetRoute(c) => caller::getroute(&agent, c.modid, c.cmdid),
        Command::Report(c) => caller::report(
            &agent,
            c.modid,
            c.cmdid,
            HostAddr::new(c.ip, c.port),
            c.retcode,
        ),
        Command::Simulator(c) => {
            if c.fail_calls.is_some() && c.fail_host.is_none() {
                eprintln!("lars: --fail-calls needs --fail-host");
                return ExitCode::Usage as i32;
            }
            let plan = SimulatorPlan {
                count: c.count,
                err_rate: c.err_rate,
                fail_host: c.fail_host,
                fail_calls: c.fail_calls,
                interval: Duration::from_millis(c.interval_ms),
                verbose: c.verbose,
                window: c.window,
                fast: c.fast,
            };
            caller::simulator(&agent, c.modid, c.cmdid, &plan)
        }
        Command::Example(c) => caller::example(&agent, c.modid, c.cmdid),
        Command::AgentStats(c) => match crate::agent_stats::run(c.addr, c.raw) {
            Ok(()) => ExitCode::Ok,
            Err(e) => {
                eprintln!("lars: {e:#}");
                ExitCode::Failed
            }
        },
        Command::Stats(c) => match crate::stats::run(&c.url, c.raw) {
            Ok(()) => ExitCode::Ok,
            Err(e) => {
                eprintln!("lars: {e:#}");
                ExitCode::Failed
            }
        },
        Command::Init(c) => return run_store_command(StoreCommand::Init(c)),
        Command::Route(c) => return run_store_command(StoreCommand::Route(c)),
        Command::Status(c) => return run_store_command(StoreCommand::Status(c)),
        Command::Store(c) => match crate::store::show(c.store.as_deref(), c.url) {
            Ok(()) => ExitCode::Ok,
            Err(e) => {
                eprintln!("lars: {e:#}");
                ExitCode::Failed
            }
        },
    };
    code as i32
}

/// The commands that work on the store.
enum StoreCommand {
    Init(InitCmd),
    Route(RouteCmd),
    Status(StatusCmd),
}

/// Runs a command that works on the store.
fn run_store_command(command: StoreCommand) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("lars: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let result = runtime.block_on(async {
        match command {
            StoreCommand::Init(i) => crate::store::init(i.store.as_deref()).await,
            StoreCommand::Route(route) => match route.action {
                RouteAction::Add(a) => {
                    route_admin::add(a.store.as_deref(), a.modid, a.cmdid, a.ip, a.port).await
                }
                RouteAction::Del(d) => match d.host.as_slice() {
                    [ip, port] => {
                        let ip = parse_ip(ip).map_err(usage)?;
                        let port = parse_port(port).map_err(usage)?;
                        route_admin::del_host(d.store.as_deref(), d.modid, d.cmdid, ip, port).await
                    }
                    [] => route_admin::del_route(d.store.as_deref(), d.modid, d.cmdid).await,
                    _ => Err(usage(
                        "give both IP and PORT to remove one host, or neither to remove the whole route",
                    )),
                },
                RouteAction::Name(n) => {
                    let (cmdid, name) = match n.rest.as_slice() {
                        [name] => (None, name),
                        [cmdid, name] => (Some(parse_id(cmdid).map_err(usage)?), name),
                        [] => return Err(usage("give the name after MODID (and CMDID)")),
                        _ => {
                            return Err(usage(
                                "give the name as one argument, quoted if it has spaces: \
                                 lars route name MODID [CMDID] \"NAME\"",
                            ));
                        }
                    };
                    route_admin::name(n.store.as_deref(), n.modid, cmdid, name).await
                }
                RouteAction::List(l) => {
                    let (modid, cmdid) = parse_filter(&l.ids, "list")?;
                    route_admin::list(l.store.as_deref(), modid, cmdid).await
                }
            },
            StoreCommand::Status(s) => {
                let (modid, cmdid) = parse_filter(&s.ids, "status")?;
                status::show(s.store.as_deref(), modid, cmdid).await
            }
        }
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("lars: {e:#}");
            if e.is::<UsageError>() { 2 } else { 1 }
        }
    }
}
