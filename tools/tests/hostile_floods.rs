//! The whole system under connection floods: lars-dns and lars-reporter, each with a small
//! `maxConn`, are held by thousands of connections that never send a byte and thousands that
//! announce a 64 KiB frame and stop. A real `lars-agent` started afterwards is served by both
//! within a few seconds: a caller gets the route's host through it, and the statistics of the
//! caller's reports are stored under the agent's address. Meanwhile the flood connections are
//! closed by the services' deadlines or evicted, and neither service's memory grows past a bound.

mod common;

use lars_service::testing::hostile::{
    FLOOD, RSS_GROWTH_BOUND, flood, flood_size, unfinished_frame, vm_rss_bytes,
};
use lars_service::testing::{ServiceProcess, eventually, workspace_binary};
use lars_store::testing::TestDb;
use lars_wire::{Client, ClientConfig, HostAddr, RouteKey};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// `maxConn` of both services.
const MAX_CONN: usize = 100;
/// How long the agent may take to be served once it starts: a few seconds, as the hygiene rules
/// promise, with room for a loaded test machine.
const SERVED_WITHIN: Duration = Duration::from_secs(10);
/// How long the services may take to close what a flood left.
const CLOSED_WITHIN: Duration = Duration::from_secs(30);
/// The route the caller asks for.
const KEY: RouteKey = RouteKey::new(31, 7);

/// The `[reactor]` section both services share: small `maxConn`, short deadlines, every
/// connection of the flood (all from 127.0.0.1, like the agent) allowed from one peer.
fn reactor() -> String {
    format!(
        "[reactor]\nport = 0\nmaxConn = {MAX_CONN}\nframe_timeout_ms = 1000\n\
         idle_timeout_ms = 2000\nmax_conn_per_peer = {}\nmax_pending_bytes = {}\n\
         [metrics]\naddr = \"127.0.0.1:0\"\n",
        4 * FLOOD,
        16 * 65535
    )
}

fn start(package: &str, dir: &Path, db: &TestDb) -> ServiceProcess {
    let config = dir.join(format!("{package}.toml"));
    std::fs::write(&config, reactor()).unwrap();
    let binary = workspace_binary(env!("CARGO_MANIFEST_DIR"), package, package);
    ServiceProcess::start(
        &binary,
        &[],
        &[
            "--config",
            config.to_str().unwrap(),
            "--store",
            &db.url_string(),
        ],
    )
}

/// A flooded service: its process, address and metric prefix.
struct Flooded<'a> {
    service: &'a ServiceProcess,
    addr: SocketAddr,
    prefix: &'static str,
    rss_before: u64,
}

impl Flooded<'_> {
    fn closed(&self, reason: &str) -> f64 {
        let name = format!("{}_connections_closed_total", self.prefix);
        self.service
            .scrape()
            .get(&name, &[("reason", reason)])
            .unwrap_or(0.0)
    }
}

fn flooded<'a>(service: &'a ServiceProcess, prefix: &'static str) -> Flooded<'a> {
    Flooded {
        service,
        addr: service.field("addr").parse().unwrap(),
        prefix,
        rss_before: vm_rss_bytes(service.pid()),
    }
}

#[test]
fn a_real_agent_is_served_and_its_statistics_stored_while_floods_hold_dns_and_reporter() {
    let (db, dir) = (TestDb::sqlite(), tempfile::tempdir().unwrap());
    let host = HostAddr::new(Ipv4Addr::new(10, 31, 0, 1), 9031);
    db.run(move |store| async move { store.add_host(KEY, host).await.unwrap() });
    let dns = start("lars-dns", dir.path(), &db);
    let reporter = start("lars-reporter", dir.path(), &db);
    let services = [
        flooded(&dns, "lars_dns"),
        flooded(&reporter, "lars_reporter"),
    ];

    // Four floods in all (idle, then half-sent, on each service), within the test's file limit.
    let n = flood_size(4 * FLOOD, 400) / 4;
    let mut hostile: Vec<TcpStream> = Vec::new();
    for service in &services {
        hostile.extend(flood(service.addr, n, &[]));
    }
    let get_route_request = 1;
    let report_status_request = 3;
    hostile.extend(flood(
        services[0].addr,
        n,
        &unfinished_frame(get_route_request, 5),
    ));
    hostile.extend(flood(
        services[1].addr,
        n,
        &unfinished_frame(report_status_request, 5),
    ));

    // The floods are still open (the test holds every socket) when the agent starts.
    let started = Instant::now();
    let (agent, _agent_dir) = common::agent(services[0].addr.port(), services[1].addr.port());
    let mut client = Client::new(ClientConfig {
        base_port: agent.field("base_port").parse().unwrap(),
        timeout: Duration::from_millis(500),
        ..ClientConfig::default()
    })
    .unwrap();
    let picked = eventually("the agent serves the route from dns", SERVED_WITHIN, || {
        client.get_host(KEY.modid, KEY.cmdid).ok()
    });
    assert_eq!(picked, host);
    for retcode in [0, 0, 0, 0, 1] {
        client
            .report(KEY.modid, KEY.cmdid, picked, retcode)
            .unwrap();
    }
    let row = eventually("the agent's statistics are stored", SERVED_WITHIN, || {
        let rows = db.run(|store| async move {
            store
                .load_call_status(Some(KEY.modid), Some(KEY.cmdid))
                .await
                .unwrap()
        });
        rows.into_iter().find(|r| (r.succ_cnt, r.err_cnt) == (4, 1))
    });
    let served_after = started.elapsed();
    assert_eq!((row.ip, row.port), (u32::from(host.ip), host.port));
    assert_eq!(
        row.caller,
        u32::from(Ipv4Addr::LOCALHOST),
        "under the agent's own address"
    );

    for service in &services {
        let grown = vm_rss_bytes(service.service.pid()).saturating_sub(service.rss_before);
        assert!(
            grown < RSS_GROWTH_BOUND,
            "{} VmRSS grew by {grown} bytes under the floods",
            service.prefix
        );
        // Every flood connection is evicted by a later connection or closed at its deadline.
        eventually(
            &format!("{} closes every flood connection", service.prefix),
            CLOSED_WITHIN,
            || {
                let closed = service.closed("evicted")
                    + service.closed("idle")
                    + service.closed("frame_timeout");
                closed >= 2.0 * n as f64
            },
        );
        assert!(service.closed("idle") + service.closed("frame_timeout") > 0.0);
    }
    // The agent's uplinks stayed up: nothing closed them in favour of the flood.
    let stats_addr = agent.field("stats");
    let samples =
        lars_service::metrics::scrape(&stats_addr, Duration::from_secs(5)).expect("agent metrics");
    for uplink in ["dns", "report"] {
        assert_eq!(
            samples.get("lars_agent_uplink_up", &[("uplink", uplink)]),
            Some(1.0),
            "{uplink} uplink is up"
        );
        assert_eq!(
            samples.get("lars_agent_uplink_reconnects_total", &[("uplink", uplink)]),
            Some(0.0),
            "{uplink} uplink never had to reconnect"
        );
    }
    eprintln!(
        "served and stored {served_after:?} after the agent started, with {} flood connections \
         open",
        hostile.len()
    );
    drop(hostile);
}
