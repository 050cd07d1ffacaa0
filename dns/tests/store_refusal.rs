//! lars-dns never creates a database by accident and serves only a Lars route database: started
//! on a misspelled MySQL database it exits naming it and creates nothing; on a database without
//! the route tables or without the `RouteVersion` row it accepts no connection (they wait in the
//! listen backlog) and reports `lars_service_serving 0` until `lars init` ran, then serves them;
//! and a database that loses its version row or tables while dns serves leaves the last
//! snapshot serving.

mod common;

use common::{TestAgent, eventually, hosts};
use lars_dns::{DnsConfig, DnsServer, DnsStats};
use lars_service::both_backends;
use lars_service::metrics::{SERVING, Samples, ServiceMetrics};
use lars_service::testing::{ServiceProcess, ServiceTask};
use lars_store::StoreUrl;
use lars_store::testing::TestDb;
use lars_wire::{HostAddr, RouteKey};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long each wait of these tests may take; far beyond the 50 ms polls and 200 ms retries.
const WITHIN: Duration = Duration::from_secs(20);

fn lars_dns() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lars-dns"))
}

#[test]
fn a_misspelled_mysql_database_stops_dns_at_start_and_is_not_created() {
    let db = TestDb::mysql_absent();
    let dir = tempfile::tempdir().unwrap();
    let config = db.service_config(dir.path(), "lars_dns.toml");
    db.assert_service_refuses(lars_dns(), &["--config", config.to_str().unwrap()]);
}

#[test]
fn a_missing_sqlite_file_is_made_on_the_first_start() {
    let db = TestDb::sqlite_absent();
    let dir = tempfile::tempdir().unwrap();
    let config = db.service_config(dir.path(), "lars_dns.toml");
    let dns = ServiceProcess::start(lars_dns(), &[], &["--config", config.to_str().unwrap()]);
    assert!(db.exists());
    let exit = dns.terminate();
    assert!(exit.success(), "exit status {exit}");
}

/// A dns service as a task with fast polls and retries, its counters and its metrics.
struct Dns {
    addr: std::net::SocketAddr,
    stats: Arc<DnsStats>,
    metrics: ServiceMetrics,
    task: ServiceTask,
}

impl Dns {
    async fn start(store: StoreUrl) -> Dns {
        let mut config = DnsConfig::default();
        config.reactor.port = 0;
        config.dns.version_poll_ms = 50;
        config.dns.db_retry_max_ms = 200;
        let server = DnsServer::bind(&config, store).await.expect("dns binds");
        let (addr, stats, metrics) = (server.local_addr(), server.stats(), server.metrics());
        let task = ServiceTask::spawn("dns", |shutdown| server.run(shutdown));
        Dns {
            addr,
            stats,
            metrics,
            task,
        }
    }

    fn serving(&self) -> Option<f64> {
        Samples::parse(&self.metrics.render()).get(SERVING, &[])
    }

    fn db_errors(&self) -> u64 {
        DnsStats::get(&self.stats.db_errors)
    }

    /// Waits until the store has failed `more` more times.
    async fn failed_more(&self, more: u64) {
        let want = self.db_errors() + more;
        eventually("more failed loads", WITHIN, || {
            let n = self.db_errors();
            async move { n >= want }
        })
        .await;
    }

    async fn serves(&self) {
        eventually("dns serving", WITHIN, || {
            let serving = self.serving() == Some(1.0);
            async move { serving }
        })
        .await;
    }
}

/// The dns refuses `db` (not a route database yet) until it is initialised, then answers the
/// connection that waited.
async fn refuses_to_serve_until_init(db: TestDb) {
    let dns = Dns::start(db.url()).await;
    let mut agent = TestAgent::connect(dns.addr).await;
    agent.ask(4, 5).await;
    // Several loads failed while the agent waited: nothing was served or accepted.
    dns.failed_more(3).await;
    assert_eq!(dns.serving(), Some(0.0));
    assert_eq!(DnsStats::get(&dns.stats.connections_total), 0);
    assert_eq!(DnsStats::get(&dns.stats.reloads), 0);

    db.init();
    dns.serves().await;
    let answer = agent
        .next(WITHIN)
        .await
        .expect("the waiting agent is answered");
    assert_eq!((answer.modid, answer.cmdid), (4, 5));
    assert!(answer.host.is_empty());
    dns.task.stop(WITHIN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mysql_database_without_tables_is_refused_until_init() {
    refuses_to_serve_until_init(TestDb::mysql_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqlite_file_with_other_tables_is_refused_until_init() {
    // A file that has tables is never given the schema by a service, only by `lars init`.
    refuses_to_serve_until_init(TestDb::sqlite_with_other_tables()).await;
}

/// `db` with its `RouteVersion` row deleted: the version was never set.
async fn without_version_row(db: TestDb) -> TestDb {
    let store = db.open().await.unwrap();
    assert_eq!(
        store
            .execute_raw("DELETE FROM RouteVersion WHERE id = 1")
            .await
            .unwrap(),
        1
    );
    store.close().await;
    db
}

async fn a_database_without_the_version_row_is_refused_until_init(db: TestDb) {
    refuses_to_serve_until_init(without_version_row(db).await).await;
}

both_backends!(a_database_without_the_version_row_is_refused_until_init);

/// Serving a route, then the version row goes, then the tables: every poll fails and the last
/// snapshot keeps answering.
async fn losing_the_schema_while_serving_keeps_the_last_snapshot(db: TestDb) {
    let key = RouteKey::new(7, 7);
    let host = HostAddr::new(Ipv4Addr::new(10, 7, 7, 7), 7777);
    let store = db.open().await.unwrap();
    store.add_host(key, host).await.unwrap();
    let dns = Dns::start(db.url()).await;
    dns.serves().await;
    let mut agent = TestAgent::connect(dns.addr).await;
    let served = vec![(Ipv4Addr::new(10, 7, 7, 7), 7777)];
    assert_eq!(hosts(&agent.route(7, 7).await), served);

    store
        .execute_raw("DELETE FROM RouteVersion WHERE id = 1")
        .await
        .unwrap();
    dns.failed_more(2).await;
    assert_eq!(hosts(&agent.route(7, 7).await), served);

    for table in ["RouteChange", "RouteData", "RouteVersion"] {
        store
            .execute_raw(&format!("DROP TABLE {table}"))
            .await
            .unwrap();
    }
    dns.failed_more(2).await;
    assert_eq!(hosts(&agent.route(7, 7).await), served);
    assert_eq!(dns.serving(), Some(1.0));
    dns.task.stop(WITHIN).await;
}

both_backends!(losing_the_schema_while_serving_keeps_the_last_snapshot);
