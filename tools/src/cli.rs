//! The `lars` command tree (argh) and its dispatcher. Exit codes: 0 done, 1 the command failed
//! (store unreachable, bad data), 2 bad arguments (argh's own).

use crate::args::{parse_id, parse_ip, parse_port};
use crate::route_admin;
use argh::FromArgs;
use lars_store::DEFAULT_STORE_URL;
use std::net::Ipv4Addr;

/// lars: the Lars command line.
#[derive(FromArgs, Debug)]
pub struct Cli {
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Command {
    Route(RouteCmd),
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
    /// store URL: sqlite://PATH or mysql://user:pass@host:port/db (default sqlite://lars.db)
    #[argh(option, default = "DEFAULT_STORE_URL.to_string()")]
    store: String,
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
    /// store URL: sqlite://PATH or mysql://user:pass@host:port/db (default sqlite://lars.db)
    #[argh(option, default = "DEFAULT_STORE_URL.to_string()")]
    store: String,
}

/// list routes: all, one module's, or one route
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list")]
struct RouteList {
    /// MODID to list one module's routes, MODID CMDID to list one route
    #[argh(positional)]
    ids: Vec<String>,
    /// store URL: sqlite://PATH or mysql://user:pass@host:port/db (default sqlite://lars.db)
    #[argh(option, default = "DEFAULT_STORE_URL.to_string()")]
    store: String,
}

/// An argument error found after argh parsed the line (a lone IP, a bad id in a list).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
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
        match cli.command {
            Command::Route(route) => match route.action {
                RouteAction::Add(a) => {
                    route_admin::add(&a.store, a.modid, a.cmdid, a.ip, a.port).await
                }
                RouteAction::Del(d) => match d.host.as_slice() {
                    [ip, port] => {
                        let ip = parse_ip(ip).map_err(usage)?;
                        let port = parse_port(port).map_err(usage)?;
                        route_admin::del_host(&d.store, d.modid, d.cmdid, ip, port).await
                    }
                    [] => route_admin::del_route(&d.store, d.modid, d.cmdid).await,
                    _ => Err(usage(
                        "give both IP and PORT to remove one host, or neither to remove the whole route",
                    )),
                },
                RouteAction::List(l) => {
                    let ids = l
                        .ids
                        .iter()
                        .map(|id| parse_id(id))
                        .collect::<Result<Vec<i32>, String>>()
                        .map_err(usage)?;
                    match ids.as_slice() {
                        [] => route_admin::list(&l.store, None, None).await,
                        [modid] => route_admin::list(&l.store, Some(*modid), None).await,
                        [modid, cmdid] => {
                            route_admin::list(&l.store, Some(*modid), Some(*cmdid)).await
                        }
                        _ => Err(usage("list takes at most MODID and CMDID")),
                    }
                }
            },
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
