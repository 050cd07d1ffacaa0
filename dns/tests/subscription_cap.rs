//! A connection holds at most `max_subscriptions_per_connection` subscriptions: beyond it every
//! request is still answered, but not subscribed (counted), so a change to such a key is not
//! pushed on that connection while the subscribed keys' changes are.

mod common;

use common::{TestAgent, TestDns};
use lars_store::Store;
use lars_store::testing::TestDb;
use lars_wire::{HostAddr, RouteKey};
use std::net::Ipv4Addr;
use std::time::Duration;

#[tokio::test]
async fn beyond_the_cap_a_request_is_answered_but_not_subscribed() {
    let db = TestDb::sqlite();
    let store = Store::open(&db.url()).await.unwrap();
    let dns = TestDns::start(db.url(), |c| c.dns.max_subscriptions_per_connection = 2).await;
    let mut agent = TestAgent::connect(dns.addr).await;
    for cmdid in 1..=3 {
        assert!(agent.route(600, cmdid).await.host.is_empty());
    }
    // Asked again: answered, still not subscribed, counted again.
    agent.route(600, 3).await;
    assert_eq!(dns.get(|s| &s.subscriptions), 2);
    assert_eq!(dns.get(|s| &s.subscriptions_refused), 2);

    // The refused key changes with a subscribed one, then another subscribed one changes: the
    // pushes are those two, in order; a push of the refused key would come before the last.
    let host = HostAddr::new(Ipv4Addr::new(10, 6, 0, 1), 6000);
    store.add_host(RouteKey::new(600, 3), host).await.unwrap();
    store.add_host(RouteKey::new(600, 1), host).await.unwrap();
    let push = agent.next(Duration::from_secs(10)).await.expect("a push");
    assert_eq!((push.modid, push.cmdid, push.host.len()), (600, 1, 1));
    store.add_host(RouteKey::new(600, 2), host).await.unwrap();
    let push = agent.next(Duration::from_secs(10)).await.expect("a push");
    assert_eq!((push.modid, push.cmdid, push.host.len()), (600, 2, 1));
    // A second agent's connection has a cap of its own.
    let mut other = TestAgent::connect(dns.addr).await;
    assert_eq!(other.route(600, 3).await.host.len(), 1);
    assert_eq!(dns.get(|s| &s.subscriptions), 3);
    dns.stop().await;
}

#[tokio::test]
async fn a_key_with_a_negative_id_is_answered_empty_and_never_subscribed() {
    let db = TestDb::sqlite();
    let store = Store::open(&db.url()).await.unwrap();
    let host = HostAddr::new(Ipv4Addr::new(10, 6, 0, 2), 6001);
    store.add_host(RouteKey::new(601, 1), host).await.unwrap();
    let dns = TestDns::start(db.url(), |_| {}).await;
    let mut agent = TestAgent::connect(dns.addr).await;
    for (modid, cmdid) in [(-1, 1), (601, -1), (i32::MIN, i32::MIN), (-1, 1)] {
        let answer = agent.route(modid, cmdid).await;
        assert_eq!((answer.modid, answer.cmdid), (modid, cmdid));
        assert!(answer.host.is_empty() && !answer.removed, "{answer:?}");
    }
    assert_eq!(dns.get(|s| &s.requests_not_a_route), 4);
    assert_eq!(dns.get(|s| &s.subscriptions), 0);
    assert_eq!(dns.get(|s| &s.subscriptions_refused), 0);
    // The connection still works and subscribes real keys.
    assert_eq!(agent.route(601, 1).await.host.len(), 1);
    assert_eq!(dns.get(|s| &s.subscriptions), 1);
    dns.stop().await;
}
