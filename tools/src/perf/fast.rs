//! `lars-perf --client fast`: the `qps` and `get_host` presets through lars-wire's
//! [`FastClient`], one client shared by every generator thread, as a service that links the
//! library would call it. Closed loop only: each thread calls as fast as the client answers
//! (`qps`: a `get_host`, then a `report` of the picked host with SUCC, on the thread's own key;
//! `get_host`: `get_host` alone over the key set). Counts iterations in the measured window and
//! the process's CPU time in it (the client's flusher and receiver threads included), and prints
//! a summary or one JSON object. Owns its threads; never touches the classic generator's parts.

use crate::perf::options::Plan;
use crate::perf::workload::Load;
use lars_wire::{ClientConfig, ClientError, FastClient, FastConfig, RetCode};
use serde::Serialize;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Calls between two looks at the phase flag: rare enough to cost nothing per call.
const PHASE_CHECK_EVERY: u64 = 1024;

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// What a run measured, as printed (`--json`: this object).
#[derive(Debug, Serialize)]
pub struct FastReport {
    /// Always `lars-perf`.
    pub tool: &'static str,
    /// Always `fast`.
    pub client: &'static str,
    /// `qps` or `get_host`.
    pub workload: &'static str,
    /// Generator threads.
    pub threads: usize,
    /// Keys of the key set.
    pub keys: u64,
    /// Seconds measured.
    pub measured_secs: f64,
    /// Iterations (qps) or calls (get_host) in the measured window.
    pub iterations: u64,
    /// Iterations per second.
    pub iterations_per_sec: f64,
    /// `get_host` calls answered OVERLOAD.
    pub overload: u64,
    /// `get_host` calls answered NOEXIST.
    pub noexist: u64,
    /// Other errors (timeouts of classic calls, socket errors).
    pub errors: u64,
    /// Process CPU time per iteration, in microseconds (every thread of the generator: callers,
    /// the client's flusher and receiver).
    pub caller_cpu_us_per_iteration: f64,
    /// Calls served by the classic protocol (whole run; the first calls of a route, fallbacks).
    pub classic_calls: u64,
    /// Results sent in batches, batch datagrams, and results dropped on a full queue.
    pub results_sent: u64,
    /// Report batch datagrams sent.
    pub batches_sent: u64,
    /// Results dropped on a full queue.
    pub results_dropped: u64,
    /// Times the client fell back to the classic protocol.
    pub fallbacks: u64,
}

#[derive(Default)]
struct Counts {
    iterations: AtomicU64,
    overload: AtomicU64,
    noexist: AtomicU64,
    errors: AtomicU64,
}

/// Runs `plan` through a [`FastClient`]; returns the exit status (0 good, 1 nothing done, more
/// than 1% errors, or the client could not start).
pub fn run(plan: &Plan) -> i32 {
    let config = FastConfig {
        client: ClientConfig {
            agent_ip: plan.ports.ip,
            base_port: plan.ports.base_port,
            shards: plan.ports.shards.get(),
            timeout: plan.timeout,
        },
        ..FastConfig::default()
    };
    let client = match FastClient::new(config) {
        Ok(client) => Arc::new(client),
        Err(e) => {
            eprintln!("lars-perf: {:#}", anyhow::Error::from(e));
            return 1;
        }
    };
    let qps = plan.load == Load::Qps;
    let keys = plan.keys;
    // Each key's route is fetched (and its view asked for) before the clock starts.
    for i in 0..keys.len().min(plan.threads.max(1) as u64 * 64) {
        let (modid, cmdid) = keys.key(i);
        let _ = client.reg_init(modid, cmdid);
    }
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let counts = Arc::new(Counts::default());
    let start = Arc::new(Barrier::new(plan.threads + 1));
    let stride = plan.threads as u64;
    let threads: Vec<_> = (0..plan.threads)
        .map(|t| {
            let (client, phase, counts, start) =
                (client.clone(), phase.clone(), counts.clone(), start.clone());
            let cpu = (!plan.cpus.is_empty()).then(|| plan.cpus[t % plan.cpus.len()]);
            std::thread::spawn(move || {
                if let Some(cpu) = cpu {
                    core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
                }
                start.wait();
                let mut local = Counts::default();
                let mut n = 0u64;
                let mut measuring = false;
                loop {
                    let (modid, cmdid) = if qps {
                        keys.key(t as u64)
                    } else {
                        // The threads interleave over the key set, each key once before any again.
                        keys.key(t as u64 + n * stride)
                    };
                    match client.get_host(modid, cmdid) {
                        Ok(host) => {
                            if qps && client.report(modid, cmdid, host, 0).is_err() {
                                *local.errors.get_mut() += 1;
                            }
                        }
                        Err(ClientError::Refused(RetCode::Overload)) => {
                            *local.overload.get_mut() += 1
                        }
                        Err(ClientError::Refused(_)) => *local.noexist.get_mut() += 1,
                        Err(_) => *local.errors.get_mut() += 1,
                    }
                    *local.iterations.get_mut() += 1;
                    n += 1;
                    if n.is_multiple_of(PHASE_CHECK_EVERY) {
                        let now = phase.load(Ordering::Relaxed);
                        if now == MEASURE && !measuring {
                            measuring = true;
                            local = Counts::default();
                        } else if now == STOP {
                            break;
                        }
                    }
                }
                if measuring {
                    for (total, mine) in [
                        (&counts.iterations, &local.iterations),
                        (&counts.overload, &local.overload),
                        (&counts.noexist, &local.noexist),
                        (&counts.errors, &local.errors),
                    ] {
                        total.fetch_add(mine.load(Ordering::Relaxed), Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    start.wait();
    std::thread::sleep(plan.warmup);
    phase.store(MEASURE, Ordering::Relaxed);
    let cpu_before = process_cpu();
    let began = Instant::now();
    std::thread::sleep(plan.duration);
    phase.store(STOP, Ordering::Relaxed);
    let measured = began.elapsed();
    let cpu = process_cpu().saturating_sub(cpu_before);
    for thread in threads {
        let _ = thread.join();
    }
    let report = report(plan, &client, &counts, measured, cpu);
    if plan.json {
        match serde_json::to_string(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("lars-perf: {e}"),
        }
    } else {
        print!("{}", to_text(&report));
    }
    let bad = report.errors + report.noexist;
    i32::from(report.iterations == 0 || bad * 100 > report.iterations)
}

fn report(
    plan: &Plan,
    client: &FastClient,
    counts: &Counts,
    measured: Duration,
    cpu: Duration,
) -> FastReport {
    let stats = client.stats();
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let iterations = get(&counts.iterations);
    FastReport {
        tool: "lars-perf",
        client: "fast",
        workload: plan.load.name(),
        threads: plan.threads,
        keys: plan.keys.len(),
        measured_secs: measured.as_secs_f64(),
        iterations,
        iterations_per_sec: iterations as f64 / measured.as_secs_f64(),
        overload: get(&counts.overload),
        noexist: get(&counts.noexist),
        errors: get(&counts.errors),
        caller_cpu_us_per_iteration: cpu.as_secs_f64() * 1e6 / iterations.max(1) as f64,
        classic_calls: get(&stats.classic_calls),
        results_sent: get(&stats.results_sent),
        batches_sent: get(&stats.batches_sent),
        results_dropped: get(&stats.results_dropped),
        fallbacks: get(&stats.fallbacks),
    }
}

fn to_text(r: &FastReport) -> String {
    format!(
        "lars-perf --client fast, workload {}: {} threads, {} keys, {:.1} s measured\n\
         iterations   {} ({:.0}/s)\n\
         refused      {} OVERLOAD, {} NOEXIST; {} other errors\n\
         caller CPU   {:.3} us per iteration (all threads of the process)\n\
         client       {} classic calls, {} results in {} batches, {} dropped, {} fallbacks\n",
        r.workload,
        r.threads,
        r.keys,
        r.measured_secs,
        r.iterations,
        r.iterations_per_sec,
        r.overload,
        r.noexist,
        r.errors,
        r.caller_cpu_us_per_iteration,
        r.classic_calls,
        r.results_sent,
        r.batches_sent,
        r.results_dropped,
        r.fallbacks,
    )
}

/// CPU time of the whole process so far.
fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}
