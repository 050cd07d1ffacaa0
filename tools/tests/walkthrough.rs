//! The README's walk-through, run as a new user would from a fresh copy of the repository:
//! `./run_lars start all`, then the plain `lars` commands with no `--store` (the route is added,
//! the agent hands out its host, the reporter's statistics show in `lars status`), the console
//! answers its login page at the URL start printed, and `./run_lars stop all` stops everything.
//!
//! The copy holds the files git tracks, as they are in the working tree. For speed it runs the
//! debug binaries of this workspace (`--debug`, `CARGO_TARGET_DIR` at this target directory;
//! a missing one is built first), and `--free-ports`, so it runs beside a running Lars and other
//! tests.
//! `HOME` is a fresh directory and `LARS_STORE` unset, so the store is the default file of a new
//! user.

use lars_service::testing::{eventually, http_get, workspace_binary};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// How long the agent may take to fetch a new route from lars-dns, and the reporter to store an
/// uploaded report (the agent uploads every second by default).
const SETTLE: Duration = Duration::from_secs(20);

/// The copy of the repository and the environment of a new user, stopping the services on drop
/// so a failing test leaves nothing running.
struct Clone {
    _dir: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    target: PathBuf,
}

impl Clone {
    /// Copies every tracked file of this repository (with its permissions) into a fresh directory.
    fn new(target: PathBuf) -> Clone {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let listed = Command::new("git")
            .args(["ls-files", "-z"])
            .current_dir(&repo)
            .output()
            .expect("run git ls-files");
        assert!(listed.status.success(), "git ls-files: {listed:?}");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lars-rs");
        for file in listed.stdout.split(|b| *b == 0).filter(|f| !f.is_empty()) {
            let file = std::str::from_utf8(file).expect("a UTF-8 path");
            let from = repo.join(file);
            if !from.is_file() {
                continue; // deleted in the working tree
            }
            let to = root.join(file);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("copy {file}: {e}"));
        }
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        Clone {
            _dir: dir,
            root,
            home,
            target,
        }
    }

    /// `program args` in the copy, as the new user.
    fn run(&self, program: &Path, args: &[&str]) -> Output {
        Command::new(program)
            .args(args)
            .current_dir(&self.root)
            .env("HOME", &self.home)
            .env("CARGO_TARGET_DIR", &self.target)
            .env_remove("LARS_STORE")
            .env_remove("XDG_STATE_HOME")
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", program.display()))
    }

    /// `./run_lars --debug --free-ports ARGS`; its stdout, after checking it succeeded.
    fn run_lars(&self, args: &[&str]) -> String {
        let script = self.root.join("run_lars");
        let out = self.run(&script, &[&["--debug", "--free-ports"][..], args].concat());
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "run_lars {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

impl Drop for Clone {
    fn drop(&mut self) {
        let _ = self.run(
            &self.root.join("run_lars"),
            &["--debug", "--free-ports", "stop", "all"],
        );
    }
}

/// The text after `marker` in `text` up to the end of its line.
fn after<'a>(text: &'a str, marker: &str) -> &'a str {
    let (_, rest) = text
        .split_once(marker)
        .unwrap_or_else(|| panic!("no `{marker}` in:\n{text}"));
    rest.lines().next().unwrap_or_default()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_readme_walk_through_works_from_a_fresh_copy() {
    // `lars` is this test's own build. The services are the test command's build of the
    // workspace when it made them, as run_lars itself would use them; only a missing one is
    // built here (a rebuild with this crate's features would only relink what is there).
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_lars")).parent().unwrap();
    for package in ["lars-dns", "lars-reporter", "lars-agent", "lars-console"] {
        if !bin_dir.join(package).is_file() {
            let built = workspace_binary(env!("CARGO_MANIFEST_DIR"), package, package);
            assert_eq!(built.parent(), Some(bin_dir), "{}", built.display());
        }
    }
    let clone = Clone::new(bin_dir.parent().unwrap().to_path_buf());

    // ./run_lars start all
    let started = clone.run_lars(&["start", "all"]);
    for service in ["dns", "reporter", "agent", "console"] {
        assert!(
            started.contains(&format!("started {service} (pid")),
            "{started}"
        );
    }
    let default_store = clone.home.join(".local/state/lars/lars.db");
    assert!(
        started.contains(&format!("store: sqlite://{}", default_store.display())),
        "the services use the new user's default store:\n{started}"
    );
    // export PATH="…:$PATH": where `lars` is.
    let path_dir = after(&started, "export PATH=\"");
    let path_dir = path_dir.split_once(":$PATH").expect("an export line").0;
    let lars = Path::new(path_dir).join("lars");
    assert!(lars.is_file(), "{}", lars.display());
    let console = after(&started, "log in at http://");
    let (console_addr, token) = console
        .split_once("/ with the one-time token ")
        .unwrap_or_else(|| panic!("no console URL and token in:\n{started}"));
    let console_addr: SocketAddr = console_addr.parse().unwrap();
    assert!(console_addr.ip().is_loopback());
    assert!(token.len() >= 16, "{token}");
    let base_port = after(&started, "lars --base-port ")
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();

    // lars route add 1 1 10.0.0.1 9000; lars route name 1 users; lars route name 1 1 login
    let add = clone.run(&lars, &["route", "add", "1", "1", "10.0.0.1", "9000"]);
    assert!(
        add.status.success() && text(&add).contains("added 10.0.0.1:9000 to route (1, 1)"),
        "{}",
        text(&add)
    );
    assert!(
        default_store.is_file(),
        "the route went to the services' store"
    );
    for args in [
        &["route", "name", "1", "users"][..],
        &["route", "name", "1", "1", "login"],
    ] {
        let out = clone.run(&lars, args);
        assert!(out.status.success(), "{}", text(&out));
    }

    // lars gethost 1 1: NOEXIST until the agent has fetched the route, then the host.
    let agent =
        |args: &[&str]| clone.run(&lars, &[&["--base-port", &base_port][..], args].concat());
    eventually("the agent hands out 10.0.0.1:9000", SETTLE, || {
        let out = agent(&["gethost", "1", "1"]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "10.0.0.1:9000"
    });

    // lars report 1 1 10.0.0.1 9000 0; lars status
    let report = agent(&["report", "1", "1", "10.0.0.1", "9000", "0"]);
    assert!(report.status.success(), "{}", text(&report));
    let row = eventually("lars status shows the reported call", SETTLE, || {
        let out = clone.run(&lars, &["status"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.contains("10.0.0.1:9000"))
            .map(str::to_string)
    });
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        (cells[0], cells[1], cells[3], cells[4], cells[5]),
        ("1", "1", "127.0.0.1", "1", "0"),
        "MODID CMDID HOST CALLER SUCC ERR: {row}"
    );
    assert!(row.ends_with("users/login"), "{row}");

    // The console at the URL start printed answers its login page.
    let login = http_get(console_addr, "/login");
    assert_eq!(login.status, 200, "{}", login.body);
    assert!(
        login.body.contains("Log in") && login.body.contains("type=\"password\""),
        "{}",
        login.body
    );

    // ./run_lars stop all
    let stopped = clone.run_lars(&["stop", "all"]);
    for service in ["console", "agent", "reporter", "dns"] {
        assert!(
            stopped.contains(&format!("stopped {service} (pid")),
            "{stopped}"
        );
    }
    let status = clone.run_lars(&["status"]);
    assert_eq!(status.matches(": stopped").count(), 4, "{status}");
}
