//! Push-empty protection end to end, as processes: real `lars-dns` and `lars-agent` on the
//! embedded store, the `lars` CLI for route edits, the caller's client library, and the agent's
//! metrics. A dns restarted on an empty database must not empty the agent's routes; a
//! `lars route del` must still reach it within 2 s.

mod common;

use common::{Service, System, binary, eventually, write_config};
use lars_store::StoreUrl;
use lars_store::testing::TestDb;
use lars_wire::client::Client;
use lars_wire::{ClientError, HostAddr, RetCode};
use std::net::Ipv4Addr;
use std::time::Duration;

const ROUTES: i32 = 4;
const MODID: i32 = 40;

fn host(cmdid: i32) -> HostAddr {
    HostAddr::new(Ipv4Addr::new(10, 40, 0, cmdid as u8), 9000)
}

fn edit(system: &System, op: &str, cmdid: i32) {
    let (modid, cmdid_s) = (MODID.to_string(), cmdid.to_string());
    let h = host(cmdid);
    let (ip, port) = (h.ip.to_string(), h.port.to_string());
    match op {
        "add" => system.lars(&["route", "add", &modid, &cmdid_s, &ip, &port]),
        _ => system.lars(&["route", "del", &modid, &cmdid_s]),
    };
}

/// Asks for every route once; each must be answered with its own host, never NOEXIST. Returns
/// how many were answered.
fn every_route_served(client: &mut Client) -> i32 {
    for cmdid in 1..=ROUTES {
        assert_eq!(
            client
                .get_host(MODID, cmdid)
                .expect("served, never NOEXIST"),
            host(cmdid)
        );
    }
    ROUTES
}

/// A system with `ROUTES` routes served by its agent, which runs with `lb` in `[loadbalance]`.
fn system_serving_routes(lb: &str) -> System {
    let mut system = System::start();
    for cmdid in 1..=ROUTES {
        edit(&system, "add", cmdid);
    }
    system.agent = None;
    system.start_agent(&[], &format!("[loadbalance]\n{lb}"));
    let mut client = system.client();
    for cmdid in 1..=ROUTES {
        eventually(
            "the route reaches the agent",
            Duration::from_secs(5),
            || client.get_host(MODID, cmdid).ok(),
        );
    }
    system
}

#[test]
fn dns_restarted_on_an_uninitialised_database_leaves_every_route_served() {
    // Routes re-asked every second; a dns that does not answer called dead after one.
    let mut system =
        system_serving_routes("update_timeout = 1\n[uplink]\nanswer_timeout_ms = 1000");
    let mut client = system.client();
    // A reachable MariaDB database without the Lars tables (a typo'd name someone created, an
    // operator's half-finished setup): lars-dns refuses to serve from it.
    let uninitialised = TestDb::mysql_empty();
    system.dns.take().unwrap().kill();
    let config = write_config(
        system.dir.path(),
        "lars-dns-uninitialised.toml",
        &format!(
            "[reactor]\nport = {}\n[metrics]\naddr = \"127.0.0.1:0\"\n[store]\nurl = \"{}\"\n\
             [dns]\nversion_poll_ms = 200\n",
            system.dns_port,
            uninitialised.url()
        ),
    );
    let dns = Service::start_unready(&binary("lars-dns"), &["--config", &config]);
    dns.wait_for_line(
        "not serving until the first load works",
        Duration::from_secs(10),
    );

    // The agent keeps every route while it finds the dns dead (connected, never answered)
    // twice over, so every route's update_timeout passed while nothing could answer it.
    let unanswered = || {
        system
            .agent_stats()
            .get(
                "lars_agent_uplink_liveness_failures_total",
                &[("uplink", "dns"), ("reason", "unanswered")],
            )
            .unwrap_or(0.0)
    };
    let before = unanswered();
    let mut answers = 0;
    eventually(
        "the agent finds the refusing dns dead twice",
        Duration::from_secs(20),
        || {
            answers += every_route_served(&mut client);
            (unanswered() >= before + 2.0).then_some(())
        },
    );
    assert!(answers >= ROUTES);
    assert!(
        !dns.log()
            .iter()
            .any(|l| l.contains("serving") && !l.contains("not serving")),
        "the dns served from an uninitialised database: {:#?}",
        dns.log()
    );
}

#[test]
fn dns_restarted_on_an_empty_database_leaves_every_route_served() {
    // Re-asked every second, so the agent sees the empty answers twice soon.
    let mut system = system_serving_routes("update_timeout = 1");
    let mut client = system.client();
    // An initialised Lars database without these routes: one edit made and undone.
    system.store = StoreUrl::Sqlite(system.dir.path().join("empty.db"));
    system.lars(&["init"]);
    edit(&system, "add", 99);
    edit(&system, "del", 99);
    system.dns.take().unwrap().kill();
    system.start_dns();

    let mut answers = 0;
    eventually("every route is held back", Duration::from_secs(20), || {
        answers += every_route_served(&mut client);
        (system.stat_sum("lars_agent_push_empty_held_total") == ROUTES as u64).then_some(())
    });
    assert_eq!(
        system.stat_sum("lars_agent_push_empty_kept_routes"),
        ROUTES as u64
    );
    // Held: the routes keep being served.
    for _ in 0..3 {
        for cmdid in 1..=ROUTES {
            assert_eq!(client.get_host(MODID, cmdid).ok(), Some(host(cmdid)));
        }
    }
    println!("{answers} answers, none NOEXIST");
}

#[test]
fn route_del_of_one_route_reaches_the_agent_and_deleting_most_one_by_one_works() {
    // The default update_timeout (15 s): a removal must not wait for it.
    let system = system_serving_routes("");
    let mut client = system.client();
    for cmdid in 1..ROUTES {
        edit(&system, "del", cmdid);
        eventually(
            "the removal reaches the agent",
            Duration::from_secs(2),
            || {
                matches!(
                    client.get_host(MODID, cmdid),
                    Err(ClientError::Refused(RetCode::NoExist))
                )
                .then_some(())
            },
        );
        assert!(client.get_route(MODID, cmdid).unwrap().is_empty());
    }
    assert_eq!(client.get_host(MODID, ROUTES).unwrap(), host(ROUTES));
    assert_eq!(system.stat_sum("lars_agent_push_empty_held_total"), 0);
    assert_eq!(system.stat_sum("lars_agent_push_empty_kept_routes"), 0);
}
