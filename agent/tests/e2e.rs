//! The agent end to end, as processes over real sockets: real `lars-dns` and `lars-reporter` on
//! the embedded store, the `lars` CLI for route edits, and the caller's client library.

mod common;

on_both_drivers!(
    first_get_host_is_noexist_then_the_route_is_served_and_edits_arrive,
    reports_reach_the_reporters_store,
    dns_down_keeps_answers_and_changes_made_meanwhile_arrive_soon_after_it_is_back,
    a_reporter_restart_loses_no_routes_final_statistics,
);

use common::{System, eventually, served};
use lars_store::{CallStatusRow, Store};
use lars_wire::HostAddr;
use lars_wire::{ClientError, RetCode};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

fn host(last: u8) -> HostAddr {
    HostAddr::new(Ipv4Addr::new(10, 7, 0, last), 8000 + u16::from(last))
}

fn routes(client: &mut lars_wire::Client, modid: i32, cmdid: i32) -> Vec<HostAddr> {
    let mut hosts = client.get_route(modid, cmdid).expect("get_route answers");
    hosts.sort_by_key(|h| (h.ip, h.port));
    hosts
}

fn first_get_host_is_noexist_then_the_route_is_served_and_edits_arrive(io: &'static str) {
    let system = System::start_on(io);
    system.add_host(1, 1, host(1));
    system.add_host(1, 1, host(2));
    let mut client = system.client();
    assert!(matches!(
        client.get_host(1, 1),
        Err(ClientError::Refused(RetCode::NoExist))
    ));
    let picked = eventually(
        "the route reaches the agent",
        Duration::from_secs(5),
        || client.get_host(1, 1).ok(),
    );
    assert!(picked == host(1) || picked == host(2));
    // dns may have taken its snapshot between the two adds; the second host is then pushed.
    eventually("both hosts arrive", Duration::from_secs(5), || {
        (routes(&mut client, 1, 1) == vec![host(1), host(2)]).then_some(())
    });

    system.add_host(1, 1, host(3));
    eventually("an added host arrives", Duration::from_secs(5), || {
        (routes(&mut client, 1, 1).len() == 3).then_some(())
    });
    system.lars(&[
        "route",
        "del",
        "1",
        "1",
        &host(1).ip.to_string(),
        &host(1).port.to_string(),
    ]);
    eventually("a removed host goes", Duration::from_secs(5), || {
        (routes(&mut client, 1, 1) == vec![host(2), host(3)]).then_some(())
    });
    system.lars(&["route", "del", "1", "1"]);
    eventually("a removed route empties", Duration::from_secs(5), || {
        matches!(
            client.get_host(1, 1),
            Err(ClientError::Refused(RetCode::NoExist))
        )
        .then_some(())
    });
}

fn reports_reach_the_reporters_store(io: &'static str) {
    let system = System::start_on(io);
    system.add_host(2, 5, host(1));
    let mut client = system.client();
    let picked = served(&mut client, 2, 5);
    for _ in 0..7 {
        client.report(2, 5, picked, 0).unwrap();
    }
    client.report(2, 5, picked, 1).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = runtime.block_on(Store::open(&system.store)).unwrap();
    let row: CallStatusRow = eventually("statistics stored", Duration::from_secs(5), || {
        let rows = runtime
            .block_on(store.load_call_status(Some(2), Some(5)))
            .ok()?;
        rows.into_iter().find(|r| r.succ_cnt == 7 && r.err_cnt == 1)
    });
    assert_eq!((row.ip, row.port), (u32::from(picked.ip), picked.port));
    assert_eq!(row.caller, u32::from(Ipv4Addr::LOCALHOST));
    assert!(!row.overload);
}

fn dns_down_keeps_answers_and_changes_made_meanwhile_arrive_soon_after_it_is_back(
    io: &'static str,
) {
    let mut system = System::start_on(io);
    system.add_host(3, 3, host(1));
    let mut client = system.client();
    served(&mut client, 3, 3);

    system.dns.take().unwrap().kill();
    // Served from the agent's cache, without an error, while dns is gone.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert_eq!(
            client.get_host(3, 3).expect("answered from the cache"),
            host(1)
        );
    }
    eventually(
        "the agent notices dns is gone",
        Duration::from_secs(5),
        || (system.stat("lars_agent_uplink_up", &[("uplink", "dns")]) == 0).then_some(()),
    );
    system.add_host(3, 3, host(2));
    // Let the reconnect backoff reach its longest wait (100, 200, 400, 800, then 1000 ms): the
    // change must still arrive within one longest wait of dns coming back.
    let failures = system.stat("lars_agent_uplink_failures_total", &[("uplink", "dns")]);
    eventually(
        "the dns uplink's backoff reaches its longest wait",
        Duration::from_secs(10),
        || {
            (system.stat("lars_agent_uplink_failures_total", &[("uplink", "dns")]) >= failures + 4)
                .then_some(())
        },
    );

    system.start_dns();
    let back = Instant::now();
    eventually(
        "the change made while dns was down",
        Duration::from_secs(2),
        || (routes(&mut client, 3, 3).len() == 2).then_some(()),
    );
    println!(
        "change arrived {:?} after lars-dns was back",
        back.elapsed()
    );
    assert!(system.stat("lars_agent_uplink_reconnects_total", &[("uplink", "dns")]) >= 1);
}

fn a_reporter_restart_loses_no_routes_final_statistics(io: &'static str) {
    let mut system = System::start_on(io);
    system.add_host(4, 4, host(1));
    let mut client = system.client();
    let picked = served(&mut client, 4, 4);
    for _ in 0..5 {
        client.report(4, 4, picked, 0).unwrap();
    }
    system.reporter.take().unwrap().kill();
    // These are the final statistics; they are handed over while the reporter is down.
    for _ in 0..6 {
        client.report(4, 4, picked, 0).unwrap();
    }
    client.report(4, 4, picked, 3).unwrap();
    eventually(
        "the agent holds statistics for the reporter it lost",
        Duration::from_secs(5),
        || {
            (system.stat("lars_agent_uplink_up", &[("uplink", "report")]) == 0
                && system.stat("lars_agent_uplink_pending", &[("uplink", "report")]) >= 1)
                .then_some(())
        },
    );
    system.start_reporter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = runtime.block_on(Store::open(&system.store)).unwrap();
    eventually(
        "the final statistics are stored",
        Duration::from_secs(5),
        || {
            let rows = runtime
                .block_on(store.load_call_status(Some(4), Some(4)))
                .ok()?;
            rows.into_iter()
                .find(|r| r.succ_cnt == 11 && r.err_cnt == 1)
        },
    );
}
