//! The `blocking` client (`lars-perf --client blocking`): the original Lars C++ qps client's
//! exact pattern, so the agent can be measured against what existing callers do. Each generator
//! thread owns one UDP socket per shard port, `connect`ed to it (`std::net::UdpSocket::connect`),
//! in blocking mode; it keeps one request in flight: `send` it on the socket of its key's port,
//! then sleep in `recv` on that socket until the answer (or the timeout) comes. With the `qps`
//! workload an iteration is a `get_host`, its answer, and a `report` of the picked host, which
//! the agent does not answer (so nothing is received for it).
//!
//! What to send, which answer belongs to which request, and what timed out is the same sans-I/O
//! [`Flow`] the classic engine drives, with one slot; the threads, the start barrier, the tally
//! and its hand-over each second are the classic engine's ([`crate::perf::load`]). Only the
//! waiting differs: no runtime, no epoll, no timer — a blocking `recv` with the answer timeout
//! as the socket's read timeout, set once when the socket is made.

use crate::perf::flow::{Flow, FlowSetup};
use crate::perf::load::{ThreadContext, Tick, pin};
use crate::perf::options::Plan;
use crate::perf::tally::Tally;
use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

/// The receive buffer of a thread: any datagram fits.
const RECV_BUFFER: usize = 65536;
/// How often a thread hands its counts over.
const SECOND: Duration = Duration::from_secs(1);

/// One thread's sockets: one per shard port of `plan`, by shard, connected, blocking, with the
/// answer timeout as their read timeout.
pub fn connect(plan: &Plan) -> io::Result<Vec<UdpSocket>> {
    let ports = plan.ports;
    (0..ports.shards.get())
        .map(|shard| {
            let socket = UdpSocket::bind((Ipv4Addr::new(0, 0, 0, 0), 0))?;
            socket.connect((ports.ip, ports.base_port + shard))?;
            socket.set_read_timeout(Some(plan.timeout))?;
            Ok(socket)
        })
        .collect()
}

/// A blocking generator thread's life: pin, wait for the others, run the flow of its one slot
/// over `sockets` (by shard) until the end, hand over the rest.
pub(crate) fn generate(context: ThreadContext, sockets: Vec<UdpSocket>) -> Result<(), String> {
    let ThreadContext {
        index,
        plan,
        keys,
        barrier,
        start,
        ticks,
    } = context;
    pin(&plan, index);
    barrier.wait();
    let start = *start.get_or_init(Instant::now);
    let measure_start = start + plan.warmup;
    let end = measure_start + plan.duration;
    let mut flow = Flow::new(FlowSetup {
        load: plan.load,
        keys,
        ports: plan.ports,
        outstanding: 1,
        timeout: plan.timeout,
        socket: index,
        schedule: None,
        measure_start,
        end,
    });
    let mut tally = Tally::new(measure_start);
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut next_second = start + SECOND;
    let mut second = 0u32;
    // The socket the request in flight went out on.
    let mut waiting_on = 0;
    loop {
        let now = Instant::now();
        flow.on_time(now, &mut tally);
        while let Some(out) = flow.poll_send(Instant::now()) {
            let shard = usize::from(out.to.port().wrapping_sub(plan.ports.base_port));
            let socket = &sockets[shard];
            let sent = socket.send(flow.datagram(&out)).is_ok();
            if sent && out.kind.is_answered() {
                waiting_on = shard;
            }
            flow.commit(out, sent, Instant::now(), &mut tally);
        }
        if flow.is_finished() {
            break;
        }
        if flow.in_flight() > 0 {
            match sockets[waiting_on].recv(&mut buf) {
                Ok(len) => flow.on_datagram(&buf[..len], Instant::now(), &mut tally),
                // The read timeout: the next `on_time` times the request out.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                // A refusal reported for an earlier datagram: nothing listens on that port (yet);
                // the request times out.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(_) => tally.recv_error(Instant::now()),
            }
        }
        let now = Instant::now();
        while now >= next_second {
            second += 1;
            next_second += SECOND;
            let (window, stats) = tally.take();
            let _ = ticks.send(Tick {
                second: Some(second),
                window,
                stats,
            });
        }
    }
    let (window, stats) = tally.take();
    let _ = ticks.send(Tick {
        second: None,
        window,
        stats,
    });
    Ok(())
}
