//! The dns service over real TCP connections, on both store backends (MySQL on the real
//! MariaDB, and the embedded SQLite file): answers, pushes, subscriptions, bad peers.

mod common;

use common::{TestAgent, TestDns, eventually, hosts};
use lars_service::both_backends;
use lars_store::Store;
use lars_store::testing::TestDb;
use lars_wire::{HostAddr, RouteKey};
use std::net::Ipv4Addr;
use std::time::Duration;

fn host(last: u8, port: u16) -> HostAddr {
    HostAddr::new(Ipv4Addr::new(192, 168, 7, last), port)
}

async fn unknown_key_answers_an_empty_host_list(db: TestDb) {
    let dns = TestDns::start(db.url(), |_| {}).await;
    let mut agent = TestAgent::connect(dns.addr).await;
    let response = agent.route(77, 88).await;
    assert!(response.host.is_empty());
    dns.stop().await;
}
both_backends!(unknown_key_answers_an_empty_host_list);

async fn known_key_answers_its_hosts(db: TestDb) {
    let store = Store::open(&db.url()).await.unwrap();
    store
        .add_host(RouteKey::new(1, 2), host(200, 9000))
        .await
        .unwrap();
    let dns = TestDns::start(db.url(), |_| {}).await;
    let mut agent = TestAgent::connect(dns.addr).await;
    let response = agent.route(1, 2).await;
    assert_eq!(
        hosts(&response),
        vec![(Ipv4Addr::new(192, 168, 7, 200), 9000)]
    );
    dns.stop().await;
}
both_backends!(known_key_answers_its_hosts);

async fn a_change_is_pushed_to_subscribers_of_that_key_only(db: TestDb) {
    let store = Store::open(&db.url()).await.unwrap();
    // The default one-second version poll, as in production.
    let dns = TestDns::start(db.url(), |c| c.dns.version_poll_ms = 1000).await;
    let mut agent = TestAgent::connect(dns.addr).await;
    assert!(agent.route(10, 1).await.host.is_empty());
    assert!(agent.route(10, 2).await.host.is_empty());

    store
        .add_host(RouteKey::new(10, 1), host(1, 80))
        .await
        .unwrap();
    let push = agent
        .next(Duration::from_secs(2))
        .await
        .expect("push within 2 s");
    assert_eq!((push.modid, push.cmdid), (10, 1));
    assert_eq!(hosts(&push), vec![(Ipv4Addr::new(192, 168, 7, 1), 80)]);

    // Removing the whole route pushes an empty host list. Pushes travel in order on the
    // connection, so had (10, 2) been pushed it would arrive before this one.
    store.remove_route(RouteKey::new(10, 1)).await.unwrap();
    let push = agent
        .next(Duration::from_secs(2))
        .await
        .expect("push within 2 s");
    assert_eq!((push.modid, push.cmdid), (10, 1));
    assert!(push.host.is_empty());
    dns.stop().await;
}
both_backends!(a_change_is_pushed_to_subscribers_of_that_key_only);

async fn a_closed_connection_drops_its_subscriptions(db: TestDb) {
    let store = Store::open(&db.url()).await.unwrap();
    let dns = TestDns::start(db.url(), |_| {}).await;
    let mut agent = TestAgent::connect(dns.addr).await;
    agent.route(20, 1).await;
    agent.route(20, 2).await;
    agent.route(20, 1).await;
    assert_eq!(dns.get(|s| &s.subscriptions), 2);
    drop(agent);
    let stats = dns.stats.clone();
    eventually("subscriptions dropped", Duration::from_secs(5), || {
        let gone = lars_dns::DnsStats::get(&stats.subscriptions) == 0;
        async move { gone }
    })
    .await;

    let reloads = dns.get(|s| &s.reloads);
    store
        .add_host(RouteKey::new(20, 1), host(3, 80))
        .await
        .unwrap();
    let stats = dns.stats.clone();
    eventually("the change is loaded", Duration::from_secs(5), || {
        let loaded = lars_dns::DnsStats::get(&stats.reloads) > reloads;
        async move { loaded }
    })
    .await;
    assert_eq!(dns.get(|s| &s.pushes), 0, "nobody was subscribed any more");
    assert_eq!(dns.get(|s| &s.db_errors), 0);
    // And the service still answers.
    let mut agent = TestAgent::connect(dns.addr).await;
    assert_eq!(agent.route(20, 1).await.host.len(), 1);
    dns.stop().await;
}
both_backends!(a_closed_connection_drops_its_subscriptions);

async fn two_edits_in_one_second_are_both_pushed(db: TestDb) {
    let store = Store::open(&db.url()).await.unwrap();
    let dns = TestDns::start(db.url(), |_| {}).await;
    let mut agent = TestAgent::connect(dns.addr).await;
    agent.route(30, 1).await;
    store
        .add_host(RouteKey::new(30, 1), host(1, 80))
        .await
        .unwrap();
    store
        .add_host(RouteKey::new(30, 1), host(2, 80))
        .await
        .unwrap();
    let mut last = Vec::new();
    while last.len() < 2 {
        let push = agent.next(Duration::from_secs(3)).await.expect("push");
        last = hosts(&push);
    }
    dns.stop().await;
}
both_backends!(two_edits_in_one_second_are_both_pushed);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_only_their_own_connection() {
    let db = TestDb::sqlite();
    let dns = TestDns::start(db.url(), |_| {}).await;
    let mut good = TestAgent::connect(dns.addr).await;
    good.route(1, 1).await;

    let negative = [&1i32.to_le_bytes()[..], &(-5i32).to_le_bytes()[..]].concat();
    let oversized = [&1i32.to_le_bytes()[..], &65536i32.to_le_bytes()[..]].concat();
    let unknown_msgid = [&99i32.to_le_bytes()[..], &0i32.to_le_bytes()[..]].concat();
    let wrong_direction = [&5i32.to_le_bytes()[..], &0i32.to_le_bytes()[..]].concat();
    // A GetRouteRequest whose body is a truncated varint.
    let bad_body = [
        &1i32.to_le_bytes()[..],
        &2i32.to_le_bytes()[..],
        &[0x08, 0xff][..],
    ]
    .concat();
    let garbage: Vec<u8> = (0..64u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(200))
        .collect();
    let cases: [(&str, &[u8]); 6] = [
        ("negative length", &negative),
        ("oversized length", &oversized),
        ("unknown msgid", &unknown_msgid),
        ("response sent to dns", &wrong_direction),
        ("undecodable body", &bad_body),
        ("garbage", &garbage),
    ];
    for (i, (what, bytes)) in cases.iter().enumerate() {
        let mut bad = TestAgent::connect(dns.addr).await;
        bad.send_raw(bytes).await;
        assert!(
            bad.closed_within(Duration::from_secs(5)).await,
            "{what}: connection not closed"
        );
        let errors = dns.get(|s| &s.protocol_errors);
        assert_eq!(errors, i as u64 + 1, "{what}: protocol error not counted");
        // The good connection still works.
        good.route(1, 1).await;
    }
    dns.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_max_conn_are_closed_and_counted() {
    let db = TestDb::sqlite();
    let dns = TestDns::start(db.url(), |c| c.reactor.max_conn = 2).await;
    let mut a = TestAgent::connect(dns.addr).await;
    let mut b = TestAgent::connect(dns.addr).await;
    a.route(1, 1).await;
    b.route(1, 1).await;
    let mut c = TestAgent::connect(dns.addr).await;
    assert!(c.closed_within(Duration::from_secs(5)).await);
    assert_eq!(dns.get(|s| &s.connections_refused), 1);
    drop(a);
    let stats = dns.stats.clone();
    eventually("a slot frees up", Duration::from_secs(5), || {
        let free = lars_dns::DnsStats::get(&stats.connections) < 2;
        async move { free }
    })
    .await;
    let mut d = TestAgent::connect(dns.addr).await;
    d.route(1, 1).await;
    dns.stop().await;
}
