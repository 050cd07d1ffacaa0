//! What the console's process tests share: a `lars-console` process on a port the OS picks,
//! logged in through its own login form by an HTTP client with a cookie jar, and the central
//! services and an agent it is tested with, all on one store.

// Each test binary uses its own part of the harness.
#![allow(dead_code)]

use lars_service::testing::{ServiceProcess, eventually, workspace_binary};
use lars_store::testing::TestDb;
use lars_wire::{Client, ClientConfig};
use reqwest::blocking::{Client as Http, Response};
use reqwest::redirect::Policy;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub use lars_service::testing::ServiceProcess as Service;

/// Writes `text` to `dir/name`; returns the path.
pub fn write_config(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// A running console and how to reach it.
pub struct Console {
    pub process: ServiceProcess,
    pub addr: SocketAddr,
    /// The one-time login token it printed.
    pub token: String,
    _dir: tempfile::TempDir,
}

impl Console {
    /// A console on `store` (a URL) listening on 127.0.0.1, port 0, without a password (so it
    /// makes a one-time token), with `extra` config lines after `[console]`'s.
    pub fn start(store: &str, extra: &str) -> Console {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(
            dir.path(),
            "lars_console.toml",
            &format!(
                "[console]\nlisten = \"127.0.0.1:0\"\npassword_env = \"\"\nrefresh_secs = 1\n\
                 [store]\nurl = \"{store}\"\n{extra}"
            ),
        );
        let process = ServiceProcess::start(
            Path::new(env!("CARGO_BIN_EXE_lars-console")),
            &[],
            &["--config", &config],
        );
        let addr = process.field("addr").parse().unwrap();
        let line = process.wait_for_line("token=", Duration::from_secs(5));
        let token = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("token="))
            .expect("token field")
            .to_string();
        Console {
            process,
            addr,
            token,
            _dir: dir,
        }
    }

    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A client with an empty cookie jar that does not follow redirects.
    pub fn client(&self) -> Http {
        Http::builder()
            .cookie_store(true)
            .redirect(Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// Logs `http` in as `operator` with `password` through the login form; the answer.
    pub fn try_login(&self, http: &Http, password: &str) -> Response {
        let page = http.get(self.url("/login")).send().unwrap().text().unwrap();
        let csrf = csrf_of(&page);
        http.post(self.url("/login"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("user", "operator"),
                ("password", password),
            ])
            .send()
            .unwrap()
    }

    /// A logged-in client and its session's CSRF token.
    pub fn logged_in(&self) -> (Http, String) {
        let http = self.client();
        let answer = self.try_login(&http, &self.token);
        assert_eq!(answer.status(), 303, "login: {}", answer.text().unwrap());
        let page = self.get(&http, "/");
        (http, csrf_of(&page))
    }

    /// The body of `GET path`, which must answer 200.
    pub fn get(&self, http: &Http, path: &str) -> String {
        let answer = http.get(self.url(path)).send().unwrap();
        let status = answer.status();
        let body = answer.text().unwrap();
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// `POST path` with `form`.
    pub fn post(&self, http: &Http, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let answer = http.post(self.url(path)).form(form).send().unwrap();
        (answer.status().as_u16(), answer.text().unwrap())
    }
}

/// The value of the first `name="csrf"` field of `page`.
pub fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[at..].split('"').next().unwrap().to_string()
}

/// Starts `program` (lars-dns or lars-reporter) on `store`, port 0, metrics on a port the OS
/// picks, with `extra` config; returns it and the port it listens on.
pub fn start_central(program: &str, dir: &Path, store: &str, extra: &str) -> (Service, u16) {
    let config = write_config(
        dir,
        &format!("{program}.toml"),
        &format!(
            "[reactor]\nport = 0\n[metrics]\naddr = \"127.0.0.1:0\"\n[store]\nurl = \"{store}\"\n{extra}"
        ),
    );
    let binary = workspace_binary(env!("CARGO_MANIFEST_DIR"), program, program);
    let service = ServiceProcess::start(&binary, &[], &["--config", &config]);
    let addr: SocketAddr = service.field("addr").parse().unwrap();
    (service, addr.port())
}

/// A lars-agent on OS-chosen ports whose dns and reporter are on 127.0.0.1 at these ports,
/// reporting every 200 ms.
pub fn start_agent(dir: &Path, dns_port: u16, reporter_port: u16) -> Service {
    let config = write_config(
        dir,
        "lars_agent.toml",
        &format!(
            "[agent]\nbase_port = 0\nstats_addr = \"127.0.0.1:0\"\nstate_dir = \"\"\nreport_interval_ms = 200\n\
             [dnsserver]\nip = \"127.0.0.1\"\nport = {dns_port}\n\
             [reporter]\nip = \"127.0.0.1\"\nport = {reporter_port}\n"
        ),
    );
    let binary = workspace_binary(env!("CARGO_MANIFEST_DIR"), "lars-agent", "lars-agent");
    ServiceProcess::start(&binary, &[], &["--config", &config])
}

/// A client of `agent`.
pub fn client_of(agent: &Service) -> Client {
    let base_port: u16 = agent.field("base_port").parse().unwrap();
    Client::new(ClientConfig {
        base_port,
        timeout: Duration::from_millis(500),
        ..ClientConfig::default()
    })
    .unwrap()
}

/// Waits until `client` is served route `(modid, cmdid)` (its first ask makes the agent pull it).
pub fn served(client: &mut Client, modid: i32, cmdid: i32) {
    eventually("the route is served", Duration::from_secs(10), || {
        client.get_host(modid, cmdid).ok()
    });
}

/// A TCP port on 127.0.0.1 where nothing listens.
pub fn nowhere() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// The number of rows of `table` in `db`.
pub fn count(db: &TestDb, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    db.run(|store| async move { store.query_i64(&sql).await.unwrap().unwrap_or(0) })
}
