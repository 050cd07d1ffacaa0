//! The callers' fast path end to end, as processes over real sockets: lars-wire's `FastClient`
//! against a real agent (with real `lars-dns` and `lars-reporter` on the embedded store), next
//! to classic callers on the same agent.

mod common;

use common::{System, eventually, served};
use lars_wire::messages::{HostResults, ReportBatchRequest, RouteViewRequest};
use lars_wire::{ClientConfig, ClientError, FastClient, FastConfig, HostAddr, Message, RetCode};
use std::collections::HashMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn host(last: u8) -> HostAddr {
    HostAddr::new(Ipv4Addr::new(10, 8, 0, last), 7000 + u16::from(last))
}

fn fast_client(system: &System, timeout: Duration, retry: Duration) -> FastClient {
    let base_port: u16 = system.agent().field("base_port").parse().unwrap();
    FastClient::new(FastConfig {
        client: ClientConfig {
            base_port,
            timeout,
            ..ClientConfig::default()
        },
        retry_interval: retry,
        ..FastConfig::default()
    })
    .unwrap()
}

/// Waits until `fast` serves `(modid, cmdid)` from a view.
fn until_fast(fast: &FastClient, modid: i32, cmdid: i32) {
    eventually("the route is served fast", Duration::from_secs(5), || {
        let _ = fast.get_host(modid, cmdid);
        fast.is_fast(modid, cmdid).then_some(())
    });
}

/// A raw socket asking the agent for a route's view: what the agent holds, in its own order.
struct ViewProbe {
    socket: UdpSocket,
    base_port: u16,
}

impl ViewProbe {
    fn new(system: &System) -> ViewProbe {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let base_port = system.agent().field("base_port").parse().unwrap();
        ViewProbe { socket, base_port }
    }

    fn port(&self, modid: i32, cmdid: i32) -> u16 {
        let shards = std::num::NonZeroU16::new(3).unwrap();
        self.base_port + lars_wire::client::shard_of(modid, cmdid, shards)
    }

    /// Whether `h` is overloaded on the agent's route `(modid, cmdid)`.
    fn overloaded(&self, modid: i32, cmdid: i32, h: HostAddr) -> bool {
        let request = Message::RouteViewRequest(RouteViewRequest {
            modid,
            cmdid,
            version: 0,
        });
        let mut buf = vec![0u8; 65536];
        let len = lars_wire::datagram::encode_datagram(&request, &mut buf).unwrap();
        self.socket
            .send_to(&buf[..len], ("127.0.0.1", self.port(modid, cmdid)))
            .unwrap();
        let len = self.socket.recv(&mut buf).unwrap();
        let Ok(Message::RouteViewResponse(view)) =
            lars_wire::datagram::decode_datagram(&buf[..len])
        else {
            panic!("not a view");
        };
        view.host
            .iter()
            .find(|v| v.ip == h.wire_ip() && v.port == h.wire_port())
            .expect("host in the view")
            .overload
    }
}

/// Waits until `fast` has sent `results` results and the agent answered the batch that carried
/// the last of them.
fn flushed(fast: &FastClient, results: u64, replies_before: u64) {
    eventually(
        "the batch is sent and answered",
        Duration::from_secs(5),
        || {
            let stats = fast.stats();
            let replies = stats.views_received.load(Ordering::Relaxed)
                + stats.acks_received.load(Ordering::Relaxed);
            (stats.results_sent.load(Ordering::Relaxed) >= results && replies > replies_before)
                .then_some(())
        },
    );
}

fn replies(fast: &FastClient) -> u64 {
    let stats = fast.stats();
    stats.views_received.load(Ordering::Relaxed) + stats.acks_received.load(Ordering::Relaxed)
}

fn fast_says_overloaded(fast: &FastClient, modid: i32, cmdid: i32, h: HostAddr) -> bool {
    fast.host_states(modid, cmdid)
        .expect("a view")
        .iter()
        .any(|&(x, overloaded)| x == h && overloaded)
}

#[test]
fn a_fast_and_a_classic_caller_see_a_host_overloaded_and_recovered_at_the_same_result_counts() {
    let system = System::start();
    for key in [(11, 1), (12, 1)] {
        for i in 1..=3 {
            system.add_host(key.0, key.1, host(i));
        }
    }
    let mut classic = system.client();
    served(&mut classic, 11, 1);
    let fast = fast_client(&system, Duration::from_millis(500), Duration::from_secs(5));
    eventually("the agent has the route", Duration::from_secs(5), || {
        fast.reg_init(12, 1).ok()
    });
    until_fast(&fast, 12, 1);
    let probe = ViewProbe::new(&system);
    let sick = host(2);

    // Classic: one report at a time, the agent's state read after each.
    let mut classic_overloaded_at = None;
    for n in 1..=100 {
        classic.report(11, 1, sick, 1).unwrap();
        if probe.overloaded(11, 1, sick) {
            classic_overloaded_at = Some(n);
            break;
        }
    }
    // Fast: one result per flush, the caller's own view read after each answer.
    let mut fast_overloaded_at = None;
    for n in 1..=100u64 {
        let before = replies(&fast);
        fast.report(12, 1, sick, 1).unwrap();
        flushed(&fast, n, before);
        if fast_says_overloaded(&fast, 12, 1, sick) {
            fast_overloaded_at = Some(n);
            break;
        }
    }
    assert_eq!(classic_overloaded_at, Some(15), "contin_err_limit");
    assert_eq!(fast_overloaded_at, Some(15));

    let mut classic_recovered_at = None;
    for n in 1..=100 {
        classic.report(11, 1, sick, 0).unwrap();
        if !probe.overloaded(11, 1, sick) {
            classic_recovered_at = Some(n);
            break;
        }
    }
    let sent = fast.stats().results_sent.load(Ordering::Relaxed);
    let mut fast_recovered_at = None;
    for n in 1..=100u64 {
        let before = replies(&fast);
        fast.report(12, 1, sick, 0).unwrap();
        flushed(&fast, sent + n, before);
        if !fast_says_overloaded(&fast, 12, 1, sick) {
            fast_recovered_at = Some(n);
            break;
        }
    }
    // 6 / (6 + init_err_cnt 5) > succ_rate 0.5.
    assert_eq!(classic_recovered_at, Some(6));
    assert_eq!(fast_recovered_at, Some(6));
    assert!(system.stat_sum("lars_agent_fast_batches_total") >= 21);
    assert_eq!(system.stat_sum("lars_agent_fast_batch_results_total"), 21);
}

#[test]
fn a_route_added_with_lars_route_add_reaches_a_fast_caller_within_2_s() {
    let system = System::start();
    system.add_host(13, 1, host(1));
    let fast = fast_client(&system, Duration::from_millis(500), Duration::from_secs(5));
    eventually("the agent has the route", Duration::from_secs(5), || {
        fast.reg_init(13, 1).ok()
    });
    until_fast(&fast, 13, 1);
    assert_eq!(fast.get_route(13, 1).unwrap(), vec![host(1)]);
    system.add_host(13, 1, host(2));
    eventually(
        "the added host reaches the view",
        Duration::from_secs(2),
        || {
            let mut hosts = fast.get_route(13, 1).unwrap();
            hosts.sort();
            (hosts == vec![host(1), host(2)]).then_some(())
        },
    );
    assert!(fast.is_fast(13, 1));
    // And both are picked in turn from the view.
    let picked: Vec<HostAddr> = (0..4).map(|_| fast.get_host(13, 1).unwrap()).collect();
    assert_eq!(picked.iter().filter(|&&h| h == host(1)).count(), 2);
}

#[test]
fn a_fast_caller_falls_back_to_classic_against_an_agent_with_the_fast_path_off_and_back() {
    let mut system = System::start_with(common::DEFAULT_IO, "fast_path = false");
    system.add_host(14, 1, host(1));
    let base_port: u16 = system.agent().field("base_port").parse().unwrap();
    let fast = fast_client(&system, Duration::from_millis(300), Duration::from_secs(1));
    eventually("the agent has the route", Duration::from_secs(5), || {
        fast.reg_init(14, 1).ok()
    });
    // Served classic all along; the unanswered view request makes it fall back.
    eventually("the client falls back", Duration::from_secs(5), || {
        assert_eq!(fast.get_host(14, 1).unwrap(), host(1));
        fast.report(14, 1, host(1), 0).unwrap();
        (fast.stats().fallbacks.load(Ordering::Relaxed) >= 1).then_some(())
    });
    assert!(!fast.is_fast(14, 1));
    assert_eq!(fast.get_host(14, 1).unwrap(), host(1));
    assert!(system.stat_sum("lars_agent_fast_refused_total") >= 1);
    assert!(
        system.stat_sum("lars_agent_report_total") >= 1,
        "reports went classic"
    );

    // The same agent ports with the fast path on again: the client returns to it.
    system.agent.take().unwrap().kill();
    // The kernel tears an io_uring instance down after its process is gone, so its sockets may
    // stay bound a moment longer.
    eventually(
        "the agent's ports are free",
        Duration::from_secs(10),
        || {
            (0..3)
                .all(|shard| UdpSocket::bind(("127.0.0.1", base_port + shard)).is_ok())
                .then_some(())
        },
    );
    system.start_agent_at(&[], base_port, "");
    eventually("the client is fast again", Duration::from_secs(10), || {
        let _ = fast.get_host(14, 1);
        fast.is_fast(14, 1).then_some(())
    });
    assert_eq!(fast.get_host(14, 1).unwrap(), host(1));
    fast.report(14, 1, host(1), 0).unwrap();
    eventually("a batch is applied", Duration::from_secs(5), || {
        (system.stat_sum("lars_agent_fast_batches_total") >= 1).then_some(())
    });
}

fn malformed_fast_path_datagrams() -> Vec<(&'static str, Vec<u8>)> {
    let frame = |msgid: i32, body: &[u8]| {
        [
            &msgid.to_le_bytes()[..],
            &(body.len() as i32).to_le_bytes()[..],
            body,
        ]
        .concat()
    };
    let batch = |hosts: Vec<HostResults>| {
        let msg = Message::ReportBatchRequest(ReportBatchRequest {
            modid: 15,
            cmdid: 1,
            version: 0,
            hosts,
        });
        let mut buf = vec![0u8; 1024];
        let len = lars_wire::datagram::encode_datagram(&msg, &mut buf).unwrap();
        buf.truncate(len);
        buf
    };
    vec![
        ("view: undecodable body", frame(9, &[0x08, 0xff])),
        ("batch: undecodable body", frame(11, &[0x22, 0x05, 0x08])),
        (
            "batch: truncated packed run",
            frame(11, &[0x22, 0x04, 0x1a, 0x02, 0x02, 0x80]),
        ),
        (
            "batch: a run of zero results",
            batch(vec![HostResults {
                ip: host(1).wire_ip(),
                port: host(1).wire_port(),
                runs: vec![0],
            }]),
        ),
        (
            "batch: a port beyond 65535",
            batch(vec![HostResults {
                ip: 1,
                port: 70_000,
                runs: vec![2],
            }]),
        ),
    ]
}

#[test]
fn malformed_fast_path_datagrams_are_dropped_and_counted_while_a_fast_caller_is_served() {
    const DATAGRAMS: usize = 100_000;
    const BURST: usize = 500;
    let system = System::start();
    system.add_host(15, 1, host(1));
    let fast = Arc::new(fast_client(
        &system,
        Duration::from_millis(500),
        Duration::from_secs(1),
    ));
    eventually("the agent has the route", Duration::from_secs(5), || {
        fast.reg_init(15, 1).ok()
    });
    until_fast(&fast, 15, 1);
    let done = Arc::new(AtomicBool::new(false));
    let caller = {
        let (fast, done) = (fast.clone(), done.clone());
        std::thread::spawn(move || {
            let mut calls = 0u64;
            while !done.load(Ordering::Relaxed) {
                match fast.get_host(15, 1) {
                    Ok(got) => assert_eq!(got, host(1), "a wrong answer during the flood"),
                    // Served classic for a while if the flood made a reply wait too long.
                    Err(ClientError::Timeout { .. }) => continue,
                    Err(e) => panic!("during the flood: {e}"),
                }
                fast.report(15, 1, host(1), 0).unwrap();
                calls += 1;
                if calls.is_multiple_of(1024) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            calls
        })
    };
    let base_port: u16 = system.agent().field("base_port").parse().unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let kinds = malformed_fast_path_datagrams();
    let mut sent = 0;
    while sent < DATAGRAMS {
        for _ in 0..BURST.min(DATAGRAMS - sent) {
            let (_, bytes) = &kinds[sent % kinds.len()];
            let port = base_port + (sent % 3) as u16;
            sender.send_to(bytes, ("127.0.0.1", port)).unwrap();
            sent += 1;
        }
        // Paced on the agent's own count, so the kernel never drops one for a full buffer.
        eventually(
            "the agent counts the burst",
            Duration::from_secs(10),
            || (system.stat_sum("lars_agent_fast_malformed_total") as usize >= sent).then_some(()),
        );
    }
    done.store(true, Ordering::Relaxed);
    let calls = caller.join().expect("the caller saw only correct answers");
    assert!(calls > 0);
    assert_eq!(
        system.stat_sum("lars_agent_fast_malformed_total") as usize,
        DATAGRAMS
    );
    let stats = system.agent_stats();
    for reason in ["bad_body", "bad_host"] {
        assert!(stats.sum("lars_agent_drops_total", &[("reason", reason)]) > 0.0);
    }
    // A reply lost to the flood may have sent the caller classic for a while; it comes back.
    until_fast(&fast, 15, 1);
    assert!(system.stat_sum("lars_agent_fast_batch_results_total") > 0);
}

#[test]
fn many_threads_sharing_one_client_keep_the_rotation_and_probe_rules_per_route() {
    const THREADS: usize = 8;
    const PICKS: usize = 11 * 300;
    let system = System::start();
    for i in 1..=3 {
        system.add_host(16, 1, host(i));
    }
    for i in 4..=7 {
        system.add_host(17, 1, host(i));
    }
    let fast = Arc::new(fast_client(
        &system,
        Duration::from_millis(500),
        Duration::from_secs(5),
    ));
    for key in [(16, 1), (17, 1)] {
        eventually("the agent has the route", Duration::from_secs(5), || {
            fast.reg_init(key.0, key.1).ok()
        });
        eventually("every host is in the view", Duration::from_secs(5), || {
            let _ = fast.get_host(key.0, key.1);
            let want = if key.0 == 16 { 3 } else { 4 };
            (fast.host_states(key.0, key.1).map(|h| h.len()) == Some(want)).then_some(())
        });
    }
    // Overload host 1 of route 16 through the fast path itself.
    let before = replies(&fast);
    for _ in 0..15 {
        fast.report(16, 1, host(1), 1).unwrap();
    }
    flushed(&fast, 15, before);
    eventually(
        "host 1 is overloaded in the view",
        Duration::from_secs(5),
        || fast_says_overloaded(&fast, 16, 1, host(1)).then_some(()),
    );

    let run = |modid: i32| {
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let fast = fast.clone();
                std::thread::spawn(move || {
                    let mut counts: HashMap<HostAddr, usize> = HashMap::new();
                    for _ in 0..PICKS {
                        *counts.entry(fast.get_host(modid, 1).unwrap()).or_default() += 1;
                    }
                    counts
                })
            })
            .collect();
        let mut total: HashMap<HostAddr, usize> = HashMap::new();
        for thread in threads {
            for (h, n) in thread.join().unwrap() {
                *total.entry(h).or_default() += n;
            }
        }
        total
    };
    let all = THREADS * PICKS;
    // Route 17: four idle hosts in turn, whatever thread picks.
    let spread = run(17);
    for i in 4..=7 {
        assert_eq!(spread[&host(i)], all / 4, "{spread:?}");
    }
    // Route 16: one pick in every probe_num + 1 = 11 probes the overloaded host; the idle two
    // share the rest in turn.
    let probed = run(16);
    assert_eq!(probed[&host(1)], all / 11, "{probed:?}");
    assert_eq!(probed[&host(2)], all * 10 / 11 / 2, "{probed:?}");
    assert_eq!(probed[&host(3)], all * 10 / 11 / 2, "{probed:?}");
    assert_eq!(
        fast.get_host(99, 1).unwrap_err().to_string(),
        ClientError::Refused(RetCode::NoExist).to_string()
    );
}
