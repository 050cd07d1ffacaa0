//! The SQLite backend as several processes use it: one file, several handles.

use std::net::Ipv4Addr;

use lars_store::testing::TestDb;
use lars_store::{CallStatusRow, RowId, Store, StoreError, StoreUrl};
use lars_wire::{HostAddr, RouteKey};

fn host(last: u8) -> HostAddr {
    HostAddr::new(Ipv4Addr::new(192, 168, 0, last), 7000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_on_one_file_see_each_others_writes() {
    let db = TestDb::sqlite();
    // Two independent opens, as the dns service and the CLI in two processes would do.
    let dns = db.open().await.unwrap();
    let cli = Store::open(&db.url()).await.unwrap();
    let key = RouteKey::new(3, 4);

    let v1 = cli.add_host(key, host(1)).await.unwrap().version.unwrap();
    assert_eq!(dns.route_version().await.unwrap(), v1);
    assert_eq!(dns.load_routes().await.unwrap().routes[&key], vec![host(1)]);
    assert_eq!(dns.changed_keys_up_to(v1).await.unwrap(), vec![key]);

    let v2 = dns.add_host(key, host(2)).await.unwrap().version.unwrap();
    assert!(v2 > v1);
    assert_eq!(cli.route_version().await.unwrap(), v2);

    let row = CallStatusRow {
        modid: 3,
        cmdid: 4,
        ip: host(1).ip_bits(),
        port: 7000,
        caller: 1,
        succ_cnt: 10,
        err_cnt: 1,
        ts: 5,
        overload: false,
    };
    dns.upsert_call_status(&[row]).await.unwrap();
    assert_eq!(
        cli.load_call_status(Some(3), None).await.unwrap(),
        vec![row]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editors_on_two_handles_never_share_a_version() {
    let db = TestDb::sqlite();
    let a = db.open().await.unwrap();
    let b = db.open().await.unwrap();
    let key = RouteKey::new(1, 1);
    let mut tasks = Vec::new();
    for i in 0..10u8 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(
            async move { store.add_host(key, host(i)).await },
        ));
    }
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap().unwrap().version.unwrap());
    }
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), 10);
    assert_eq!(a.load_routes().await.unwrap().routes[&key].len(), 10);
}

#[tokio::test]
async fn the_file_is_in_wal_mode() {
    let db = TestDb::sqlite();
    let store = db.open().await.unwrap();
    store.ping().await.unwrap();
    let StoreUrl::Sqlite(path) = db.url() else {
        panic!("not sqlite")
    };
    assert!(path.exists());
    // The journal mode is a property of the file: a plain reader sees it too.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode.to_ascii_lowercase(), "wal");
}

#[tokio::test]
async fn keys_outside_i32_are_rejected_not_truncated() {
    // SQLite stores any integer, so a hand-edited file can hold keys MySQL's INT could not.
    let db = TestDb::sqlite();
    let store = db.open().await.unwrap();
    store
        .execute_raw(
            "INSERT INTO RouteData (id, modid, cmdid, serverip, serverport) \
             VALUES (5, 4294967297, 1, 1, 80), (6, 1, 1, 4294967296, 80), (7, 1, 1, 'x', 80)",
        )
        .await
        .unwrap();
    let load = store.load_routes().await.unwrap();
    assert!(load.routes.is_empty());
    let rejected: Vec<(i64, &str)> = load
        .rejected
        .iter()
        .map(|e| match e {
            StoreError::BadRow {
                row: RowId::Id(id),
                column,
                ..
            } => (*id, *column),
            other => panic!("unexpected {other}"),
        })
        .collect();
    assert_eq!(
        rejected,
        vec![(5, "modid"), (6, "serverip"), (7, "serverip")]
    );

    // Changes with such keys are skipped too, and bad status rows do not hide good ones.
    store
        .execute_raw("INSERT INTO RouteChange (modid, cmdid, version) VALUES (4294967297, 1, 1)")
        .await
        .unwrap();
    assert!(store.changed_keys_up_to(10).await.unwrap().is_empty());
    store
        .execute_raw(
            "INSERT INTO ServerCallStatus VALUES (1, 1, 1, 80, 1, -5, 0, 0, '0'), \
             (1, 1, 2, 80, 1, 5, 0, 0, '1')",
        )
        .await
        .unwrap();
    let rows = store.load_call_status(None, None).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].ip, rows[0].succ_cnt, rows[0].overload),
        (2, 5, true)
    );
}
