//! Test support (feature `testing`): running the workspace's binaries as real processes, the
//! way the process-level tests of every crate do — find (and build, once per test process, so
//! it is never stale) a binary of any workspace package, start it, wait for the line it logs
//! when it is serving, read `key=value` fields of that line, and stop it with a signal or kill.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a service may take to log that it is serving.
const START_TIMEOUT: Duration = Duration::from_secs(30);

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
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", package, "--bin", bin])
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

/// A running service process with its stderr collected; killed when dropped.
pub struct ServiceProcess {
    name: String,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    serving: String,
}

impl ServiceProcess {
    /// Starts `program` with `args` (under `prefix`, e.g. `["taskset", "-c", "0"]`) and waits
    /// for a stderr line containing "serving".
    pub fn start(program: &Path, prefix: &[&str], args: &[&str]) -> ServiceProcess {
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
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let collected = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                collected
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(line.clone());
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains("serving") => {
                    return ServiceProcess {
                        name,
                        child,
                        log,
                        serving: line,
                    };
                }
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    panic!("{name} did not start: {log:#?}");
                }
            }
        }
    }

    /// A `key=value` field of the serving line.
    pub fn field(&self, key: &str) -> String {
        let prefix = format!("{key}=");
        self.serving
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{} serving line has no {key}: {}", self.name, self.serving))
            .to_string()
    }

    /// Every stderr line so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
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
        self.signal("-TERM")
    }

    /// SIGINT, and the exit status.
    pub fn interrupt(self) -> ExitStatus {
        self.signal("-INT")
    }

    fn signal(mut self, signal: &str) -> ExitStatus {
        let _ = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("{} did not stop within 15 s of {signal}", self.name);
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
