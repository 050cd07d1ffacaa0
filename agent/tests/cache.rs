//! The route cache across restarts, as processes over real sockets: an agent that served routes
//! from lars-dns, stopped (SIGKILL or SIGTERM) while lars-dns is down and started again on the
//! same `state_dir`, answers its first `get_host` from the cache; a cache file that is corrupt,
//! of another version or too old is named in a warning and ignored.

mod common;

use common::{DEFAULT_IO, System, eventually};
use lars_wire::{ClientError, HostAddr, RetCode, RouteKey};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Writes follow changes within a tick, so a test need not wait for `cache_interval`.
const FAST: &str = "cache_interval_ms = 100";

/// Only the first change and a clean stop can be written.
const HOURLY: &str = "cache_interval_ms = 3600000";

fn host(last: u8) -> HostAddr {
    HostAddr::new(Ipv4Addr::new(10, 9, 0, last), 7000 + u16::from(last))
}

fn cache_file(system: &System) -> PathBuf {
    system.state_dir().join(lars_agent::ROUTE_CACHE_FILE)
}

/// Asks for each route until the agent serves it from dns.
fn serve(system: &System, keys: &[(i32, i32)]) {
    let mut client = system.client();
    for &(modid, cmdid) in keys {
        let _ = client.get_host(modid, cmdid);
        eventually("the route is served", Duration::from_secs(5), || {
            client.get_host(modid, cmdid).ok()
        });
    }
}

fn wait_for_cached_routes(system: &System, routes: u64) {
    eventually(
        "the route cache holds the routes",
        Duration::from_secs(5),
        || (system.stat("lars_agent_cache_routes", &[]) == routes).then_some(()),
    );
}

#[test]
fn an_agent_killed_while_dns_is_down_serves_its_routes_from_the_cache_at_its_first_request() {
    let mut system = System::start_with(DEFAULT_IO, FAST);
    system.add_host(1, 1, host(1));
    system.add_host(1, 1, host(2));
    system.add_host(2, 3, host(3));
    serve(&system, &[(1, 1), (2, 3)]);
    let mut client = system.client();
    eventually(
        "both hosts of (1, 1) arrive",
        Duration::from_secs(5),
        || (client.get_route(1, 1).ok()?.len() == 2).then_some(()),
    );
    wait_for_cached_routes(&system, 2);
    assert!(cache_file(&system).is_file());

    system.dns.take().unwrap().kill();
    system.agent.take().unwrap().kill();
    system.start_agent(&[], FAST);

    let mut client = system.client();
    let first = client
        .get_host(1, 1)
        .expect("the first request is answered from the cache");
    assert!(first == host(1) || first == host(2), "{first}");
    assert_eq!(client.get_host(2, 3).expect("from the cache"), host(3));
    assert_eq!(system.stat("lars_agent_cache_loaded_routes_total", &[]), 2);
    eventually("both routes count as stale", Duration::from_secs(5), || {
        (system.stat_sum("lars_agent_routes_stale") == 2).then_some(())
    });
    let replies = system.agent_stats();
    assert_eq!(
        replies.sum("lars_agent_replies_total", &[("retcode", "succ")]),
        2.0
    );
    assert_eq!(
        replies.sum("lars_agent_replies_total", &[("retcode", "noexist")]),
        0.0,
        "no NOEXIST after the restart"
    );

    // dns comes back: the cached routes were subscribed at start, so dns answers them without a
    // caller asking, and they are no longer stale.
    system.start_dns();
    eventually(
        "dns answers the cached routes",
        Duration::from_secs(10),
        || (system.stat_sum("lars_agent_routes_stale") == 0).then_some(()),
    );
    assert!(system.stat_sum("lars_agent_route_updates_total") >= 2);
}

#[test]
fn a_clean_stop_writes_the_routes_a_restart_then_serves_at_once() {
    let mut system = System::start_with(DEFAULT_IO, HOURLY);
    system.add_host(4, 4, host(4));
    system.add_host(5, 5, host(5));
    serve(&system, &[(4, 4)]);
    wait_for_cached_routes(&system, 1);
    // A second route held within the hour: only the stop can write it.
    serve(&system, &[(5, 5)]);
    assert_eq!(system.stat("lars_agent_cache_writes_total", &[]), 1);
    assert_eq!(system.stat("lars_agent_cache_routes", &[]), 1);

    system.dns.take().unwrap().kill();
    let status = system.agent.take().unwrap().terminate();
    assert!(status.success(), "{status}");
    system.start_agent(&[], HOURLY);

    let mut client = system.client();
    assert_eq!(client.get_host(5, 5).expect("written at the stop"), host(5));
    assert_eq!(client.get_host(4, 4).expect("written first"), host(4));
    assert_eq!(system.stat("lars_agent_cache_loaded_routes_total", &[]), 2);
}

#[test]
fn a_corrupt_old_or_foreign_cache_is_named_ignored_and_routes_come_from_dns() {
    let mut system = System::start_with(DEFAULT_IO, FAST);
    system.add_host(6, 6, host(6));
    let path = cache_file(&system);
    // What the cache would hold, with a host dns does not have: served only if the file is used.
    let stray = [host(99)];
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let good = lars_agent::encode_route_cache([(RouteKey::new(6, 6), &stray[..])], now_ms);
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 3);
    let mut version = good.clone();
    version[8..12].copy_from_slice(&2u32.to_le_bytes());
    let two_days_ago = now_ms - 2 * 86_400_000;
    let old = lars_agent::encode_route_cache([(RouteKey::new(6, 6), &stray[..])], two_days_ago);
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();

    for (what, bytes, reason) in [
        ("random bytes", random, "not a route cache"),
        ("a truncated file", truncated, "truncated"),
        ("another version", version, "version 2"),
        ("a file two days old", old, "cache_max_age_secs"),
    ] {
        system.agent.take().unwrap().kill();
        std::fs::create_dir_all(system.state_dir()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        system.start_agent(&[], FAST);
        let line = system
            .agent()
            .wait_for_line("route cache ignored", Duration::from_secs(5));
        assert!(
            line.contains(&path.display().to_string()) && line.contains(reason),
            "{what}: {line}"
        );
        assert_eq!(
            system.stat("lars_agent_cache_loaded_routes_total", &[]),
            0,
            "{what}"
        );
        let mut client = system.client();
        assert!(
            matches!(
                client.get_host(6, 6),
                Err(ClientError::Refused(RetCode::NoExist))
            ),
            "{what}: the first request finds nothing"
        );
        let served = eventually("dns serves the route", Duration::from_secs(5), || {
            client.get_host(6, 6).ok()
        });
        assert_eq!(served, host(6), "{what}");
    }
}
