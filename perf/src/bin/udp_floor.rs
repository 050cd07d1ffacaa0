//! `udp-floor`: what one UDP datagram on loopback costs the kernel of this machine, measured on
//! the cheapest server that can be written (plain blocking sockets, `recvmmsg`/`sendmmsg` batches
//! of up to 64, no work per datagram). It is the floor under any agent's "CPU per request":
//! whatever a UDP agent does on top, it pays at least this for each datagram it receives and each
//! reply it sends.
//!
//! Server and clients are threads of this process, pinned to different CPUs; the server's CPU
//! time is its own thread's (`CLOCK_THREAD_CPUTIME_ID`), so nothing the clients do is counted.
//! The kernel's loopback delivery of what the server sends (routing, the receiver's socket
//! queue, waking the receiver) runs on the sender's CPU and is part of the server's time, exactly
//! as it is part of the agent's.
//!
//! Modes:
//! - `pingpong`: `--clients` client threads (default 1), one request in flight each, the server
//!   answers each with one `sendto`. The clients follow the Lars C++ qps client (and `lars-perf
//!   --client blocking`): a socket `connect`ed to the server, blocking `send`/`recv`. The request
//!   is an encoded `GetHostRequest` and the answer an encoded `GetHostResponse`, the sizes the
//!   agent sees and sends; `--report` adds, per iteration, an encoded `ReportRequest` that is not
//!   answered, like the qps preset's get_host + report;
//! - `batch`: `--clients` sockets with `--outstanding` requests in flight each, the server
//!   answers with `recvmmsg` + `sendmmsg`;
//! - `recv`: a client queues bursts of datagrams while the server waits, the server drains each
//!   burst without sleeping on the socket: receiving with no wake-up in it;
//! - `send`: the server only sends, to a socket a client drains without ever sleeping: sending
//!   (the whole loopback path into the receiver's queue) with no wake-up in it.
//!
//! `recv` and `send` are the true floor: one datagram in and one out cost at least their sum,
//! whatever batching, runtime or polling a server uses. `pingpong` and `batch` show what the
//! cheapest server pays once real wake-ups are part of the traffic.

use anyhow::{Context, bail};
use argh::FromArgs;
use lars_wire::HostAddr;
use lars_wire::datagram::encode_datagram;
use lars_wire::messages::{GetHostRequest, GetHostResponse, ReportRequest};
use lars_wire::msg::Message;
use std::mem::{MaybeUninit, zeroed};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Datagrams per `recvmmsg`/`sendmmsg`.
const BATCH: usize = 64;
/// The datagram the batch, recv and send modes send: the size of a `GetHostRequest`.
const DATAGRAM: [u8; 20] = [
    3, 0, 0, 0, 12, 0, 0, 0, 8, 1, 16, 1, 24, 1, 0, 0, 0, 0, 0, 0,
];

/// udp-floor: the kernel's CPU cost per UDP datagram on loopback, on the cheapest server.
///
/// Prints one line: the mode, how many datagrams or requests the server handled, and the
/// server thread's CPU microseconds per datagram (recv, send), request (batch) or iteration
/// (pingpong).
#[derive(FromArgs)]
struct Args {
    /// pingpong, batch, recv or send
    #[argh(option, default = "String::from(\"pingpong\")")]
    mode: String,
    /// seconds to measure (default 5)
    #[argh(option, default = "5.0")]
    duration: f64,
    /// CPU the server thread is pinned to (default 1)
    #[argh(option, default = "1")]
    server_cpu: usize,
    /// CPU the client threads are pinned to (default 0)
    #[argh(option, default = "0")]
    client_cpu: usize,
    /// batch: client sockets (default 4); pingpong: client threads (default 1)
    #[argh(option)]
    clients: Option<usize>,
    /// batch: requests in flight per client socket (default 16)
    #[argh(option, default = "16")]
    outstanding: usize,
    /// pingpong: also send one unanswered datagram per iteration (get_host + report)
    #[argh(switch)]
    report: bool,
}

fn main() -> anyhow::Result<()> {
    let args: Args = argh::from_env();
    if !(args.duration > 0.0 && args.duration.is_finite()) {
        bail!(
            "--duration must be a positive number of seconds, got {}",
            args.duration
        );
    }
    let cpus = core_affinity::get_core_ids().context("reading the CPUs this process may use")?;
    for (name, cpu) in [
        ("--server-cpu", args.server_cpu),
        ("--client-cpu", args.client_cpu),
    ] {
        if !cpus.iter().any(|c| c.id == cpu) {
            bail!("{name} {cpu} is not a CPU this process may use");
        }
    }
    let server = UdpSocket::bind("127.0.0.1:0").context("binding the server socket")?;
    server.set_read_timeout(Some(Duration::from_millis(50)))?;
    let stop = Arc::new(AtomicBool::new(false));
    let (per, unit) = match args.mode.as_str() {
        "pingpong" => (pingpong(&args, server, &stop)?, "µs per iteration"),
        "batch" => (batch(&args, server, &stop)?, "µs per request"),
        "recv" => (recv_only(&args, server, &stop)?, "µs per datagram received"),
        "send" => (send_only(&args, server, &stop)?, "µs per datagram sent"),
        other => bail!("--mode must be pingpong, batch, recv or send, got '{other}'"),
    };
    println!(
        "udp-floor mode={}{} count={} secs={:.1} server_cpu={:.2} {unit}",
        args.mode,
        if args.report { "+report" } else { "" },
        per.count,
        per.secs,
        per.cpu_us_per,
    );
    Ok(())
}

/// What the server did in a run.
struct Measured {
    count: u64,
    secs: f64,
    cpu_us_per: f64,
}

/// Runs `server` pinned to `--server-cpu` and `client` pinned to `--client-cpu` for the
/// duration; the server returns how many units it handled.
fn run(
    args: &Args,
    stop: &Arc<AtomicBool>,
    server: impl FnOnce() -> u64 + Send + 'static,
    clients: Vec<Box<dyn FnOnce() + Send>>,
) -> anyhow::Result<Measured> {
    let server_cpu = args.server_cpu;
    let client_cpu = args.client_cpu;
    let server = thread::spawn(move || {
        core_affinity::set_for_current(core_affinity::CoreId { id: server_cpu });
        let cpu0 = thread_cpu();
        let t0 = Instant::now();
        let count = server();
        (count, t0.elapsed().as_secs_f64(), thread_cpu() - cpu0)
    });
    thread::sleep(Duration::from_millis(50));
    let clients: Vec<_> = clients
        .into_iter()
        .map(|client| {
            thread::spawn(move || {
                core_affinity::set_for_current(core_affinity::CoreId { id: client_cpu });
                client();
            })
        })
        .collect();
    thread::sleep(Duration::from_secs_f64(args.duration));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
    }
    let (count, secs, cpu) = server
        .join()
        .map_err(|_| anyhow::anyhow!("the server thread panicked"))?;
    if count == 0 {
        bail!("the server handled nothing");
    }
    Ok(Measured {
        count,
        secs,
        cpu_us_per: cpu * 1e6 / count as f64,
    })
}

/// The calling thread's CPU time in seconds.
fn thread_cpu() -> f64 {
    let mut ts = MaybeUninit::<libc::timespec>::uninit();
    // SAFETY: `ts` is a valid place for one timespec; the call writes it or fails.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, ts.as_mut_ptr()) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    // SAFETY: the call succeeded, so it wrote `ts`.
    let ts = unsafe { ts.assume_init() };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn client_socket(to: SocketAddr) -> anyhow::Result<UdpSocket> {
    let socket = UdpSocket::bind("127.0.0.1:0").context("binding a client socket")?;
    socket.connect(to)?;
    socket.set_read_timeout(Some(Duration::from_millis(50)))?;
    Ok(socket)
}

/// The three datagrams of a pingpong iteration, encoded as the agent's callers send them: a
/// `GetHostRequest`, its `GetHostResponse` and a `ReportRequest` of the picked host.
struct Iteration {
    request: Vec<u8>,
    answer: Vec<u8>,
    report: Vec<u8>,
}

impl Iteration {
    fn new() -> anyhow::Result<Iteration> {
        let host = HostAddr::new(Ipv4Addr::new(10, 0, 0, 1), 9001);
        let encode = |message: Message| -> anyhow::Result<Vec<u8>> {
            let mut buf = [0u8; 256];
            let len = encode_datagram(&message, &mut buf).context("encoding a datagram")?;
            Ok(buf[..len].to_vec())
        };
        Ok(Iteration {
            request: encode(Message::GetHostRequest(GetHostRequest {
                seq: 1,
                modid: 1,
                cmdid: 1,
            }))?,
            answer: encode(Message::GetHostResponse(GetHostResponse {
                seq: 1,
                modid: 1,
                cmdid: 1,
                retcode: 0,
                host: Some(host.into()),
            }))?,
            report: encode(Message::ReportRequest(ReportRequest {
                modid: 1,
                cmdid: 1,
                host: Some(host.into()),
                retcode: 0,
            }))?,
        })
    }
}

/// `pingpong`: each client sends a get_host and waits for its answer (then, with `--report`,
/// sends a report); the server answers get_hosts only.
fn pingpong(args: &Args, server: UdpSocket, stop: &Arc<AtomicBool>) -> anyhow::Result<Measured> {
    let iteration = Arc::new(Iteration::new()?);
    let to = server.local_addr()?;
    let report = args.report;
    let s_stop = stop.clone();
    let mut clients: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
    for _ in 0..args.clients.unwrap_or(1).max(1) {
        let client = client_socket(to)?;
        let c_stop = stop.clone();
        let it = iteration.clone();
        clients.push(Box::new(move || {
            let mut buf = [0u8; 2048];
            while !c_stop.load(Ordering::Relaxed) {
                let _ = client.send(&it.request);
                let _ = client.recv(&mut buf);
                if report {
                    let _ = client.send(&it.report);
                }
            }
        }));
    }
    run(
        args,
        stop,
        move || {
            let mut buf = [0u8; 2048];
            let mut requests = 0u64;
            while !s_stop.load(Ordering::Relaxed) {
                let Ok((len, from)) = server.recv_from(&mut buf) else {
                    continue;
                };
                // Only the get_host is answered; the report is not.
                if buf[..len] == iteration.request[..] {
                    requests += 1;
                    let _ = server.send_to(&iteration.answer, from);
                }
            }
            requests
        },
        clients,
    )
}

/// `recvmmsg`/`sendmmsg` state for up to [`BATCH`] datagrams.
struct Mmsg {
    bufs: Box<[[u8; 2048]; BATCH]>,
    names: Box<[libc::sockaddr_in; BATCH]>,
    iovs: Box<[libc::iovec; BATCH]>,
    msgs: Box<[libc::mmsghdr; BATCH]>,
}

impl Mmsg {
    fn new() -> Mmsg {
        // SAFETY: sockaddr_in, iovec and mmsghdr are plain C structs; all-zero bytes are valid.
        let mut m = unsafe {
            Mmsg {
                bufs: Box::new([[0; 2048]; BATCH]),
                names: Box::new(zeroed()),
                iovs: Box::new(zeroed()),
                msgs: Box::new(zeroed()),
            }
        };
        for i in 0..BATCH {
            m.iovs[i].iov_base = m.bufs[i].as_mut_ptr().cast();
            m.msgs[i].msg_hdr.msg_iov = &raw mut m.iovs[i];
            m.msgs[i].msg_hdr.msg_iovlen = 1;
            m.msgs[i].msg_hdr.msg_name = (&raw mut m.names[i]).cast();
        }
        m
    }

    /// Receives up to [`BATCH`] datagrams, blocking for the first (or the socket's timeout).
    fn recv(&mut self, socket: &UdpSocket) -> usize {
        self.recv_with(socket, libc::MSG_WAITFORONE)
    }

    /// Receives up to [`BATCH`] datagrams that are already queued; never sleeps.
    fn recv_queued(&mut self, socket: &UdpSocket) -> usize {
        self.recv_with(socket, libc::MSG_DONTWAIT)
    }

    fn recv_with(&mut self, socket: &UdpSocket, flags: i32) -> usize {
        for i in 0..BATCH {
            self.iovs[i].iov_len = 2048;
            self.msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
        }
        // SAFETY: every mmsghdr points at this struct's own buffers, names and iovecs, which
        // live as long as `self`; the kernel writes at most their stated lengths.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                BATCH as u32,
                flags,
                std::ptr::null_mut(),
            )
        };
        n.max(0) as usize
    }

    /// Sends the first `n` datagrams back to where they came from (their lengths as received);
    /// returns how many the kernel took.
    fn echo(&mut self, socket: &UdpSocket, n: usize) -> usize {
        for i in 0..n {
            self.iovs[i].iov_len = self.msgs[i].msg_len as usize;
        }
        let mut sent = 0;
        while sent < n {
            // SAFETY: as in `recv`; the first `n` entries hold received lengths and names.
            let r = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    self.msgs.as_mut_ptr().add(sent),
                    (n - sent) as u32,
                    0,
                )
            };
            if r <= 0 {
                break;
            }
            sent += r as usize;
        }
        sent
    }
}

/// `batch`: clients keep `--outstanding` requests in flight, the server answers each.
fn batch(args: &Args, server: UdpSocket, stop: &Arc<AtomicBool>) -> anyhow::Result<Measured> {
    let to = server.local_addr()?;
    let s_stop = stop.clone();
    let mut clients: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
    for _ in 0..args.clients.unwrap_or(4).max(1) {
        let client = client_socket(to)?;
        let c_stop = stop.clone();
        let outstanding = args.outstanding;
        clients.push(Box::new(move || {
            let mut buf = [0u8; 2048];
            for _ in 0..outstanding {
                let _ = client.send(&DATAGRAM);
            }
            while !c_stop.load(Ordering::Relaxed) {
                // An answer, or a timeout (a lost datagram): either way one more goes out.
                let _ = client.recv(&mut buf);
                let _ = client.send(&DATAGRAM);
            }
        }));
    }
    run(
        args,
        stop,
        move || {
            let mut m = Mmsg::new();
            let mut handled = 0u64;
            while !s_stop.load(Ordering::Relaxed) {
                let n = m.recv(&server);
                let _ = m.echo(&server, n);
                handled += n as u64;
            }
            handled
        },
        clients,
    )
}

/// Datagrams a `recv` client queues before the server drains them.
const BURST: usize = 1024;

/// `recv`: a client queues a burst of [`BURST`] datagrams while the server waits, then the
/// server drains them with `recvmmsg` without ever sleeping on the socket: what receiving costs
/// with no wake-up in it.
fn recv_only(args: &Args, server: UdpSocket, stop: &Arc<AtomicBool>) -> anyhow::Result<Measured> {
    grow_receive_buffer(&server, 16 << 20);
    let client = client_socket(server.local_addr()?)?;
    let (sent_tx, sent_rx) = std::sync::mpsc::channel::<()>();
    let (drained_tx, drained_rx) = std::sync::mpsc::channel::<()>();
    let (s_stop, c_stop) = (stop.clone(), stop.clone());
    run(
        args,
        stop,
        move || {
            let mut m = Mmsg::new();
            let mut received = 0u64;
            while !s_stop.load(Ordering::Relaxed) {
                if sent_rx.recv_timeout(Duration::from_millis(50)).is_err() {
                    continue;
                }
                loop {
                    let n = m.recv_queued(&server);
                    if n == 0 {
                        break;
                    }
                    received += n as u64;
                }
                let _ = drained_tx.send(());
            }
            received
        },
        vec![Box::new(move || {
            while !c_stop.load(Ordering::Relaxed) {
                for _ in 0..BURST {
                    let _ = client.send(&DATAGRAM);
                }
                if sent_tx.send(()).is_err() {
                    return;
                }
                let _ = drained_rx.recv_timeout(Duration::from_millis(100));
            }
        })],
    )
}

/// Asks for a receive buffer of `bytes` (past `net.core.rmem_max` where allowed), so a burst is
/// queued whole.
fn grow_receive_buffer(socket: &UdpSocket, bytes: i32) {
    for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: `bytes` is a valid int for the call to read; the socket is open.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&raw const bytes).cast(),
                size_of::<i32>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
}

fn send_only(args: &Args, server: UdpSocket, stop: &Arc<AtomicBool>) -> anyhow::Result<Measured> {
    let sink = UdpSocket::bind("127.0.0.1:0").context("binding the receiving socket")?;
    sink.set_read_timeout(Some(Duration::from_millis(50)))?;
    server.connect(sink.local_addr()?)?;
    let (s_stop, c_stop) = (stop.clone(), stop.clone());
    let delivered = Arc::new(AtomicU64::new(0));
    let c_delivered = delivered.clone();
    let measured = run(
        args,
        stop,
        move || {
            let mut m = Mmsg::new();
            for i in 0..BATCH {
                m.bufs[i][..DATAGRAM.len()].copy_from_slice(&DATAGRAM);
                m.msgs[i].msg_len = DATAGRAM.len() as u32;
                m.msgs[i].msg_hdr.msg_name = std::ptr::null_mut();
                m.msgs[i].msg_hdr.msg_namelen = 0;
            }
            let mut sent = 0u64;
            while !s_stop.load(Ordering::Relaxed) {
                sent += m.echo(&server, BATCH) as u64;
            }
            sent
        },
        vec![Box::new(move || {
            // The receiver never sleeps, so no wake-up is part of the sender's cost.
            let mut m = Mmsg::new();
            while !c_stop.load(Ordering::Relaxed) {
                c_delivered.fetch_add(m.recv_queued(&sink) as u64, Ordering::Relaxed);
            }
        })],
    )?;
    // A datagram the receiver's queue had no room for is dropped part-way, which is cheaper than
    // delivering it: with drops the figure is a lower bound.
    println!(
        "udp-floor: {} of {} sent datagrams reached the receiving socket",
        delivered.load(Ordering::Relaxed),
        measured.count
    );
    Ok(measured)
}
