//! The MySQL backend when the server goes away and comes back, simulated with a `CutProxy`.

use std::time::Duration;

use lars_store::testing::TestDb;
use lars_store::{OpenMode, Store, StoreError, StoreOptions};
use lars_wire::{HostAddr, RouteKey};

/// Short limits so an outage is noticed quickly.
const OPTIONS: StoreOptions = StoreOptions {
    connect_timeout: Duration::from_secs(1),
    op_timeout: Duration::from_secs(2),
    mode: OpenMode::Existing,
};

/// Far beyond any of the store's own limits: reaching it means the store hung.
const HANG: Duration = Duration::from_secs(30);

fn is_outage(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Timeout { .. } | StoreError::Connect { .. } | StoreError::Query { .. }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_fails_operations_within_the_timeout_and_restore_heals_it() {
    let db = TestDb::mysql();
    let (proxy, url) = db.through_proxy().await;
    let store = Store::open_with(&url, OPTIONS).await.unwrap();
    let key = RouteKey::new(1, 1);
    store
        .add_host(key, HostAddr::new([10, 0, 0, 1].into(), 80))
        .await
        .unwrap();

    proxy.cut();
    for attempt in 0..2 {
        let result = tokio::time::timeout(HANG, store.route_version()).await;
        match result {
            Err(_) => panic!("route_version hung through a cut link (attempt {attempt})"),
            Ok(Ok(v)) => panic!("route_version answered {v} through a cut link"),
            Ok(Err(e)) => assert!(is_outage(&e), "unexpected error: {e}"),
        }
    }
    let edit = tokio::time::timeout(
        HANG,
        store.add_host(key, HostAddr::new([10, 0, 0, 2].into(), 80)),
    )
    .await
    .expect("add_host hung through a cut link");
    assert!(edit.is_err());

    proxy.restore();
    let load = tokio::time::timeout(HANG, store.load_routes())
        .await
        .expect("load_routes hung after restore")
        .unwrap();
    assert_eq!(
        load.routes[&key].len(),
        1,
        "the failed edit must not have landed"
    );
    store
        .add_host(key, HostAddr::new([10, 0, 0, 2].into(), 80))
        .await
        .unwrap();
    assert_eq!(store.load_routes().await.unwrap().routes[&key].len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_through_a_cut_link_fails_within_the_timeout() {
    let db = TestDb::mysql();
    let (proxy, url) = db.through_proxy().await;
    proxy.cut();
    let opened = tokio::time::timeout(HANG, Store::open_with(&url, OPTIONS))
        .await
        .expect("open hung through a cut link");
    match opened {
        Err(StoreError::Timeout { op: "connect", .. }) => {}
        Err(e) => panic!("unexpected error: {e}"),
        Ok(store) => panic!("opened {store:?} through a cut link"),
    }
    proxy.restore();
    let store = Store::open_with(&url, OPTIONS).await.unwrap();
    assert_eq!(store.route_version().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_there_is_a_connect_error() {
    // Bind and drop a listener to get a local port nobody listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("mysql://root@127.0.0.1:{port}/lars_dns")
        .parse()
        .unwrap();
    match tokio::time::timeout(HANG, Store::open_with(&url, OPTIONS)).await {
        Ok(Err(StoreError::Connect { target, .. })) => {
            assert_eq!(target, format!("127.0.0.1:{port}/lars_dns"));
        }
        Ok(Err(e)) => panic!("unexpected error: {e}"),
        Ok(Ok(_)) => panic!("opened a store on a closed port"),
        Err(_) => panic!("open hung on a closed port"),
    }
}
