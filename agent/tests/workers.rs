//! One worker per CPU of the affinity mask: `taskset -c 0` gives one worker, `taskset -c 0,1`
//! two, read from the agent's own counters.

mod common;

use common::System;

fn workers_under(cpus: &str) -> (u64, Vec<u64>) {
    let mut system = System::start();
    system.agent.take();
    system.start_agent(&["taskset", "-c", cpus], "");
    let workers = system.stat("lars_agent_workers", &[]);
    let cores = (0..workers)
        .map(|w| system.stat("lars_agent_worker_core", &[("worker", &w.to_string())]))
        .collect();
    (workers, cores)
}

#[test]
fn taskset_one_cpu_runs_one_worker() {
    assert_eq!(workers_under("0"), (1, vec![0]));
}

#[test]
fn taskset_two_cpus_runs_two_workers_pinned_to_them() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        panic!("this test needs a machine with at least 2 CPUs");
    }
    let (workers, mut cores) = workers_under("0,1");
    cores.sort_unstable();
    assert_eq!((workers, cores), (2, vec![0, 1]));
}
