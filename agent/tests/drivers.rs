//! Choosing the I/O driver, as operators see it: `auto` runs `io-uring` where io_uring works and
//! falls back to `portable` — with one warning naming why — where it does not (a seccomp profile
//! blocking `io_uring_setup`, or the probe's test hook); a forced `io-uring` that cannot start
//! makes `lars-agent` exit non-zero naming the cause, and never say it is serving.

mod common;

use common::{System, binary, driver_of, drivers_when_ready, served, start};
use lars_wire::HostAddr;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The warning `auto` logs when it falls back.
const FALLBACK: &str = "io_uring cannot be set up; the workers run the portable driver";

/// An agent config on OS-chosen ports with `[agent] io = io`, written under `dir`.
fn config(dir: &tempfile::TempDir, io: &str) -> String {
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        format!("[agent]\nbase_port = 0\nstats_addr = \"127.0.0.1:0\"\nio = \"{io}\"\n"),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

/// `lars-agent --config config` with a seccomp filter that fails `io_uring_setup` with EPERM,
/// installed in the child between fork and exec, as a container runtime's profile would.
fn agent_without_io_uring(config: &str) -> Command {
    let mut command = Command::new(binary("lars-agent"));
    command.args(["--config", config]).env("RUST_LOG", "info");
    let filter = seccomp::deny_io_uring_setup();
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which
    // is async-signal-safe, on a filter built before the fork (it allocates nothing).
    unsafe {
        command.pre_exec(move || seccomp::install(&filter));
    }
    command
}

#[test]
fn auto_runs_io_uring_where_it_works() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start("lars-agent", &[], &["--config", &config(&dir, "auto")]);
    let drivers = drivers_when_ready(agent.field("stats").parse().unwrap());
    assert!(drivers.iter().all(|d| d == "io-uring"), "{drivers:?}");
    assert_eq!(agent.field("io"), "io-uring");
    assert!(!agent.log().iter().any(|l| l.contains(FALLBACK)));
}

#[test]
fn auto_falls_back_to_portable_when_the_probe_is_told_to_fail() {
    let mut system = System::start_on("auto");
    system.agent.take();
    system.start_agent(&["env", "LARS_AGENT_FORCE_URING_FAILURE=1"], "");
    let agent = system.agent();
    let stats = system.agent_stats();
    for worker in 0..system.stat("lars_agent_workers", &[]) {
        assert_eq!(driver_of(&stats, worker).as_deref(), Some("portable"));
    }
    assert_eq!(agent.field("io"), "portable");
    let warnings: Vec<_> = agent
        .log()
        .into_iter()
        .filter(|l| l.contains(FALLBACK))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("WARN") && warnings[0].contains("LARS_AGENT_FORCE_URING_FAILURE"),
        "{}",
        warnings[0]
    );

    // And it serves on the portable driver.
    let h = HostAddr::new(Ipv4Addr::new(10, 1, 2, 3), 4567);
    system.add_host(5, 6, h);
    assert_eq!(served(&mut system.client(), 5, 6), h);
}

#[test]
fn auto_falls_back_to_portable_under_a_seccomp_profile_blocking_io_uring() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = agent_without_io_uring(&config(&dir, "auto"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let serving = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains("lars-agent serving") => break line,
            Ok(line) => log.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("lars-agent did not start: {log:#?}");
            }
        }
    };
    let field = |key: &str| {
        serving
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {serving}"))
            .to_string()
    };
    let stats: SocketAddr = field("stats").parse().unwrap();
    let drivers = drivers_when_ready(stats);
    let _ = child.kill();
    let _ = child.wait();

    assert!(drivers.iter().all(|d| d == "portable"), "{drivers:?}");
    assert_eq!(field("io"), "portable");
    let warnings: Vec<_> = log.iter().filter(|l| l.contains(FALLBACK)).collect();
    assert_eq!(warnings.len(), 1, "{log:#?}");
    assert!(
        warnings[0].contains("cannot build an io_uring")
            && warnings[0].contains("Operation not permitted"),
        "{}",
        warnings[0]
    );
}

#[test]
fn a_forced_io_uring_that_cannot_start_exits_non_zero_naming_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent_without_io_uring(&config(&dir, "io-uring"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(!stderr.contains("serving"), "{stderr}");
    for cause in [
        "starting lars-agent",
        "worker 0 cannot start its io-uring driver",
        "cannot build an io_uring",
        "Operation not permitted",
    ] {
        assert_eq!(
            stderr.matches(cause).count(),
            1,
            "`{cause}` once in: {stderr}"
        );
    }
}

/// A seccomp filter, in classic BPF, for the tests above.
mod seccomp {
    use libc::{
        BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, SECCOMP_RET_ALLOW,
        SECCOMP_RET_ERRNO, sock_filter,
    };

    /// The audit architecture of this build (`AUDIT_ARCH_*` of linux/audit.h).
    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xC000_003E;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xC000_00B7;

    /// Offsets in `struct seccomp_data`.
    const NR: u32 = 0;
    const ARCH: u32 = 4;

    fn statement(code: u32, k: u32) -> sock_filter {
        sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        }
    }

    fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
        sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        }
    }

    /// Allows every system call but `io_uring_setup`, which fails with EPERM.
    pub fn deny_io_uring_setup() -> Vec<sock_filter> {
        vec![
            statement(BPF_LD | BPF_W | BPF_ABS, ARCH),
            jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH, 1, 0),
            statement(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
            statement(BPF_LD | BPF_W | BPF_ABS, NR),
            jump(
                BPF_JMP | BPF_JEQ | BPF_K,
                libc::SYS_io_uring_setup as u32,
                0,
                1,
            ),
            statement(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | libc::EPERM as u32),
            statement(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        ]
    }

    /// Installs `filter` on the calling thread (and what it executes).
    pub fn install(filter: &[sock_filter]) -> std::io::Result<()> {
        let program = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr().cast_mut(),
        };
        // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes integers only; PR_SET_SECCOMP reads
        // `program`, which points at `filter`, both alive for the call.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &raw const program,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}
