//! Binaries run to completion (`lars route list`, `lars-dns --help`, a service refusing its
//! config), and the checks of the command line every service binary shares since they all start
//! through [`crate::process::serve`]: `--help` names the options, and a config file, a missing
//! file or a `--store` URL it cannot use is refused before it serves, naming where and what.

use std::path::Path;
use std::process::{Command, ExitStatus};

/// A binary that ran to completion: how it exited and what it printed.
#[derive(Debug)]
pub struct Finished {
    /// The command line, for messages.
    pub command: String,
    /// How it exited.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

/// Runs `program` with `args` until it exits, collecting stdout and stderr.
pub fn run(program: &Path, args: &[&str]) -> Finished {
    let command = format!("{} {}", program.display(), args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {command}: {e}"));
    Finished {
        command,
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl Finished {
    /// Checks that it exited with `code` and that its stderr names `what`.
    pub fn assert_failed(&self, code: i32, what: &str) {
        assert_eq!(
            self.status.code(),
            Some(code),
            "{}: {}",
            self.command,
            self.stderr
        );
        assert_names("stderr", &self.command, &self.stderr, &[what]);
    }

    /// Checks that it failed before it logged that it is serving, naming each of `what`.
    fn assert_refused(&self, what: &[&str]) {
        assert!(!self.status.success(), "{}: {}", self.command, self.stderr);
        assert_names("stderr", &self.command, &self.stderr, what);
        assert!(
            !self.stderr.contains("serving"),
            "{}: {}",
            self.command,
            self.stderr
        );
    }
}

/// Checks that `text`, the `stream` of `command`, contains each of `what`.
fn assert_names(stream: &str, command: &str, text: &str, what: &[&str]) {
    for what in what {
        assert!(
            text.contains(what),
            "{command}: {stream} does not name `{what}`: {text}"
        );
    }
}

/// Checks that service binary `program` refuses every config it cannot use before it serves,
/// with a message naming where the setting came from and which it is: each of `own_cases`
/// (`(file text, what the message must name)`) and the cases of the sections every service
/// shares, written to `dir/file_name` and given as `--config`; a missing config file; and a bad
/// `--store` URL.
pub fn assert_config_errors_named(
    program: &Path,
    dir: &Path,
    file_name: &str,
    own_cases: &[(&str, &str)],
) {
    let shared_cases = [
        ("[reactor]\nmaxconn = 5\n", "maxconn"),
        ("[reactor]\nport = 70000\n", "port"),
        ("[store]\nurl = \"redis://x\"\n", "store.url"),
    ];
    let path = dir.join(file_name);
    let config = path.to_str().expect("a UTF-8 temporary path");
    for (text, key) in shared_cases.iter().chain(own_cases) {
        std::fs::write(&path, text).expect("write the config file");
        run(program, &["--config", config]).assert_refused(&[key, file_name]);
    }
    run(program, &["--config", "/nonexistent/x.toml"]).assert_refused(&["/nonexistent/x.toml"]);
    run(program, &["--store", "redis://x"]).assert_refused(&["--store", "store.url"]);
}

/// Checks that `program --help` succeeds and names each of `options`.
pub fn assert_help_names(program: &Path, options: &[&str]) {
    let out = run(program, &["--help"]);
    assert!(out.status.success(), "{}: {}", out.command, out.stderr);
    assert_names("stdout", &out.command, &out.stdout, options);
}
