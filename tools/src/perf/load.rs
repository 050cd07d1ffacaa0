//! The engine: `--threads` generator threads (pinned with `--cpus`), each a tokio current-thread
//! runtime driving its `--sockets` non-blocking UDP sockets, one task per socket. A task drains
//! every datagram its socket holds, hands each to its [`Flow`], lets the flow time out what is
//! overdue, sends what the flow offers, and then sleeps in epoll until its socket is readable
//! (or writable again, after the kernel pushed back) or the next moment the flow named, on an
//! [`Alarm`] precise to the microsecond — it never spins, so on a machine shared with the agent
//! the agent keeps its core. Datagrams are encoded
//! into the flow's slots and received into one buffer per socket: nothing is allocated per
//! request.
//!
//! Every socket of every thread takes its keys from the run's one [`KeyWalk`], so together they
//! walk the whole key set evenly. Each thread keeps one [`Tally`] for its tasks and hands it,
//! once a second and at the end, to the main thread over a channel; the main thread adds them up
//! and reports each second once every thread has delivered it. The sockets are bound before any
//! thread starts (so a failure is reported before load is generated), and all threads take the
//! same start instant once every one of them is ready.
//!
//! That is the `classic` client. With `--client blocking` the same threads, tallies and
//! hand-overs run [`blocking`]'s loop instead (blocking sockets, one connected per shard port).

use crate::perf::alarm::Alarm;
use crate::perf::blocking;
use crate::perf::flow::{Flow, FlowSetup};
use crate::perf::keys::KeyWalk;
use crate::perf::options::{Client, Plan};
use crate::perf::schedule::Schedule;
use crate::perf::tally::{Stats, Tally, Window};
use std::cell::RefCell;
use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::num::NonZeroU64;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

/// Datagrams a task receives, or sends, in one go before it lets its thread's other tasks run.
const BATCH: usize = 64;
/// The receive buffer of each socket: any datagram fits.
const RECV_BUFFER: usize = 65536;
/// How often threads hand their counts over.
const SECOND: Duration = Duration::from_secs(1);

/// Why a run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A generator socket could not be opened.
    #[error("cannot open a UDP socket")]
    Socket(#[source] io::Error),
    /// A generator thread could not be started.
    #[error("cannot start generator thread {thread}")]
    Thread {
        /// The thread's number.
        thread: usize,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A generator thread could not set up its runtime or sockets, or died.
    #[error("generator thread {thread} failed: {reason}")]
    Failed {
        /// The thread's number.
        thread: usize,
        /// What went wrong.
        reason: String,
    },
}

/// One second of the run, once every thread has delivered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Second {
    /// Its number from the start, 1 for the first.
    pub second: u32,
    /// What completed and timed out in it, warm-up included.
    pub window: Window,
    /// The measured p99 latency so far in µs (none during warm-up or before the first answer).
    pub p99_so_far: Option<u64>,
    /// Timeouts so far, warm-up included.
    pub timeouts_so_far: u64,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The measured counters and latencies of every thread, added up.
    pub stats: Stats,
    /// Completions and timeouts of each full second, warm-up included, in order.
    pub seconds: Vec<Window>,
    /// Wall time from the start to the last thread's end (the drain after the measured window
    /// included).
    pub elapsed: Duration,
}

/// What a thread hands over.
pub(crate) struct Tick {
    /// The second it closes, or `None` for the rest at the thread's end.
    pub(crate) second: Option<u32>,
    pub(crate) window: Window,
    pub(crate) stats: Stats,
}

/// Runs the load of `plan`, calling `on_second` as each second completes.
pub fn run(plan: &Plan, mut on_second: impl FnMut(&Second)) -> Result<Outcome, LoadError> {
    if plan.client == Client::Fast {
        // `perf::run` sends these to `perf::fast`; this engine only drives datagram clients.
        return Err(LoadError::Failed {
            thread: 0,
            reason: "--client fast runs through perf::fast, not the datagram engine".into(),
        });
    }
    let mut per_thread = Vec::with_capacity(plan.threads);
    for _ in 0..plan.threads {
        let sockets = match plan.client {
            Client::Classic => {
                let mut sockets = Vec::with_capacity(plan.sockets);
                for _ in 0..plan.sockets {
                    let socket = UdpSocket::bind((Ipv4Addr::new(0, 0, 0, 0), 0))
                        .map_err(LoadError::Socket)?;
                    socket.set_nonblocking(true).map_err(LoadError::Socket)?;
                    sockets.push(socket);
                }
                sockets
            }
            Client::Blocking | Client::Fast => {
                blocking::connect(plan).map_err(LoadError::Socket)?
            }
        };
        per_thread.push(sockets);
    }

    let plan = Arc::new(plan.clone());
    let keys = Arc::new(KeyWalk::new(plan.keys));
    let barrier = Arc::new(Barrier::new(plan.threads));
    let start = Arc::new(OnceLock::new());
    let (ticks, received) = mpsc::channel();
    let mut handles = Vec::with_capacity(plan.threads);
    for (index, sockets) in per_thread.into_iter().enumerate() {
        let context = ThreadContext {
            index,
            plan: plan.clone(),
            keys: keys.clone(),
            barrier: barrier.clone(),
            start: start.clone(),
            ticks: ticks.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("lars-perf-{index}"))
            .spawn(move || match context.plan.client {
                Client::Classic => generate(context, sockets),
                Client::Blocking | Client::Fast => blocking::generate(context, sockets),
            })
            .map_err(|source| LoadError::Thread {
                thread: index,
                source,
            })?;
        handles.push(handle);
    }
    drop(ticks);

    let mut stats = Stats::new();
    let mut seconds: Vec<(usize, Window)> = Vec::new();
    let mut timeouts_so_far = 0;
    while let Ok(tick) = received.recv() {
        stats.add(&tick.stats);
        let Some(second) = tick.second else {
            continue;
        };
        let index = second as usize - 1;
        if seconds.len() <= index {
            seconds.resize(index + 1, (0, Window::default()));
        }
        let (delivered, window) = &mut seconds[index];
        *delivered += 1;
        window.add(&tick.window);
        if *delivered == plan.threads {
            timeouts_so_far += window.timeouts;
            on_second(&Second {
                second,
                window: *window,
                p99_so_far: (!stats.latency.is_empty())
                    .then(|| stats.latency.value_at_quantile(0.99)),
                timeouts_so_far,
            });
        }
    }
    let elapsed = start.get().map_or(Duration::ZERO, Instant::elapsed);

    for (thread, handle) in handles.into_iter().enumerate() {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(LoadError::Failed { thread, reason }),
            Err(_) => {
                return Err(LoadError::Failed {
                    thread,
                    reason: "it panicked".to_string(),
                });
            }
        }
    }
    let full = seconds
        .iter()
        .take_while(|(delivered, _)| *delivered == plan.threads)
        .map(|(_, window)| *window)
        .collect();
    Ok(Outcome {
        stats,
        seconds: full,
        elapsed,
    })
}

/// What a generator thread is started with.
pub(crate) struct ThreadContext {
    pub(crate) index: usize,
    pub(crate) plan: Arc<Plan>,
    /// The run's key walk, shared by every socket.
    pub(crate) keys: Arc<KeyWalk>,
    pub(crate) barrier: Arc<Barrier>,
    pub(crate) start: Arc<OnceLock<Instant>>,
    pub(crate) ticks: mpsc::Sender<Tick>,
}

/// A generator thread's life: pin, set up, wait for the others, drive the sockets to the end,
/// hand over the rest.
fn generate(context: ThreadContext, sockets: Vec<UdpSocket>) -> Result<(), String> {
    let ThreadContext {
        index,
        plan,
        keys,
        barrier,
        start,
        ticks,
    } = context;
    pin(&plan, index);
    // Wake-ups as close to the asked time as the kernel can: the open loop's schedule is only as
    // good as its timers (best effort; the default slack is 50 µs).
    let _ = rustix::thread::set_current_timer_slack(NonZeroU64::new(1));
    let ready = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start its runtime: {e}"))
        .and_then(|runtime| {
            let sockets = {
                let _entered = runtime.enter();
                sockets
                    .into_iter()
                    .map(|socket| Ok((tokio::net::UdpSocket::from_std(socket)?, Alarm::new()?)))
                    .collect::<io::Result<Vec<_>>>()
                    .map_err(|e| format!("cannot register its sockets and timers: {e}"))?
            };
            Ok((runtime, sockets))
        });
    // Every thread reaches the barrier, ready or not, so that none waits forever.
    barrier.wait();
    let (runtime, sockets) = ready?;
    let start = *start.get_or_init(Instant::now);
    let measure_start = start + plan.warmup;
    let end = measure_start + plan.duration;
    let tally = Rc::new(RefCell::new(Tally::new(measure_start)));

    let local = tokio::task::LocalSet::new();
    let died = local.block_on(&runtime, async {
        let mut drivers = Vec::with_capacity(sockets.len());
        for (i, (socket, alarm)) in sockets.into_iter().enumerate() {
            let global = index * plan.sockets + i;
            let flow = Flow::new(FlowSetup {
                load: plan.load,
                keys: keys.clone(),
                ports: plan.ports,
                outstanding: plan.outstanding,
                timeout: plan.timeout,
                socket: global,
                schedule: plan
                    .rate
                    .map(|rate| Schedule::for_socket(start, rate, plan.total_sockets(), global)),
                measure_start,
                end,
            });
            drivers.push(tokio::task::spawn_local(drive(
                socket,
                alarm,
                flow,
                tally.clone(),
            )));
        }
        let ticker = tokio::task::spawn_local(hand_over(start, tally.clone(), ticks.clone()));
        let mut died = false;
        for driver in drivers {
            died |= driver.await.is_err();
        }
        ticker.abort();
        died
    });
    let (window, stats) = tally.borrow_mut().take();
    let _ = ticks.send(Tick {
        second: None,
        window,
        stats,
    });
    if died {
        return Err("a socket task panicked".to_string());
    }
    Ok(())
}

/// Pins generator thread `index` to its CPU of `--cpus`, if any (best effort, said once).
pub(crate) fn pin(plan: &Plan, index: usize) {
    if !plan.cpus.is_empty() {
        let cpu = plan.cpus[index % plan.cpus.len()];
        if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
            eprintln!("lars-perf: could not pin generator thread {index} to CPU {cpu}");
        }
    }
}

/// Hands the thread's counts to the main thread at the end of every second from `start`.
async fn hand_over(start: Instant, tally: Rc<RefCell<Tally>>, ticks: mpsc::Sender<Tick>) {
    let mut interval =
        tokio::time::interval_at(tokio::time::Instant::from_std(start + SECOND), SECOND);
    let mut second = 0u32;
    loop {
        interval.tick().await;
        second += 1;
        let (window, stats) = tally.borrow_mut().take();
        let tick = Tick {
            second: Some(second),
            window,
            stats,
        };
        if ticks.send(tick).is_err() {
            return;
        }
    }
}

/// Drives one socket until its flow is finished.
async fn drive(
    socket: tokio::net::UdpSocket,
    mut alarm: Alarm,
    mut flow: Flow,
    tally: Rc<RefCell<Tally>>,
) {
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        let mut received = 0;
        while received < BATCH {
            match socket.try_recv(&mut buf) {
                Ok(len) => {
                    let now = Instant::now();
                    flow.on_datagram(&buf[..len], now, &mut tally.borrow_mut());
                    received += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // A refusal reported for an earlier datagram: the target is not there (yet);
                // its requests will time out.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => received += 1,
                Err(_) => {
                    tally.borrow_mut().recv_error(Instant::now());
                    break;
                }
            }
        }

        let mut sent = 0;
        let mut blocked = false;
        {
            let mut tally = tally.borrow_mut();
            flow.on_time(Instant::now(), &mut tally);
            while sent < BATCH {
                // Read per request: in a closed loop this is the request's start.
                let now = Instant::now();
                let Some(out) = flow.poll_send(now) else {
                    break;
                };
                match socket.try_send_to(flow.datagram(&out), out.to) {
                    Ok(_) => flow.commit(out, true, now, &mut tally),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        blocked = true;
                        break;
                    }
                    Err(_) => flow.commit(out, false, now, &mut tally),
                }
                sent += 1;
            }
        }
        if flow.is_finished() {
            return;
        }
        if received == BATCH || sent == BATCH {
            tokio::task::yield_now().await;
            continue;
        }

        let wake = flow.next_wake();
        // A timerfd that cannot be set (it never fails for a valid fd and time) falls back to
        // the millisecond resolution of tokio's timer.
        let precise = alarm.set(wake).is_ok();
        let coarse = tokio::time::sleep_until(tokio::time::Instant::from_std(
            wake.unwrap_or_else(|| Instant::now() + SECOND),
        ));
        tokio::select! {
            biased;
            _ = socket.readable() => {}
            _ = socket.writable(), if blocked => {}
            _ = alarm.rung(), if precise && wake.is_some() => {}
            () = coarse, if !precise && wake.is_some() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_their_cause_once_through_source() {
        let errors = [
            LoadError::Socket(io::Error::other("no buffer space")),
            LoadError::Thread {
                thread: 3,
                source: io::Error::other("no buffer space"),
            },
        ];
        for error in errors {
            assert!(!error.to_string().contains("no buffer space"), "{error}");
            let chain = format!("{:#}", anyhow::Error::from(error));
            assert_eq!(chain.matches("no buffer space").count(), 1, "{chain}");
        }
    }
}
