//! Fail-over to replicas, as processes over real sockets: two `lars-dns` on one database (MariaDB,
//! and one SQLite file) behind one agent, the primary killed or frozen with SIGSTOP; and a frozen
//! `lars-reporter` with a healthy backup, where every route's final statistics must still be
//! stored. A frozen process keeps its connections open, so only the agent's liveness rules get
//! it off them (see `agent/src/uplink/liveness.rs`).

mod common;

use common::{
    DEFAULT_IO, Frozen, Service, agent_stat, client_of, eventually, start_agent_on, start_central,
};
use lars_store::testing::TestDb;
use lars_store::{CallStatusRow, Store};
use lars_wire::{Client, HostAddr, RouteKey};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// The agent's `[uplink]` in these tests: a dead peer is one silent for 1 s (the tests wait
/// `ANSWER_TIMEOUT` + 2 s for a change), an idle dns link is probed every 300 ms, and a write
/// stuck for 1 s is a dead peer.
const UPLINK: &str = "[uplink]\nreconnect_min_ms = 50\nreconnect_max_ms = 200\n\
                      answer_timeout_ms = 1000\nprobe_interval_ms = 300\n\
                      write_stall_timeout_ms = 1000\n";

/// `answer_timeout_ms` of [`UPLINK`].
const ANSWER_TIMEOUT: Duration = Duration::from_millis(1000);

/// How soon lars-dns sees a change in the database.
const DNS_POLL: &str = "[dns]\nversion_poll_ms = 200\n";

fn host(last: u8) -> HostAddr {
    HostAddr::new(Ipv4Addr::new(10, 9, 0, last), 8000 + u16::from(last))
}

/// The hosts the agent serves for `key`, sorted; `None` when the agent's answer did not come in
/// time (a loaded test machine), so that waiting for a route simply asks again.
fn routes(client: &mut Client, key: RouteKey) -> Option<Vec<HostAddr>> {
    let mut hosts = client.get_route(key.modid, key.cmdid).ok()?;
    hosts.sort_by_key(|h| (h.ip, h.port));
    Some(hosts)
}

/// The store of a test, opened in-process to edit routes and read statistics.
struct TestStore {
    runtime: tokio::runtime::Runtime,
    store: Store,
}

impl TestStore {
    fn open(db: &TestDb) -> TestStore {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = runtime.block_on(db.open()).expect("open the test store");
        TestStore { runtime, store }
    }

    fn add(&self, key: RouteKey, host: HostAddr) {
        self.runtime
            .block_on(self.store.add_host(key, host))
            .expect("add a host");
    }

    fn call_status(&self, key: RouteKey) -> Vec<CallStatusRow> {
        self.runtime
            .block_on(
                self.store
                    .load_call_status(Some(key.modid), Some(key.cmdid)),
            )
            .expect("read call statistics")
    }
}

/// Two lars-dns on `db` (primary first) and a reporter, and an agent whose dns uplink fails
/// over from the primary to the other.
struct Replicas {
    dir: tempfile::TempDir,
    primary: Option<Service>,
    backup: Service,
    _reporter: Service,
    agent: Service,
}

impl Replicas {
    fn start(db: &TestDb) -> Replicas {
        let dir = tempfile::tempdir().unwrap();
        let url = db.url_string();
        let (primary, primary_addr) =
            start_central("lars-dns", dir.path(), "dns1.toml", &url, DNS_POLL);
        let (backup, backup_addr) =
            start_central("lars-dns", dir.path(), "dns2.toml", &url, DNS_POLL);
        let (reporter, reporter_addr) =
            start_central("lars-reporter", dir.path(), "reporter.toml", &url, "");
        let agent = start_agent_on(
            dir.path(),
            DEFAULT_IO,
            &[primary_addr, backup_addr],
            &[reporter_addr],
            UPLINK,
        );
        Replicas {
            dir,
            primary: Some(primary),
            backup,
            _reporter: reporter,
            agent,
        }
    }

    fn dns_stat(&self, name: &str) -> u64 {
        agent_stat(&self.agent, name, &[("uplink", "dns")])
    }
}

/// Makes `key` a route with one host and waits until the agent serves it (through the primary).
fn served(store: &TestStore, client: &mut Client, key: RouteKey) {
    store.add(key, host(1));
    let _ = client.get_host(key.modid, key.cmdid);
    eventually(
        "the route reaches the agent",
        Duration::from_secs(10),
        || (routes(client, key)? == [host(1)]).then_some(()),
    );
}

fn a_killed_primary_dns_is_failed_over_and_a_change_arrives_through_the_survivor(db: TestDb) {
    let store = TestStore::open(&db);
    let mut system = Replicas::start(&db);
    let mut client = client_of(&system.agent);
    let key = RouteKey::new(31, 1);
    served(&store, &mut client, key);

    system.primary.take().unwrap().kill();
    store.add(key, host(2));
    let changed = Instant::now();
    eventually(
        "the change arrives through the surviving dns",
        Duration::from_secs(2),
        || (routes(&mut client, key)? == [host(1), host(2)]).then_some(()),
    );
    println!(
        "the change arrived {:?} after it was made",
        changed.elapsed()
    );
    assert!(system.dns_stat("lars_agent_uplink_failovers_total") >= 1);
    assert_eq!(system.dns_stat("lars_agent_uplink_up"), 1);
    drop(system.dir);
}

fn a_frozen_primary_dns_is_failed_over_and_changes_and_new_keys_arrive_through_the_survivor(
    db: TestDb,
) {
    let store = TestStore::open(&db);
    let system = Replicas::start(&db);
    let mut client = client_of(&system.agent);
    let key = RouteKey::new(32, 1);
    served(&store, &mut client, key);

    let primary = system.primary.as_ref().unwrap();
    let frozen = Frozen::freeze(primary);
    store.add(key, host(2));
    // A key the agent has never held, asked for while its dns connection still looks up.
    let new_key = RouteKey::new(32, 2);
    store.add(new_key, host(3));
    let changed = Instant::now();
    // The agent asks its dns, which is the frozen one: the answer comes after the fail-over.
    let _ = client.get_host(new_key.modid, new_key.cmdid);
    eventually(
        "the change and the new key arrive through the surviving dns",
        ANSWER_TIMEOUT + Duration::from_secs(2),
        || {
            (routes(&mut client, key)? == [host(1), host(2)]
                && routes(&mut client, new_key)? == [host(3)])
            .then_some(())
        },
    );
    println!(
        "the change arrived {:?} after it was made",
        changed.elapsed()
    );
    assert!(
        agent_stat(
            &system.agent,
            "lars_agent_uplink_liveness_failures_total",
            &[("uplink", "dns"), ("reason", "unanswered")]
        ) >= 1,
        "the frozen dns was called dead for not answering"
    );
    assert!(system.dns_stat("lars_agent_uplink_failovers_total") >= 1);
    // The survivor serves the agent now.
    let samples = system.backup.scrape();
    assert!(
        samples.sum("lars_dns_connections", &[]) >= 1.0,
        "the backup dns holds the agent's connection"
    );
    drop(frozen);
}

mod mysql {
    use super::*;

    #[test]
    fn a_killed_primary_dns_is_failed_over_and_a_change_arrives_through_the_survivor() {
        super::a_killed_primary_dns_is_failed_over_and_a_change_arrives_through_the_survivor(
            TestDb::mysql(),
        );
    }

    #[test]
    fn a_frozen_primary_dns_is_failed_over_and_changes_and_new_keys_arrive_through_the_survivor() {
        super::a_frozen_primary_dns_is_failed_over_and_changes_and_new_keys_arrive_through_the_survivor(
            TestDb::mysql(),
        );
    }
}

mod sqlite {
    use super::*;

    #[test]
    fn a_killed_primary_dns_is_failed_over_and_a_change_arrives_through_the_survivor() {
        super::a_killed_primary_dns_is_failed_over_and_a_change_arrives_through_the_survivor(
            TestDb::sqlite(),
        );
    }

    #[test]
    fn a_frozen_primary_dns_is_failed_over_and_changes_and_new_keys_arrive_through_the_survivor() {
        super::a_frozen_primary_dns_is_failed_over_and_changes_and_new_keys_arrive_through_the_survivor(
            TestDb::sqlite(),
        );
    }
}

/// Routes whose statistics are large (hosts at addresses that encode widest), so reporting them
/// fills a frozen reporter's receive window within a second or two.
const BIG_ROUTES: i32 = 4;
/// Hosts of each big route: about 40 KB of statistics per route and report.
const BIG_HOSTS: u16 = 2000;

fn big_route(cmdid: i32) -> RouteKey {
    RouteKey::new(41, cmdid)
}

fn big_host(i: u16) -> HostAddr {
    HostAddr::new(Ipv4Addr::new(200, 0, (i >> 8) as u8, i as u8), 9000)
}

/// Plants the big routes in one statement per route (the store API's edit-per-host would take
/// seconds for thousands of hosts); lars-dns loads them when it starts.
fn plant_big_routes(store: &TestStore) {
    for cmdid in 1..=BIG_ROUTES {
        let key = big_route(cmdid);
        let values: Vec<String> = (0..BIG_HOSTS)
            .map(|i| {
                let h = big_host(i);
                format!(
                    "({}, {}, {}, {})",
                    key.modid,
                    key.cmdid,
                    h.ip_bits(),
                    h.port
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO RouteData (modid, cmdid, serverip, serverport) VALUES {}",
            values.join(", ")
        );
        store
            .runtime
            .block_on(store.store.execute_raw(&sql))
            .expect("plant a big route");
    }
}

#[test]
fn a_frozen_reporter_is_failed_over_and_every_routes_final_statistics_are_stored() {
    // One MariaDB database for both reporters: their upserts of one key are statements of their
    // own, so a frozen reporter holds no lock the other needs (before the freeze it writes only
    // small batches, each one autocommit statement).
    let db = TestDb::mysql();
    let store = TestStore::open(&db);
    plant_big_routes(&store);
    let small = RouteKey::new(41, 100);
    store.add(small, host(1));

    let dir = tempfile::tempdir().unwrap();
    let url = db.url_string();
    let (_dns, dns_addr) = start_central("lars-dns", dir.path(), "dns.toml", &url, DNS_POLL);
    let (primary, primary_addr) =
        start_central("lars-reporter", dir.path(), "reporter1.toml", &url, "");
    let (_backup, backup_addr) =
        start_central("lars-reporter", dir.path(), "reporter2.toml", &url, "");
    // A window longer than the test, so each host's counts only grow.
    let agent = start_agent_on(
        dir.path(),
        DEFAULT_IO,
        &[dns_addr],
        &[primary_addr, backup_addr],
        &format!("{UPLINK}[loadbalance]\nidle_timeout = 3600\n"),
    );
    let mut client = client_of(&agent);
    let keys: Vec<RouteKey> = (1..=BIG_ROUTES).map(big_route).chain([small]).collect();
    for key in &keys {
        let _ = client.get_host(key.modid, key.cmdid);
    }
    eventually(
        "every route reaches the agent",
        Duration::from_secs(10),
        || {
            keys.iter()
                .all(|k| client.get_host(k.modid, k.cmdid).is_ok())
                .then_some(())
        },
    );

    // The primary stores the first statistics: the pipeline works.
    for _ in 0..5 {
        client.report(small.modid, small.cmdid, host(1), 0).unwrap();
    }
    eventually(
        "the primary reporter stores the first statistics",
        Duration::from_secs(10),
        || {
            store
                .call_status(small)
                .iter()
                .any(|r| r.succ_cnt == 5)
                .then_some(())
        },
    );

    let frozen = Frozen::freeze(&primary);
    // The small route's final statistics, handed over while the primary is frozen: written into
    // its socket, which takes them and never reads them.
    for _ in 0..6 {
        client.report(small.modid, small.cmdid, host(1), 0).unwrap();
    }
    for _ in 0..3 {
        client.report(small.modid, small.cmdid, host(1), 1).unwrap();
    }
    // Reports on the big routes until the agent notices the primary reads nothing.
    let mut reported = vec![0u32; BIG_ROUTES as usize];
    eventually(
        "the report uplink fails over from the frozen reporter",
        Duration::from_secs(30),
        || {
            for (n, cmdid) in reported.iter_mut().zip(1..=BIG_ROUTES) {
                let key = big_route(cmdid);
                client.report(key.modid, key.cmdid, big_host(0), 0).unwrap();
                *n += 1;
            }
            (agent_stat(
                &agent,
                "lars_agent_uplink_failovers_total",
                &[("uplink", "report")],
            ) >= 1)
                .then_some(())
        },
    );
    assert_eq!(
        agent_stat(
            &agent,
            "lars_agent_uplink_liveness_failures_total",
            &[("uplink", "report"), ("reason", "write_stall")]
        ),
        1
    );

    // Every route's final statistics reach the store through the backup.
    eventually(
        "the small route's final statistics are stored",
        Duration::from_secs(10),
        || {
            let rows = store.call_status(small);
            rows.iter()
                .any(|r| (r.succ_cnt, r.err_cnt) == (11, 3))
                .then_some(())
        },
    );
    for (&n, cmdid) in reported.iter().zip(1..=BIG_ROUTES) {
        let key = big_route(cmdid);
        eventually(
            &format!("{key}'s final statistics are stored ({n} successes on its first host)"),
            Duration::from_secs(10),
            || {
                let rows = store.call_status(key);
                let first = rows
                    .iter()
                    .find(|r| (r.ip, r.port) == (big_host(0).ip_bits(), big_host(0).port))?;
                (rows.len() == usize::from(BIG_HOSTS) && first.succ_cnt == n).then_some(())
            },
        );
    }
    drop(frozen);
}
