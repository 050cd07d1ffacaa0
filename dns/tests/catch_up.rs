//! A slow agent is caught up, not cut off, over real TCP: an agent holding 100,000 routes that
//! stops reading while hundreds of route changes are made through the store gets, once it reads
//! again, the newest hosts of every changed key on the same connection, and the service owed it
//! no more than one mark per changed key meanwhile. And a stopping `lars-dns` does not wait for
//! an agent that reads nothing.

mod common;

use common::{TestAgent, TestDns, eventually, hosts, requests};
use lars_dns::DnsStats;
use lars_service::testing::ServiceProcess;
use lars_store::Store;
use lars_store::testing::TestDb;
use lars_wire::{HostAddr, RouteKey};
use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

fn host(a: u8, b: u8, port: u16) -> HostAddr {
    HostAddr::new(Ipv4Addr::new(10, 9, a, b), port)
}

/// Gives `key` `count` hosts at once (one statement, not one edit per host), before the dns starts.
async fn insert_hosts(store: &Store, key: RouteKey, count: usize) {
    let rows: Vec<String> = (0..count)
        .map(|i| format!("({}, {}, {}, 80)", key.modid, key.cmdid, 0x0A08_0000 + i))
        .collect();
    let sql = format!(
        "INSERT INTO RouteData (modid, cmdid, serverip, serverport) VALUES {}",
        rows.join(", ")
    );
    assert_eq!(store.execute_raw(&sql).await.unwrap(), count as u64);
}

/// The write queue of the test's dns: small, so the changes overflow it many times over.
const QUEUE: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_pauses_reading_gets_the_newest_of_every_changed_route_and_stays_connected() {
    // What a big agent holds, and how many of its routes change while it does not read.
    const SUBSCRIBED: i32 = 100_000;
    const CHANGED: i32 = 200;
    // Each changed key changes twice, so a connection that owed one frame per change would owe
    // twice as many as one that owes each key once.
    const ROUNDS: u8 = 2;
    // A big route (2,000 hosts, a 20 KB answer) asked over and over: 40 MB of answers, far more
    // than the socket buffers take, so they fill, then the answers' half of the queue.
    const FILLER: (i32, i32) = (71, 1);
    const FILLER_HOSTS: usize = 2_000;
    const FILLER_ASKS: usize = 2_000;
    let changed_key = |i: i32| RouteKey::new(70, i * (SUBSCRIBED / CHANGED));

    let db = TestDb::sqlite();
    let store = Store::open(&db.url()).await.unwrap();
    insert_hosts(&store, RouteKey::new(FILLER.0, FILLER.1), FILLER_HOSTS).await;
    let dns = TestDns::start(db.url(), |c| {
        c.dns.write_queue_frames = QUEUE;
        c.dns.version_poll_ms = 20;
        // Far longer than the pause: this agent is slow, not stalled.
        c.dns.stalled_reader_timeout_ms = 120_000;
    })
    .await;

    // The agent subscribes to its 100,000 routes, reading every answer.
    let (mut responses, mut writer) = TestAgent::connect(dns.addr).await.split();
    let asks = requests((0..SUBSCRIBED).map(|cmdid| (70, cmdid)));
    let asking = tokio::spawn(async move {
        writer
            .write_all(&asks)
            .await
            .expect("write the subscriptions");
        writer
    });
    for cmdid in 0..SUBSCRIBED {
        let answer = responses
            .next(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("answer {cmdid} of {SUBSCRIBED}"));
        assert_eq!((answer.modid, answer.cmdid), (70, cmdid));
    }
    let mut writer = asking.await.unwrap();
    assert_eq!(dns.get(|s| &s.subscriptions), SUBSCRIBED as u64);

    // Now it stops reading: its socket buffers fill with filler answers, then the answers' half
    // of its queue, and the service stops reading its requests.
    let filler = requests(std::iter::repeat_n(FILLER, FILLER_ASKS));
    let asking = tokio::spawn(async move {
        writer.write_all(&filler).await.expect("write the filler");
        writer
    });
    let stats = dns.stats.clone();
    eventually(
        "the agent is no longer read from",
        Duration::from_secs(20),
        || {
            let paused = DnsStats::get(&stats.paused) == 1;
            async move { paused }
        },
    )
    .await;

    // The routes change while it does not read.
    let mut newest: HashMap<RouteKey, BTreeSet<(Ipv4Addr, u16)>> = HashMap::new();
    let mut most_owed = 0;
    for round in 1..=ROUNDS {
        for i in 0..CHANGED {
            let key = changed_key(i);
            let added = host(round, (i % 250) as u8, 9000 + i as u16);
            store.add_host(key, added).await.unwrap();
            newest
                .entry(key)
                .or_default()
                .insert((added.ip, added.port));
            most_owed = most_owed.max(dns.get(|s| &s.owed_keys));
        }
    }
    let version = store.route_version().await.unwrap() as u64;
    let stats = dns.stats.clone();
    eventually(
        "the service has loaded every change and owes the agent some",
        Duration::from_secs(20),
        || {
            let loaded = DnsStats::get(&stats.version) == version;
            let owed = DnsStats::get(&stats.owed_keys);
            async move { (loaded && owed > 0).then_some(()) }
        },
    )
    .await;
    most_owed = most_owed.max(dns.get(|s| &s.owed_keys));
    assert!(
        most_owed <= CHANGED as u64,
        "owed {most_owed} keys for {CHANGED} changed routes"
    );
    assert_eq!(dns.get(|s| &s.slow_closed), 0);

    // It reads again: the filler answers, and the newest hosts of every changed key.
    let mut fillers = 0;
    let mut frames_for_changed = 0;
    let mut got: HashMap<RouteKey, BTreeSet<(Ipv4Addr, u16)>> = HashMap::new();
    while fillers < FILLER_ASKS || got != newest {
        let frame = responses
            .next(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| {
                let behind = newest
                    .iter()
                    .filter(|(k, v)| got.get(*k) != Some(*v))
                    .count();
                panic!(
                    "{fillers} of {FILLER_ASKS} filler answers, {behind} changed keys not newest"
                )
            });
        let key = RouteKey::new(frame.modid, frame.cmdid);
        if (frame.modid, frame.cmdid) == FILLER {
            assert_eq!(frame.host.len(), FILLER_HOSTS);
            fillers += 1;
        } else {
            assert!(newest.contains_key(&key), "a frame for unchanged {key:?}");
            frames_for_changed += 1;
            got.insert(key, hosts(&frame).into_iter().collect());
        }
    }
    assert_eq!(got.len(), CHANGED as usize);
    assert!(
        frames_for_changed < CHANGED * i32::from(ROUNDS),
        "{frames_for_changed} frames for {} changes: changes were not coalesced",
        CHANGED * i32::from(ROUNDS)
    );
    assert!(dns.get(|s| &s.caught_up) > 0, "the agent was caught up");
    let stats = dns.stats.clone();
    eventually("the agent owes nothing", Duration::from_secs(10), || {
        let owed = DnsStats::get(&stats.owed_keys);
        async move { owed == 0 }
    })
    .await;
    assert_eq!(dns.get(|s| &s.slow_closed), 0);
    assert_eq!(dns.get(|s| &s.connections), 1);

    // Still the same connection, still subscribed to all of it.
    let last = RouteKey::new(70, SUBSCRIBED - 1);
    store.add_host(last, host(9, 9, 9)).await.unwrap();
    let push = responses
        .next(Duration::from_secs(5))
        .await
        .expect("a push on the same connection");
    assert_eq!((push.modid, push.cmdid), (last.modid, last.cmdid));
    drop(asking.await.unwrap());
    dns.stop().await;
}

fn lars_dns() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lars-dns"))
}

/// SIGTERM with an agent connected that reads nothing (and has a full queue): the process still
/// exits, successfully, cutting that connection after the bounded drain.
#[test]
fn a_stopping_dns_cuts_an_agent_that_reads_nothing() {
    let db = TestDb::sqlite();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // One route of 4,000 hosts (a 40 KB answer): the 2,048 answers a queue holds are far more
    // than any socket buffers take, so an agent that reads nothing keeps its writer blocked.
    runtime.block_on(async {
        let store = Store::open(&db.url()).await.unwrap();
        insert_hosts(&store, RouteKey::new(40, 1), 4000).await;
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lars_dns.toml");
    // A stalled-reader timeout far beyond the test: only the shutdown can cut the agent.
    let text = format!(
        "[reactor]\nport = 0\n[metrics]\naddr = \"127.0.0.1:0\"\n[store]\nurl = \"{}\"\n\
         [dns]\nstalled_reader_timeout_ms = 600000\n",
        db.url_string()
    );
    std::fs::write(&config, text).unwrap();
    let dns = ServiceProcess::start(lars_dns(), &[], &["--config", config.to_str().unwrap()]);
    let addr: SocketAddr = dns.field("addr").parse().expect("addr parses");

    let mut stalled = std::net::TcpStream::connect(addr).unwrap();
    let flood = requests(std::iter::repeat_n((40, 1), 100_000));
    let flooding = std::thread::spawn(move || {
        use std::io::Write;
        // Ends when the whole flood is in the socket buffers or the service cuts the connection;
        // the socket is kept open (and unread) until the test ends.
        let _ = stalled.write_all(&flood);
        stalled
    });
    dns.wait_for_metric(
        "lars_dns_connections_paused",
        &[],
        Duration::from_secs(20),
        |v| v == 1.0,
    );

    dns.send_signal("-TERM");
    let cut = dns.wait_for_line("cutting the connection", Duration::from_secs(15));
    assert!(cut.contains("peer=127.0.0.1:"), "{cut}");
    let stopped = dns.wait_for_line("lars-dns stopped", Duration::from_secs(15));
    assert!(stopped.contains("drain_cut=1"), "{stopped}");
    let exit = dns.wait_for_exit(Duration::from_secs(15));
    assert!(exit.success(), "exit status {exit}");
    drop(flooding.join().unwrap());
}
