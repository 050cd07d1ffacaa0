//! Flow control on one connection, over real TCP: a burst of requests far larger than the write
//! queue is answered in full (the agent is slowed down, never closed, even when a push comes in
//! the middle), while an agent that stops reading is no longer read from, owes no more than its
//! subscriptions however many changes come, is closed once it has read nothing for the
//! stalled-reader timeout, and never holds up the others.

mod common;

use common::{TestAgent, TestDns, eventually, hosts, requests};
use lars_service::both_backends;
use lars_store::Store;
use lars_store::testing::TestDb;
use lars_wire::{HostAddr, RouteKey};
use std::net::Ipv4Addr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

fn host(last: u8, port: u16) -> HostAddr {
    HostAddr::new(Ipv4Addr::new(192, 168, 8, last), port)
}

/// An agent that reconnects re-asks every route it holds at once. With the default write queue
/// (4,096 frames) a burst of 20,000 requests must be answered in full, in order, on the same
/// connection: the service stops reading the agent's requests while its answers wait for room,
/// and does not take the full queue for an agent that stopped reading.
async fn a_burst_of_requests_larger_than_the_write_queue_is_answered_in_full(db: TestDb) {
    // What an agent holding that many routes re-asks after reconnecting.
    const BURST: i32 = 20_000;
    let store = Store::open(&db.url()).await.unwrap();
    for last in 1..=20 {
        store
            .add_host(RouteKey::new(60, 7), host(last, 8000))
            .await
            .unwrap();
    }
    let dns = TestDns::start(db.url(), |_| {}).await;
    let agent = TestAgent::connect(dns.addr).await;
    let (mut responses, mut writer) = agent.split();
    let burst = requests((0..BURST).map(|cmdid| (60, cmdid)));
    let asking = tokio::spawn(async move {
        writer.write_all(&burst).await.expect("write the burst");
        writer
    });
    for cmdid in 0..BURST {
        let response = responses
            .next(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("answer {cmdid} of {BURST} within 10 s"));
        assert_eq!((response.modid, response.cmdid), (60, cmdid));
        let expected = if cmdid == 7 { 20 } else { 0 };
        assert_eq!(response.host.len(), expected, "hosts of (60, {cmdid})");
        // A slow reader: the service's writer gets ahead of it, and its queue fills.
        tokio::task::yield_now().await;
    }
    let writer = asking.await.unwrap();
    assert_eq!(dns.get(|s| &s.slow_closed), 0);
    assert_eq!(dns.get(|s| &s.requests), BURST as u64);
    assert_eq!(dns.get(|s| &s.subscriptions), BURST as u64);

    // Still open, still subscribed: a change to one of the keys is pushed on this connection.
    store
        .add_host(RouteKey::new(60, 19_999), host(1, 9000))
        .await
        .unwrap();
    let push = responses
        .next(Duration::from_secs(5))
        .await
        .expect("push on the same connection");
    assert_eq!((push.modid, push.cmdid), (60, 19_999));
    assert_eq!(hosts(&push), vec![(Ipv4Addr::new(192, 168, 8, 1), 9000)]);
    drop(writer);
    dns.stop().await;
}
both_backends!(a_burst_of_requests_larger_than_the_write_queue_is_answered_in_full);

/// A route change that comes while an agent's answers fill their half of its write queue is
/// pushed into the other half: an agent in the middle of a burst is not taken for one that
/// stopped reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_during_a_burst_finds_room_and_the_agent_stays_connected() {
    // 10,000 answers of 100 hosts: 13 MB, far more than the socket buffers of an agent that does
    // not read.
    const ASKS: usize = 10_000;
    let db = TestDb::sqlite();
    let store = Store::open(&db.url()).await.unwrap();
    for last in 1..=100 {
        store
            .add_host(RouteKey::new(60, 7), host(last, 8000))
            .await
            .unwrap();
    }
    let dns = TestDns::start(db.url(), |_| {}).await;
    let (mut responses, mut writer) = TestAgent::connect(dns.addr).await.split();
    // (61, 1) first, so the connection is subscribed to it before the burst.
    let burst = requests(std::iter::once((61, 1)).chain(std::iter::repeat_n((60, 7), ASKS)));
    let asking = tokio::spawn(async move {
        writer.write_all(&burst).await.expect("write the burst");
        writer
    });
    let first = responses
        .next(Duration::from_secs(5))
        .await
        .expect("the first answer");
    assert_eq!((first.modid, first.cmdid), (61, 1));
    assert!(first.host.is_empty());

    // The agent reads nothing for now: its socket buffers fill, then the answers' half of the
    // queue, and the service stops reading its requests.
    let stats = dns.stats.clone();
    eventually(
        "the connection is no longer read from",
        Duration::from_secs(20),
        || {
            let paused = lars_dns::DnsStats::get(&stats.paused) == 1;
            async move { paused }
        },
    )
    .await;
    store
        .add_host(RouteKey::new(61, 1), host(1, 9000))
        .await
        .unwrap();
    let stats = dns.stats.clone();
    eventually(
        "the change is pushed or owed",
        Duration::from_secs(5),
        || {
            let done = lars_dns::DnsStats::get(&stats.pushes)
                + lars_dns::DnsStats::get(&stats.owed_keys)
                > 0;
            async move { done }
        },
    )
    .await;
    assert_eq!(
        dns.get(|s| &s.slow_closed),
        0,
        "a push during a burst closed the agent"
    );

    // Now it reads: every answer arrives, and the push among them.
    let mut answers = 0;
    let mut pushed = false;
    while answers < ASKS || !pushed {
        let response = responses
            .next(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{answers} of {ASKS} answers, pushed: {pushed}"));
        match (response.modid, response.cmdid) {
            (60, 7) => {
                assert_eq!(response.host.len(), 100);
                answers += 1;
            }
            (61, 1) => {
                assert!(!pushed, "one push");
                assert_eq!(
                    hosts(&response),
                    vec![(Ipv4Addr::new(192, 168, 8, 1), 9000)]
                );
                pushed = true;
            }
            other => panic!("unexpected response for {other:?}"),
        }
    }
    drop(asking.await.unwrap());
    assert_eq!(dns.get(|s| &s.requests), ASKS as u64 + 1);
    assert_eq!(dns.get(|s| &s.slow_closed), 0);
    dns.stop().await;
}

/// An agent that asks over and over without reading a byte. Once its socket buffers and its
/// answers' half of the write queue are full it is no longer read from, while every other
/// connection is served; the changes to its key leave it owing that one key (not one frame per
/// change), and once it has read nothing for the stalled-reader timeout the service closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_stops_reading_is_closed_and_others_still_get_pushes() {
    const FLOOD: usize = 1_000_000;
    let db = TestDb::sqlite();
    let store = Store::open(&db.url()).await.unwrap();
    // Big answers, so the stalled agent's socket buffers fill long before its flood is read.
    let mut route_hosts = 50;
    for last in 1..=route_hosts {
        store
            .add_host(RouteKey::new(40, 1), host(last, 80))
            .await
            .unwrap();
    }
    let dns = TestDns::start(db.url(), |c| {
        c.dns.write_queue_frames = 4;
        c.dns.stalled_reader_timeout_ms = 1_000;
    })
    .await;
    let mut reader = TestAgent::connect(dns.addr).await;
    assert_eq!(reader.route(40, 1).await.host.len(), 50);
    let mut stalled = TestAgent::connect(dns.addr).await;
    let flood = requests(std::iter::repeat_n((40, 1), FLOOD));
    let flooding = tokio::spawn(async move {
        // Fails once the service closes the connection.
        stalled.send_raw(&flood).await;
        stalled
    });
    let stats = dns.stats.clone();
    eventually(
        "the stalled agent is no longer read from",
        Duration::from_secs(20),
        || {
            let paused = lars_dns::DnsStats::get(&stats.paused) == 1;
            async move { paused }
        },
    )
    .await;
    // The others are served meanwhile, old connections and new.
    assert!(reader.route(40, 2).await.host.is_empty());
    let mut newcomer = TestAgent::connect(dns.addr).await;
    assert_eq!(newcomer.route(40, 1).await.host.len(), 50);

    // Every change pushes (40, 1) to all three; the stalled agent's stay in its queue, then the
    // key is owed, once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while dns.get(|s| &s.slow_closed) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} changes and the stalled agent is still open",
            route_hosts - 50
        );
        assert!(
            dns.get(|s| &s.owed_keys) <= 1,
            "one subscription, one owed key"
        );
        route_hosts += 1;
        store
            .add_host(RouteKey::new(40, 1), host(route_hosts, 80))
            .await
            .unwrap();
        for agent in [&mut reader, &mut newcomer] {
            let push = agent
                .next(Duration::from_secs(3))
                .await
                .expect("push to a reading agent");
            assert_eq!(push.host.len(), usize::from(route_hosts));
        }
    }
    eventually(
        "the stalled agent's connection is closed",
        Duration::from_secs(10),
        || {
            let closed = flooding.is_finished();
            async move { closed }
        },
    )
    .await;
    assert_eq!(dns.get(|s| &s.slow_closed), 1);
    assert_eq!(dns.get(|s| &s.paused), 0);
    assert_eq!(
        dns.get(|s| &s.owed_keys),
        0,
        "the closed agent's debt is gone"
    );
    assert!(
        dns.get(|s| &s.requests) < FLOOD as u64,
        "the stalled agent's requests stopped being read long before its flood ended"
    );

    store
        .add_host(RouteKey::new(40, 1), host(99, 99))
        .await
        .unwrap();
    let push = reader
        .next(Duration::from_secs(3))
        .await
        .expect("push to the reading agent");
    assert!(hosts(&push).contains(&(Ipv4Addr::new(192, 168, 8, 99), 99)));
    dns.stop().await;
}
