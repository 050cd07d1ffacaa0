//! Push-empty protection in the dns, on both store backends: routes that lose every host in the
//! store with no route edit accounting for it keep their last hosts, while `remove_route` (what
//! `lars route del` runs) is published with `removed` set — by every dns replica on the database.

mod common;

use common::{TestAgent, TestDns, eventually, hosts};
use lars_service::both_backends;
use lars_store::testing::TestDb;
use lars_store::{Store, StoreUrl};
use lars_wire::messages::GetRouteResponse;
use lars_wire::{HostAddr, RouteKey};
use std::net::Ipv4Addr;
use std::time::Duration;

const ROUTES: i32 = 4;

fn key(cmdid: i32) -> RouteKey {
    RouteKey::new(30, cmdid)
}

fn host(cmdid: i32) -> HostAddr {
    HostAddr::new(Ipv4Addr::new(10, 30, 0, cmdid as u8), 9000)
}

/// A store with `ROUTES` routes of one host each.
async fn routes(db: &TestDb) -> Store {
    let store = db.open().await.unwrap();
    for cmdid in 1..=ROUTES {
        store.add_host(key(cmdid), host(cmdid)).await.unwrap();
    }
    store
}

/// `DELETE FROM RouteData` by hand: no `RouteChange` row, no version bump.
async fn empty_route_data(url: &StoreUrl) {
    match url {
        StoreUrl::Sqlite(path) => {
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.execute("DELETE FROM RouteData", []).unwrap();
        }
        StoreUrl::Mysql(_) => {
            use mysql_async::prelude::Queryable;
            let url = url.to_string();
            let mut conn = mysql_async::Conn::from_url(url.as_str()).await.unwrap();
            conn.query_drop("DELETE FROM RouteData").await.unwrap();
            conn.disconnect().await.unwrap();
        }
    }
}

/// The next push for `key`, skipping others.
async fn push_for(agent: &mut TestAgent, key: RouteKey) -> GetRouteResponse {
    loop {
        let push = agent
            .next(Duration::from_secs(2))
            .await
            .unwrap_or_else(|| panic!("a push for {key} within 2 s"));
        if (push.modid, push.cmdid) == (key.modid, key.cmdid) {
            return push;
        }
    }
}

async fn routes_emptied_behind_the_dns_back_keep_their_hosts(db: TestDb) {
    let store = routes(&db).await;
    // A full reload every second notices a change that bumped no version.
    let dns = TestDns::start(db.url(), |c| c.dns.full_reload_secs = 1).await;
    let mut agent = TestAgent::connect(dns.addr).await;
    for cmdid in 1..=ROUTES {
        assert_eq!(agent.route(30, cmdid).await.host.len(), 1);
    }

    empty_route_data(&db.url()).await;
    eventually(
        "the dns holds every route back",
        Duration::from_secs(10),
        || {
            let held = dns.get(|s| &s.push_empty_held_total) == ROUTES as u64
                && dns.get(|s| &s.push_empty_held) == ROUTES as u64;
            async move { held }
        },
    )
    .await;
    // Asked again (an agent reconnecting), the dns answers the last hosts.
    for cmdid in 1..=ROUTES {
        let answer = agent.route(30, cmdid).await;
        assert_eq!(hosts(&answer), vec![(host(cmdid).ip, 9000)], "{cmdid}");
    }
    assert_eq!(dns.get(|s| &s.routes), ROUTES as u64);

    // To drop a held route on purpose: give it a host and delete it with a route edit.
    store.add_host(key(1), host(9)).await.unwrap();
    store.remove_route(key(1)).await.unwrap();
    let push = push_for(&mut agent, key(1)).await;
    assert!(push.host.is_empty() && push.removed, "{push:?}");
    eventually("three routes stay held", Duration::from_secs(5), || {
        let held = dns.get(|s| &s.push_empty_held) == 3;
        async move { held }
    })
    .await;
    assert_eq!(dns.get(|s| &s.push_empty_held_total), ROUTES as u64);
    dns.stop().await;
}
both_backends!(routes_emptied_behind_the_dns_back_keep_their_hosts);

async fn deleting_every_route_with_route_edits_is_published(db: TestDb) {
    let store = routes(&db).await;
    let dns = TestDns::start(db.url(), |_| {}).await;
    let mut agent = TestAgent::connect(dns.addr).await;
    for cmdid in 1..=ROUTES {
        agent.route(30, cmdid).await;
    }
    for cmdid in 1..=ROUTES {
        store.remove_route(key(cmdid)).await.unwrap();
        let push = push_for(&mut agent, key(cmdid)).await;
        assert!(push.host.is_empty() && push.removed, "{push:?}");
    }
    // A later request (an agent reconnecting) is told the route was removed, too.
    assert!(agent.route(30, 1).await.removed);
    assert!(
        !agent.route(30, 99).await.removed,
        "never existed: not marked"
    );
    assert_eq!(dns.get(|s| &s.push_empty_held_total), 0);
    dns.stop().await;
}
both_backends!(deleting_every_route_with_route_edits_is_published);

async fn a_route_del_is_published_by_two_replicas_on_one_database(db: TestDb) {
    let store = routes(&db).await;
    // Threshold 0 holds any loss no RouteChange row accounts for: had one replica deleted the
    // rows before the other read them, the other would hold the route back instead of pushing.
    let strict = |c: &mut lars_dns::DnsConfig| c.dns.push_empty_threshold = 0;
    let first = TestDns::start(db.url(), strict).await;
    let second = TestDns::start(db.url(), strict).await;
    let mut agents = [
        TestAgent::connect(first.addr).await,
        TestAgent::connect(second.addr).await,
    ];
    for agent in &mut agents {
        for cmdid in 1..=ROUTES {
            agent.route(30, cmdid).await;
        }
    }
    for cmdid in 1..=ROUTES - 1 {
        store.remove_route(key(cmdid)).await.unwrap();
        for agent in &mut agents {
            let push = push_for(agent, key(cmdid)).await;
            assert!(push.host.is_empty() && push.removed, "{cmdid}: {push:?}");
        }
    }
    // The rows are kept for the other replica: a replica restarted now still knows.
    let third = TestDns::start(db.url(), strict).await;
    let mut agent = TestAgent::connect(third.addr).await;
    assert!(agent.route(30, 1).await.removed);
    for dns in [&first, &second, &third] {
        assert_eq!(dns.get(|s| &s.push_empty_held_total), 0);
    }
    for dns in [first, second, third] {
        dns.stop().await;
    }
}
both_backends!(a_route_del_is_published_by_two_replicas_on_one_database);
