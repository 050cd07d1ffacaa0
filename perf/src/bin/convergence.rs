//! `convergence`: how fast a caller's picks follow a host's health, through the classic client
//! (one datagram per call) or the fast client (views and batches). One caller thread calls a
//! route of at least two hosts in a loop (`get_host`, then `report` of the picked host). From a
//! moment on, one host fails every call: the tool measures the time and the calls until it is out
//! of the rotation (picked only as a probe: more than `hosts` picks since its last pick, which a
//! strict round robin over idle hosts never allows). Then it succeeds again: the time and calls
//! until it is back in the rotation (picked twice within `hosts` picks). Prints one line, or one
//! JSON object with `--json`.

use anyhow::{Context, bail};
use argh::FromArgs;
use lars_wire::{Caller, ClientConfig, ClientError, HostAddr, RetCode};
use std::time::{Duration, Instant};

/// Measures how fast a failing host leaves a caller's rotation and a recovered one comes back.
#[derive(FromArgs)]
struct Args {
    /// the agent's first UDP port (default 8888)
    #[argh(option, default = "8888")]
    base_port: u16,
    /// the agent's shards (default 3)
    #[argh(option, default = "3")]
    shards: u16,
    /// modid of the route (at least two hosts; default 1)
    #[argh(option, default = "1")]
    modid: i32,
    /// cmdid of the route (default 1)
    #[argh(option, default = "1")]
    cmdid: i32,
    /// classic or fast (default classic)
    #[argh(option, default = "String::from(\"classic\")")]
    client: String,
    /// most seconds each phase may take (default 10)
    #[argh(option, default = "10")]
    limit_secs: u64,
    /// print one JSON object
    #[argh(switch)]
    json: bool,
}

/// One phase's result: how long and how many calls until the change showed in the picks.
struct Phase {
    calls: u64,
    elapsed: Duration,
}

fn main() -> anyhow::Result<()> {
    let args: Args = argh::from_env();
    let config = ClientConfig {
        base_port: args.base_port,
        shards: args.shards,
        ..ClientConfig::default()
    };
    let (modid, cmdid) = (args.modid, args.cmdid);
    let fast = match args.client.as_str() {
        "classic" => false,
        "fast" => true,
        other => bail!("--client {other} is not classic or fast"),
    };
    let mut caller =
        Caller::new(config, fast).with_context(|| format!("{} client", args.client))?;
    let hosts = caller
        .reg_init(modid, cmdid)
        .with_context(|| format!("route ({modid}, {cmdid})"))?;
    if hosts.len() < 2 {
        bail!(
            "route ({modid}, {cmdid}) has {} hosts; it needs two or more",
            hosts.len()
        );
    }
    let n = hosts.len() as u64;
    // Warm up: every host healthy, the fast client's view in place.
    for _ in 0..2000 {
        if let Ok(h) = caller.get_host(modid, cmdid) {
            let _ = caller.report(modid, cmdid, h, 0);
        }
    }
    let sick = caller
        .get_host(modid, cmdid)
        .context("a host to make sick")?;
    let limit = Duration::from_secs(args.limit_secs);
    let out = phase(&mut caller, modid, cmdid, sick, true, n, limit)
        .context("the failing host never left the rotation")?;
    let back = phase(&mut caller, modid, cmdid, sick, false, n, limit)
        .context("the recovered host never came back")?;
    if args.json {
        println!(
            "{{\"tool\":\"convergence\",\"client\":\"{}\",\"hosts\":{n},\"out_calls\":{},\"out_ms\":{:.3},\"back_calls\":{},\"back_ms\":{:.3}}}",
            args.client,
            out.calls,
            out.elapsed.as_secs_f64() * 1e3,
            back.calls,
            back.elapsed.as_secs_f64() * 1e3
        );
    } else {
        println!(
            "{}: failing host out of the rotation after {} calls, {:.3} ms; back after {} calls, {:.3} ms",
            args.client,
            out.calls,
            out.elapsed.as_secs_f64() * 1e3,
            back.calls,
            back.elapsed.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// Calls until the picks show the change: `failing` — `sick` fails every call until more than
/// `n` picks passed since its last pick; else it succeeds until it is picked twice within `n`
/// picks.
fn phase(
    caller: &mut Caller,
    modid: i32,
    cmdid: i32,
    sick: HostAddr,
    failing: bool,
    n: u64,
    limit: Duration,
) -> anyhow::Result<Phase> {
    let start = Instant::now();
    let (mut calls, mut picks) = (0u64, 0u64);
    // When failing starts, the sick host was the last pick.
    let mut last_sick = failing.then_some(0u64);
    while start.elapsed() < limit {
        calls += 1;
        let host = match caller.get_host(modid, cmdid) {
            Ok(host) => host,
            Err(ClientError::Refused(RetCode::Overload)) => continue,
            Err(e) => return Err(e).context("get_host"),
        };
        picks += 1;
        let is_sick = host == sick;
        caller
            .report(modid, cmdid, host, i32::from(is_sick && failing))
            .context("report")?;
        let done = if failing {
            !is_sick && last_sick.is_some_and(|at| picks - at > n)
        } else {
            is_sick && last_sick.is_some_and(|at| picks - at <= n)
        };
        if done {
            return Ok(Phase {
                calls,
                elapsed: start.elapsed(),
            });
        }
        if is_sick {
            last_sick = Some(picks);
        }
    }
    bail!("not within {limit:?}")
}
