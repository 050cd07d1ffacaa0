//! Test support (feature `testing`): running the workspace's binaries as real processes, the
//! way the process-level tests of every crate do — find (and build, once per test process, so
//! it is never stale) a binary of any workspace package, start it, wait until it serves (its
//! metrics endpoint shows [`SERVING`] at 1; a process without an endpoint, until it logs that it
//! is serving), read `key=value` fields of its serving line, scrape its metrics, and stop it with
//! a signal or kill. Beside it: the one way to wait for something ([`eventually`]), binaries run
//! to completion and the command-line checks every service shares ([`command_line`]), the checks
//! every service's config type shares ([`config_file`]), services run as tasks inside the test
//! process ([`service_task`]), a plain HTTP GET ([`http`]), connections from a chosen loopback
//! address ([`connect_from`]), connection floods and `VmRSS` for the hygiene tests
//! ([`hostile`]), and
//! [`both_backends!`](crate::both_backends) for test bodies that run against each store backend.
//! Never used outside tests.

use crate::metrics::{SERVING, Samples};
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub mod command_line;
pub mod config_file;
pub mod connect_from;
pub mod eventually;
pub mod hostile;
pub mod http;
pub mod service_task;

pub use command_line::{Finished, assert_config_errors_named, assert_help_names, run};
pub use config_file::{
    assert_missing_config_is_named, assert_shipped_config_is_the_defaults, parse_config,
};
pub use connect_from::connect_from;
pub use eventually::{Outcome, eventually, eventually_async};
pub use http::{HttpAnswer, assert_idle_clients_do_not_block, assert_serves_metrics, http_get};
pub use service_task::ServiceTask;

/// Runs an `async fn(TestDb)` test body once per store backend, as the tests `NAME::mysql` and
/// `NAME::sqlite` on a two-thread tokio runtime; `both_backends!(blocking NAME)` does the same
/// for a plain `fn(TestDb)`. The expansion names `lars_store::testing::TestDb` and `tokio::test`,
/// so the calling crate needs `lars-store` (feature `testing`) and `tokio` as dev-dependencies.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mysql() {
                super::$name(lars_store::testing::TestDb::mysql()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(lars_store::testing::TestDb::sqlite()).await
            }
        }
    };
    (blocking $name:ident) => {
        mod $name {
            #[test]
            fn mysql() {
                super::$name(lars_store::testing::TestDb::mysql())
            }
            #[test]
            fn sqlite() {
                super::$name(lars_store::testing::TestDb::sqlite())
            }
        }
    };
}

/// How long a service may take to serve.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one scrape of a service under test may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a service logs when its metrics endpoint is bound ([`crate::metrics::endpoint`]).
const METRICS_LINE: &str = "metrics endpoint listening";

/// What a service logs once it serves.
const SERVING_LINE: &str = "serving";

/// How long a service may take to exit after SIGTERM or SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The path of binary `bin` of workspace package `package`, built with cargo the first time a
/// test process asks for it. `manifest_dir` is the asking crate's `CARGO_MANIFEST_DIR`.
pub fn workspace_binary(manifest_dir: &str, package: &str, bin: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if built
        .get_or_insert_with(HashSet::new)
        .insert(format!("{package}/{bin}"))
    {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        // Without the test's own CARGO_MANIFEST_DIR: ring's build script tracks that variable,
        // so inheriting it (a different value in each crate's tests) would rebuild ring and the
        // TLS stack above it on every alternation between crates and plain `cargo build`.
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", package, "--bin", bin])
            .env_remove("CARGO_MANIFEST_DIR")
            .current_dir(manifest_dir)
            .stdout(Stdio::null())
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building {package}/{bin} failed");
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/debug/deps/TEST-… → target/debug/BIN
    exe.parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(bin))
        .expect("target dir")
}

/// The stderr lines of a process as they arrive, and whether stderr has ended.
#[derive(Default)]
struct Log {
    state: Mutex<LogState>,
    grew: Condvar,
}

#[derive(Default)]
struct LogState {
    lines: Vec<String>,
    ended: bool,
}

impl Log {
    fn state(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, line: String) {
        self.state().lines.push(line);
        self.grew.notify_all();
    }

    fn end(&self) {
        self.state().ended = true;
        self.grew.notify_all();
    }

    fn lines(&self) -> Vec<String> {
        self.state().lines.clone()
    }

    fn ended(&self) -> bool {
        self.state().ended
    }

    /// The first line containing `needle`, waiting for it until `deadline`; `None` when the
    /// deadline passes or stderr ends first.
    fn find(&self, needle: &str, deadline: Instant) -> Option<String> {
        self.find_any(&[needle], deadline)
    }

    /// The first line containing any of `needles`, waiting as [`Log::find`] does.
    fn find_any(&self, needles: &[&str], deadline: Instant) -> Option<String> {
        let mut state = self.state();
        loop {
            if let Some(line) = state
                .lines
                .iter()
                .find(|l| needles.iter().any(|n| l.contains(n)))
            {
                return Some(line.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if state.ended || left.is_zero() {
                return None;
            }
            state = self
                .grew
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// The value of field `key` in a `key=value` log line.
fn line_field(line: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&prefix))
        .map(str::to_string)
}

/// A running service process with its stderr collected; killed when dropped.
pub struct ServiceProcess {
    name: String,
    child: Child,
    log: Arc<Log>,
    metrics: Option<SocketAddr>,
}

impl ServiceProcess {
    /// Starts `program` with `args` (under `prefix`, e.g. `["taskset", "-c", "0"]`) and waits
    /// until it serves: until its metrics endpoint shows [`SERVING`] at 1, or, for a process
    /// without an endpoint, until it logs a line containing "serving".
    pub fn start(program: &Path, prefix: &[&str], args: &[&str]) -> ServiceProcess {
        ServiceProcess::start_logging(program, prefix, args, "info")
    }

    /// [`ServiceProcess::start`] with `RUST_LOG=filter`, e.g. `lars_reporter=debug`.
    pub fn start_logging(
        program: &Path,
        prefix: &[&str],
        args: &[&str],
        filter: &str,
    ) -> ServiceProcess {
        let mut process = ServiceProcess::spawn(program, prefix, args, filter);
        let first = process.log.find_any(
            &[METRICS_LINE, SERVING_LINE],
            Instant::now() + START_TIMEOUT,
        );
        match first {
            None => process.fail_start("logged neither its metrics endpoint nor serving"),
            Some(line) if line.contains(METRICS_LINE) => {
                let addr = line_field(&line, "metrics").and_then(|a| a.parse().ok());
                let Some(addr) = addr else {
                    process.fail_start("logged its metrics endpoint without metrics=")
                };
                process.metrics = Some(addr);
                process.wait_until_serving(addr);
                // A process may bring its endpoint up before the rest of it (the agent starts
                // its endpoint before its workers); its serving line says all of it is up.
                process.wait_for_line(SERVING_LINE, START_TIMEOUT);
            }
            Some(_) => {}
        }
        process
    }

    /// Starts `program` like [`ServiceProcess::start`] but returns at once, without waiting
    /// for it to serve: for a process that is expected to refuse to (its log says why; see
    /// [`ServiceProcess::wait_for_line`]).
    pub fn start_unready(program: &Path, args: &[&str]) -> ServiceProcess {
        ServiceProcess::spawn(program, &[], args, "info")
    }

    fn spawn(program: &Path, prefix: &[&str], args: &[&str], filter: &str) -> ServiceProcess {
        let name = program.file_name().map_or_else(
            || "service".to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let mut command = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(program);
                c
            }
            None => Command::new(program),
        };
        let mut child = command
            .args(args)
            .env("RUST_LOG", filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Log::default());
        let collected = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                collected.push(line);
            }
            collected.end();
        });
        ServiceProcess {
            name,
            child,
            log,
            metrics: None,
        }
    }

    /// Waits until the endpoint at `addr` shows [`SERVING`] at 1.
    fn wait_until_serving(&mut self, addr: SocketAddr) {
        let url = format!("http://{addr}/metrics");
        let what = format!("{} to serve ({SERVING} 1 at {url})", self.name);
        eventually(&what, START_TIMEOUT, || {
            if self.log.ended() {
                self.fail_start("exited");
            }
            crate::metrics::scrape(&url, SCRAPE_TIMEOUT)
                .is_ok_and(|samples| samples.get(SERVING, &[]) == Some(1.0))
        });
    }

    fn fail_start(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!(
            "{} did not start ({why}): {:#?}",
            self.name,
            self.log.lines()
        );
    }

    /// A `key=value` field of the serving line.
    pub fn field(&self, key: &str) -> String {
        let serving = self.wait_for_line(SERVING_LINE, START_TIMEOUT);
        line_field(&serving, key)
            .unwrap_or_else(|| panic!("{} serving line has no {key}: {serving}", self.name))
    }

    /// Where its metrics endpoint listens; fails the test when it has none.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
            .unwrap_or_else(|| panic!("{} has no metrics endpoint", self.name))
    }

    /// Its metrics now.
    pub fn scrape(&self) -> Samples {
        let addr = self.metrics_addr();
        crate::metrics::scrape(&addr.to_string(), SCRAPE_TIMEOUT)
            .unwrap_or_else(|e| panic!("scrape {}: {e}", self.name))
    }

    /// Waits until metric `name` with exactly `labels` satisfies `holds`, failing the test after
    /// `within`; returns its value.
    pub fn wait_for_metric(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        within: Duration,
        holds: impl Fn(f64) -> bool,
    ) -> f64 {
        let what = format!("{} metric {name}{labels:?} to reach its value", self.name);
        eventually(&what, within, || {
            self.scrape().get(name, labels).filter(|v| holds(*v))
        })
    }

    /// Every stderr line so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lines()
    }

    /// The first stderr line containing `needle`, logged already or within `within`; fails the
    /// test (with the whole log) when none comes.
    pub fn wait_for_line(&self, needle: &str, within: Duration) -> String {
        self.log
            .find(needle, Instant::now() + within)
            .unwrap_or_else(|| {
                panic!(
                    "{} did not log `{needle}` within {within:?}: {:#?}",
                    self.name,
                    self.log.lines()
                )
            })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, no goodbye.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(self) -> ExitStatus {
        self.send_signal("-TERM");
        self.wait_for_exit(STOP_TIMEOUT)
    }

    /// SIGINT, and the exit status.
    pub fn interrupt(self) -> ExitStatus {
        self.send_signal("-INT");
        self.wait_for_exit(STOP_TIMEOUT)
    }

    /// Sends `signal` (as `kill` names it: `-TERM`, `-INT`, …) and returns at once.
    pub fn send_signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .is_ok_and(|status| status.success());
        assert!(sent, "kill {signal} {} failed", self.name);
    }

    /// The exit status, once the process has exited; fails the test after `within`.
    pub fn wait_for_exit(mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("{} did not exit within {within:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
