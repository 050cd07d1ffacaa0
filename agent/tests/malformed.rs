//! Bad input never knocks the agent over: 100,000 malformed datagrams of many kinds are all
//! dropped and counted while a concurrent caller's requests keep being answered correctly.

mod common;

on_both_drivers!(malformed_datagrams_are_dropped_and_counted_while_callers_are_served,);

use common::{System, eventually, served};
use lars_wire::HostAddr;
use lars_wire::client::ClientError;
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const DATAGRAMS: usize = 100_000;
const BURST: usize = 500;
const BURST_BYTES: usize = 96 * 1024;

fn malformed_kinds() -> Vec<(&'static str, Vec<u8>)> {
    let frame = |msgid: i32, msglen: i32, body: &[u8]| {
        [&msgid.to_le_bytes()[..], &msglen.to_le_bytes()[..], body].concat()
    };
    vec![
        ("empty", Vec::new()),
        ("7 bytes", vec![4, 0, 0, 0, 0, 0, 0]),
        ("length says more", frame(4, 10, &[0x08, 0x01])),
        ("length says less", frame(4, 1, &[0x08, 0x01, 0x10])),
        ("negative length", frame(4, -1, &[])),
        ("unknown msgid", frame(42, 0, &[])),
        ("msgid the agent sends", frame(5, 0, &[])),
        ("undecodable body", frame(4, 2, &[0x08, 0xff])),
        ("truncated nested host", frame(6, 3, &[0x1a, 0x05, 0x08])),
        ("64 KiB", {
            let mut big = frame(4, 65499, &[]);
            big.resize(65507, 0xee);
            big
        }),
    ]
}

fn malformed_datagrams_are_dropped_and_counted_while_callers_are_served(io: &'static str) {
    let system = System::start_on(io);
    let h = HostAddr::new(Ipv4Addr::new(10, 9, 9, 9), 9999);
    system.add_host(7, 7, h);
    served(&mut system.client(), 7, 7);

    let done = Arc::new(AtomicBool::new(false));
    let caller = {
        let done = done.clone();
        let mut client = system.client();
        std::thread::spawn(move || {
            // Every answer must be the right host. A request may time out: the flood fills the
            // shard sockets' kernel receive buffers, where the kernel drops whatever comes next,
            // a caller's datagram included (UDP, not the agent); the caller then asks again, as
            // Lars callers do.
            let (mut answered, mut timed_out) = (0u64, 0u64);
            while !done.load(Ordering::Relaxed) {
                match client.get_host(7, 7) {
                    Ok(got) => {
                        assert_eq!(got, h, "a wrong answer during the flood");
                        answered += 1;
                    }
                    Err(ClientError::Timeout { .. }) => timed_out += 1,
                    Err(e) => panic!("during the flood: {e}"),
                }
            }
            (answered, timed_out)
        })
    };

    let base_port: u16 = system.agent().field("base_port").parse().unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let kinds = malformed_kinds();
    let mut sent = 0;
    while sent < DATAGRAMS {
        // A burst stays well inside a socket's receive buffer (the default is 208 KiB).
        let mut bytes_in_burst = 0;
        let mut burst = 0;
        while sent < DATAGRAMS && burst < BURST && bytes_in_burst < BURST_BYTES {
            let (_, bytes) = &kinds[sent % kinds.len()];
            // Every shard gets its share.
            let port = base_port + (sent % 3) as u16;
            sender.send_to(bytes, ("127.0.0.1", port)).unwrap();
            bytes_in_burst += bytes.len() + 64;
            burst += 1;
            sent += 1;
        }
        // Paced on the agent's own count, so the kernel never drops one for a full buffer.
        eventually(
            "the agent counts the burst",
            Duration::from_secs(10),
            || (system.stat_sum("lars_agent_drops_total") as usize >= sent).then_some(()),
        );
    }
    done.store(true, Ordering::Relaxed);
    let (answered, timed_out) = caller.join().expect("the caller saw only correct answers");
    assert!(
        answered > 0,
        "no answer during the flood ({timed_out} timeouts)"
    );
    assert_eq!(
        system.stat_sum("lars_agent_drops_total") as usize,
        DATAGRAMS
    );
    let stats = system.agent_stats();
    for reason in [
        "short",
        "bad_length",
        "unknown_msgid",
        "unexpected_msgid",
        "bad_body",
    ] {
        let n = stats.sum("lars_agent_drops_total", &[("reason", reason)]);
        assert!(n > 0.0, "no drop counted as {reason}");
    }
    // And the worker serves on after it.
    served(&mut system.client(), 7, 7);
}
