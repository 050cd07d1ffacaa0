//! Database outages: with the database cut (MySQL behind a proxy the test cuts; the SQLite file
//! locked or moved away) the service keeps answering from its snapshot, and picks up the changes
//! made meanwhile once the database is back.

mod common;

use common::{TestAgent, TestDns, eventually, hosts};
use lars_dns::DnsStats;
use lars_store::testing::{CutProxy, TestDb};
use lars_store::{Store, StoreUrl};
use lars_wire::{HostAddr, RouteKey};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

fn host(last: u8) -> HostAddr {
    HostAddr::new(Ipv4Addr::new(172, 16, 0, last), 7000)
}

async fn wait_for_db_errors(stats: &Arc<DnsStats>, more_than: u64) {
    let stats = stats.clone();
    eventually("the outage is noticed", Duration::from_secs(20), || {
        let seen = DnsStats::get(&stats.db_errors) > more_than;
        async move { seen }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_outage_keeps_serving_and_catches_up() {
    let db = TestDb::mysql();
    let direct = Store::open(&db.url()).await.unwrap();
    direct.add_host(RouteKey::new(1, 1), host(1)).await.unwrap();

    let server = db
        .server_addr()
        .expect("a MySQL test database has a server address");
    let proxy = CutProxy::start(server).await.expect("proxy starts");
    let through_proxy: StoreUrl = db.url_via(proxy.addr());
    let dns = TestDns::start(through_proxy, |_| {}).await;
    let mut agent = TestAgent::connect(dns.addr).await;
    assert_eq!(agent.route(1, 1).await.host.len(), 1);

    proxy.cut();
    wait_for_db_errors(&dns.stats, 0).await;
    // A change made while the service cannot see the database.
    direct.add_host(RouteKey::new(1, 1), host(2)).await.unwrap();
    // Still answering from the snapshot, with the old hosts.
    assert_eq!(agent.route(1, 1).await.host.len(), 1);
    wait_for_db_errors(&dns.stats, 1).await;
    assert_eq!(agent.route(1, 1).await.host.len(), 1);

    proxy.restore();
    let push = agent
        .next(Duration::from_secs(10))
        .await
        .expect("push after restore");
    assert_eq!(hosts(&push).len(), 2);
    dns.stop().await;
}

fn sqlite_path(db: &TestDb) -> std::path::PathBuf {
    match db.url() {
        StoreUrl::Sqlite(path) => path,
        other => panic!("not a SQLite test database: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_removed_file_keeps_serving_and_catches_up() {
    let db = TestDb::sqlite();
    let path = sqlite_path(&db);
    let direct = Store::open(&db.url()).await.unwrap();
    direct.add_host(RouteKey::new(2, 2), host(1)).await.unwrap();
    drop(direct);
    let dns = TestDns::start(db.url(), |_| {}).await;
    let mut agent = TestAgent::connect(dns.addr).await;
    assert_eq!(agent.route(2, 2).await.host.len(), 1);

    // The file disappears (a backup taken first): the service must not create an empty one.
    let backup = path.with_extension("backup");
    let copy = rusqlite::Connection::open(&path).unwrap();
    copy.execute("VACUUM INTO ?1", [backup.to_str().unwrap()])
        .unwrap();
    drop(copy);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    wait_for_db_errors(&dns.stats, 0).await;
    assert!(!path.exists(), "the service recreated the removed file");
    assert_eq!(agent.route(2, 2).await.host.len(), 1);

    // A change is made to the backup, which is then put back in place.
    let restored = Store::open(&StoreUrl::Sqlite(backup.clone()))
        .await
        .unwrap();
    restored
        .add_host(RouteKey::new(2, 2), host(2))
        .await
        .unwrap();
    drop(restored);
    for suffix in ["-wal", "-shm"] {
        let from = format!("{}{suffix}", backup.display());
        if std::path::Path::new(&from).exists() {
            std::fs::rename(&from, format!("{}{suffix}", path.display())).unwrap();
        }
    }
    std::fs::rename(&backup, &path).unwrap();

    let push = agent
        .next(Duration::from_secs(10))
        .await
        .expect("push after the file is back");
    assert_eq!(hosts(&push).len(), 2);
    dns.stop().await;
}

/// In WAL mode a writer never blocks readers: while another process holds the write lock with
/// uncommitted edits, the service keeps answering (its reads succeed and see the old routes),
/// and it pushes the edits once they commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_locked_file_keeps_serving_and_catches_up() {
    let db = TestDb::sqlite();
    let direct = Store::open(&db.url()).await.unwrap();
    direct.add_host(RouteKey::new(3, 3), host(1)).await.unwrap();
    let dns = TestDns::start(db.url(), |_| {}).await;
    let mut agent = TestAgent::connect(dns.addr).await;
    assert_eq!(agent.route(3, 3).await.host.len(), 1);

    let lock = rusqlite::Connection::open(sqlite_path(&db)).unwrap();
    lock.busy_timeout(Duration::from_secs(10)).unwrap();
    lock.execute_batch(
        "BEGIN IMMEDIATE;
         INSERT INTO RouteData (modid, cmdid, serverip, serverport) VALUES (3, 3, 2886729730, 7000);
         UPDATE RouteVersion SET version = version + 1 WHERE id = 1;
         INSERT INTO RouteChange (modid, cmdid, version) SELECT 3, 3, version FROM RouteVersion WHERE id = 1;",
    )
    .unwrap();
    // Several polls go by under the lock; the service answers from what is committed.
    let polls = dns.get(|s| &s.polls);
    let stats = dns.stats.clone();
    common::eventually(
        "three polls under the lock",
        Duration::from_secs(10),
        || {
            let polled = DnsStats::get(&stats.polls) >= polls + 3;
            async move { polled }
        },
    )
    .await;
    assert_eq!(agent.route(3, 3).await.host.len(), 1);
    assert_eq!(
        direct.route_version().await.unwrap(),
        dns.get(|s| &s.version) as i64
    );
    lock.execute_batch("COMMIT;").unwrap();
    drop(lock);

    let push = agent
        .next(Duration::from_secs(10))
        .await
        .expect("push after the commit");
    assert_eq!(hosts(&push).len(), 2);
    dns.stop().await;
}
