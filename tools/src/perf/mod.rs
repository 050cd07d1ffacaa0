//! `lars-perf`, the load generator: drives lars-agent (or a bare UDP echo server) with
//! `get_host`, `get_route` and `report` requests from threads × sockets × requests in flight,
//! in a closed loop or an open loop at a fixed rate (latency corrected for coordinated
//! omission), and reports throughput and HDR-histogram latency percentiles as a summary or as
//! JSON. `src/bin/lars_perf.rs` only calls [`main`].
//!
//! The parts: [`options`] (the command line and its checks), [`keys`] (the key set and the port
//! of each key), [`workload`] (request kinds, mixes, the `qps` and `echo` presets),
//! [`schedule`] (open-loop send times), [`alarm`] (microsecond wake-ups), [`flow`] (one socket's requests and answers, sans I/O),
//! [`tally`] (counters and histograms), [`load`] (the threads, runtimes and sockets),
//! [`blocking`] (`--client blocking`: the C++ qps client's blocking connected sockets),
//! [`progress`] (the per-second line) and [`summary`] (the report, its verdict and its text and
//! JSON forms); [`fast`] runs the same presets through lars-wire's `FastClient` instead.

pub mod alarm;
pub mod blocking;
pub mod fast;
pub mod flow;
pub mod keys;
pub mod load;
pub mod options;
pub mod progress;
pub mod schedule;
pub mod summary;
pub mod tally;
pub mod workload;

use options::Plan;
use progress::Progress;
use summary::Report;

/// Runs `plan` and prints its report; returns the exit status: 0 for a good run, 1 for a
/// failed one (see [`summary::verdict`]) or one that could not start.
pub fn run(plan: &Plan) -> i32 {
    if plan.client == options::Client::Fast {
        return fast::run(plan);
    }
    let mut progress = Progress::new(plan.warmup);
    let outcome = load::run(plan, |second| progress.show(second));
    progress.finish();
    match outcome {
        Ok(outcome) => {
            let report = Report::new(plan, &outcome);
            if plan.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_text());
            }
            report.exit_code()
        }
        Err(e) => {
            // `{:#}` prints the error and its causes, which the message itself leaves out.
            eprintln!("lars-perf: {:#}", anyhow::Error::from(e));
            1
        }
    }
}

/// The whole program: parse the arguments (exit 2 when they are bad), run, exit with the
/// verdict.
pub fn main() -> i32 {
    let plan = options::from_env();
    run(&plan)
}
