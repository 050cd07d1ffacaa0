//! The README's first command, `./run_lars demo`, finishes on its own and tells its story: a
//! failing host is overloaded, probed, and recovers.

use std::process::Command;

#[test]
fn the_demo_shows_a_host_overloaded_and_recovered() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../run_lars");
    let out = Command::new("bash")
        .args([script, "--debug", "demo"])
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    for step in [
        "host overloaded",
        "host recovered",
        "demo done",
        "stopped dns",
    ] {
        assert!(
            stdout.contains(step),
            "the demo did not show `{step}`:\n{stdout}\n{stderr}"
        );
    }
    // It names every service's metrics endpoint, on ports the OS picked rather than the shipped
    // 7788/7789/8890 a running Lars would hold.
    for service in ["lars-dns", "lars-reporter", "lars-agent"] {
        let named = format!("{service} http://127.0.0.1:");
        let port = stdout
            .split_once(&named)
            .and_then(|(_, rest)| rest.split_once("/metrics"))
            .and_then(|(port, _)| port.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("the demo did not print `{named}PORT/metrics`:\n{stdout}"));
        assert!(![7788, 7789, 8890].contains(&port), "{service} on {port}");
    }
    // The failing host is taken out of the rotation: picked far less often than the others while
    // it fails, by the classic caller and then by the fast one.
    let windows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("calls   101-150"))
        .collect();
    assert_eq!(windows.len(), 2, "two simulator runs:\n{stdout}");
    assert!(
        windows[0].contains("10.0.0.3:9003 x4") || windows[0].contains("10.0.0.3:9003 x5"),
        "{}",
        windows[0]
    );
    assert!(
        stdout.contains("through the fast path"),
        "no fast-path run:\n{stdout}"
    );
    let fast_picks: u32 = windows[1]
        .split("10.0.0.3:9003 x")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        (3..=8).contains(&fast_picks),
        "the fast caller probes the failing host only: {}",
        windows[1]
    );
}
