//! A caller asking for ever new keys cannot grow the agent: 1,000,000 distinct unknown keys sent
//! to an agent with `max_routes = 10000` leave it holding at most 10,000 routes, its memory flat
//! after warm-up, the refusals counted, and a known route answering correctly throughout. And
//! routes nobody asks for leave the table (negative-cache entries after `update_timeout`).

mod common;

use common::{DEFAULT_IO, Service, System, eventually, served};
use lars_wire::client::{Client, ClientError, shard_of};
use lars_wire::datagram::{decode_datagram, encode_datagram};
use lars_wire::messages::GetHostRequest;
use lars_wire::{HostAddr, Message, RetCode};
use std::net::{Ipv4Addr, UdpSocket};
use std::num::NonZeroU16;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const KEYS: u64 = 1_000_000;
const MAX_ROUTES: u64 = 10_000;
/// Requests in flight at once: their replies fit in the sender's default receive buffer.
const WINDOW: u64 = 128;
/// RSS may grow this much after warm-up (allocator slack, the metrics endpoint's buffers); a
/// route per key held would be ~350 MB.
const RSS_SLACK_KB: u64 = 8 * 1024;

fn rss_kb(agent: &Service) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// A client of the agent whose requests wait long enough for a loaded debug agent.
fn patient_client(system: &System) -> Client {
    system.client_waiting(Duration::from_secs(2))
}

/// A caller asking for `(1, 1)` until `done`: every answer must be `host`; a request may time
/// out when the flood fills a shard socket's kernel buffer. Returns the answers.
fn caller(system: &System, host: HostAddr, done: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let mut client = patient_client(system);
    std::thread::spawn(move || {
        let mut answered = 0;
        while !done.load(Ordering::Relaxed) {
            match client.get_host(1, 1) {
                Ok(got) => {
                    assert_eq!(got, host, "a wrong answer during the flood");
                    answered += 1;
                }
                Err(ClientError::Timeout { .. }) => {}
                Err(e) => panic!("during the flood: {e}"),
            }
        }
        answered
    })
}

/// Sends `get_host` for `KEYS` distinct unknown keys, `WINDOW` at a time, each window's replies
/// read before the next (a lost one is waited for 200 ms, then given up); every reply must be
/// NOEXIST. `sent` counts the keys sent so far. Returns the replies read.
fn flood(base_port: u16, sent: Arc<AtomicU64>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let shards = NonZeroU16::new(3).unwrap();
        let (mut buf, mut reply) = ([0u8; 64], [0u8; 128]);
        let mut replies = 0;
        let mut next = 0u64;
        while next < KEYS {
            let window = WINDOW.min(KEYS - next);
            for i in next..next + window {
                let (modid, cmdid) = (1000 + (i / 1000) as i32, (i % 1000) as i32);
                let request = Message::GetHostRequest(GetHostRequest {
                    seq: i as u32,
                    modid,
                    cmdid,
                });
                let len = encode_datagram(&request, &mut buf).unwrap();
                let port = base_port + shard_of(modid, cmdid, shards);
                socket.send_to(&buf[..len], ("127.0.0.1", port)).unwrap();
            }
            next += window;
            sent.store(next, Ordering::Relaxed);
            for _ in 0..window {
                let Ok(len) = socket.recv(&mut reply) else {
                    break;
                };
                let Message::GetHostResponse(r) = decode_datagram(&reply[..len]).unwrap() else {
                    panic!("not a GetHostResponse");
                };
                assert_eq!(r.retcode, RetCode::NoExist.as_i32(), "{r:?}");
                replies += 1;
            }
        }
        replies
    })
}

#[test]
fn a_million_unknown_keys_hold_at_most_max_routes_and_the_agent_stays_flat() {
    // update_timeout well beyond the test: no negative entry is evicted while it runs, so every
    // key beyond the cap is a refusal.
    let mut system = System::start_with(
        DEFAULT_IO,
        "max_routes = 10000\nroute_idle_ttl_secs = 600\n[loadbalance]\nupdate_timeout = 120",
    );
    let host = HostAddr::new(Ipv4Addr::new(10, 1, 1, 1), 7001);
    system.add_host(1, 1, host);
    served(&mut system.client(), 1, 1);

    let done = Arc::new(AtomicBool::new(false));
    let caller = caller(&system, host, done.clone());
    let base_port: u16 = system.agent().field("base_port").parse().unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let flood = flood(base_port, sent.clone());

    let (mut warm_rss, mut max_rss, mut samples) = (None, 0, 0);
    while !flood.is_finished() {
        let routes = system.stat_sum("lars_agent_routes");
        assert!(routes <= MAX_ROUTES, "{routes} routes held");
        let rss = rss_kb(system.agent());
        // Warm-up: the tables are full (a shard's share is 3333).
        match warm_rss {
            None if routes >= MAX_ROUTES - 3 && sent.load(Ordering::Relaxed) > KEYS / 10 => {
                warm_rss = Some(rss)
            }
            Some(_) => max_rss = max_rss.max(rss),
            None => {}
        }
        samples += 1;
        // A sampling period, not a wait for an event: scraping back to back would take a core
        // from the agent under test.
        std::thread::sleep(Duration::from_millis(50));
    }
    let replies = flood.join().expect("every reply was NOEXIST");
    done.store(true, Ordering::Relaxed);
    let answered = caller.join().expect("the caller saw only correct answers");

    let warm_rss = warm_rss.expect("the tables filled");
    let stats = system.agent_stats();
    let routes = stats.sum("lars_agent_routes", &[]) as u64;
    let refused = stats.sum("lars_agent_routes_refused_total", &[]) as u64;
    assert!((MAX_ROUTES - 3..=MAX_ROUTES).contains(&routes), "{routes}");
    // Every key the agent answered was either held (at most the cap, the known route among
    // them) or refused.
    assert!(
        refused + MAX_ROUTES >= replies,
        "{refused} refused, {replies} answered"
    );
    assert!(replies > KEYS * 9 / 10, "only {replies} of {KEYS} answered");
    assert!(
        max_rss <= warm_rss + RSS_SLACK_KB,
        "RSS grew from {warm_rss} kB after warm-up to {max_rss} kB ({samples} samples)"
    );
    assert!(
        answered > 0,
        "the known route never answered during the flood"
    );
    assert_eq!(patient_client(&system).get_host(1, 1).unwrap(), host);
    system.agent.take().unwrap().kill();
}

fn dns_subscriptions(system: &System) -> u64 {
    let dns = system.dns.as_ref().expect("dns running");
    dns.scrape()
        .get("lars_dns_subscriptions", &[])
        .unwrap_or(0.0) as u64
}

#[test]
fn routes_nobody_asks_for_are_evicted_unsubscribed_and_their_room_serves_new_keys() {
    let mut system = System::start_with(
        DEFAULT_IO,
        "max_routes = 30\nroute_idle_ttl_secs = 2\n[loadbalance]\nupdate_timeout = 1",
    );
    let host = HostAddr::new(Ipv4Addr::new(10, 1, 1, 2), 7002);
    system.add_host(1, 1, host);
    let mut client = system.client();
    served(&mut client, 1, 1);
    // Fill the tables with keys dns has no hosts for (10 a shard).
    for cmdid in 0..60 {
        let _ = client.get_host(2, cmdid);
    }
    eventually("the tables are full", Duration::from_secs(5), || {
        (system.stat_sum("lars_agent_routes") == 30).then_some(())
    });
    assert!(system.stat_sum("lars_agent_routes_refused_total") > 0);
    assert_eq!(
        dns_subscriptions(&system),
        30,
        "refused keys are not asked of dns"
    );
    // Only (1, 1) is asked for from now on: the negative entries go after update_timeout.
    eventually(
        "idle negative entries are evicted",
        Duration::from_secs(10),
        || {
            assert_eq!(client.get_host(1, 1).unwrap(), host);
            (system.stat_sum("lars_agent_routes") == 1).then_some(())
        },
    );
    assert!(system.stat_sum("lars_agent_routes_evicted_total") >= 29);
    // The uplink forgot the evicted keys: a new dns connection is asked for the held one only.
    system.dns.take().unwrap().kill();
    system.start_dns();
    eventually(
        "the agent re-subscribes what it holds",
        Duration::from_secs(10),
        || (dns_subscriptions(&system) == 1).then_some(()),
    );
    assert_eq!(client.get_host(1, 1).unwrap(), host);
    // Room again: a new key is held (answered NOEXIST, asked of dns), not refused.
    let refused = system.stat_sum("lars_agent_routes_refused_total");
    let _ = client.get_host(3, 3);
    eventually("the new key is held", Duration::from_secs(5), || {
        (system.stat_sum("lars_agent_routes") == 2).then_some(())
    });
    assert_eq!(system.stat_sum("lars_agent_routes_refused_total"), refused);
    // Asked on the new connection after the re-asks: once dns holds it, it holds every re-ask.
    eventually(
        "dns holds the held keys only",
        Duration::from_secs(5),
        || (dns_subscriptions(&system) == 2).then_some(()),
    );
}
