//! Does the MySQL/MariaDB server the tests are told to use answer? The test command
//! (`scripts/test.sh`) runs this before the tests, to decide whether to start a private server.
//! It reads `LARS_TEST_MYSQL_URL` with the store's own URL parser, so the script and the tests
//! understand the URL the same way, and never prints a password.
//!
//! Prints one line and exits with
//! - 0: the server answered `SELECT VERSION()` (the line names the version);
//! - 2: nothing accepts TCP connections there (or the host does not resolve);
//! - 3: something listens, but the login or the query failed (the line has the server's error);
//! - 4: the variable is missing or not a `mysql://` URL.

use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use lars_store::testing::MYSQL_URL_ENV;
use lars_store::{MysqlUrl, StoreUrl};
use mysql_async::prelude::Queryable;

/// How long the TCP connect and then the login and query may take. A server on this machine
/// answers in milliseconds; 5 s leaves room for one that is still starting on a loaded machine.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

const ANSWERS: u8 = 0;
const NOTHING_LISTENS: u8 = 2;
const REFUSED: u8 = 3;
const BAD_URL: u8 = 4;

fn main() -> ExitCode {
    let (code, line) = probe();
    println!("{line}");
    ExitCode::from(code)
}

fn probe() -> (u8, String) {
    let raw = match std::env::var(MYSQL_URL_ENV) {
        Ok(raw) => raw,
        Err(_) => return (BAD_URL, format!("{MYSQL_URL_ENV} is not set")),
    };
    let server = match raw.parse::<StoreUrl>() {
        Ok(StoreUrl::Mysql(server)) => server,
        Ok(other) => {
            return (
                BAD_URL,
                format!("{MYSQL_URL_ENV}={other} is not a mysql:// URL"),
            );
        }
        Err(e) => return (BAD_URL, format!("{MYSQL_URL_ENV}: {e}")),
    };
    let at = server.server();
    if !accepts_tcp(&server) {
        return (
            NOTHING_LISTENS,
            format!("nothing accepts connections at {at}"),
        );
    }
    match query_version(&server) {
        Ok(version) => (ANSWERS, format!("{at} answers: version {version}")),
        Err(reason) => (
            REFUSED,
            format!("{at} listens but the login or query failed: {reason}"),
        ),
    }
}

fn accepts_tcp(server: &MysqlUrl) -> bool {
    let Ok(addrs) = (server.host.as_str(), server.port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|addr| TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).is_ok())
}

fn query_version(server: &MysqlUrl) -> Result<String, String> {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(server.host.clone())
        .tcp_port(server.port)
        .user(server.user.clone())
        .pass(server.password.clone())
        .prefer_socket(false);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(async {
        let work = async {
            let mut conn = mysql_async::Conn::new(opts).await?;
            let version: Option<String> = conn.query_first("SELECT VERSION()").await?;
            conn.disconnect().await?;
            Ok::<_, mysql_async::Error>(version.unwrap_or_default())
        };
        match tokio::time::timeout(PROBE_TIMEOUT, work).await {
            Ok(Ok(version)) => Ok(version),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
        }
    })
}
