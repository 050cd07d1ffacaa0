//! [`TlsMariaDb`]: a private `mariadbd` that accepts only TLS connections
//! (`require_secure_transport=ON`), with a CA and server certificate generated for the test.
//!
//! Owns the server process, its data directory and the certificates: `mariadb-install-db` makes
//! a fresh data directory (root with an empty password), `mariadbd` serves it on
//! `127.0.0.1:<free port>` with a server certificate for `localhost` and `127.0.0.1`, signed by a
//! CA made with `rcgen`. It also listens on `127.0.0.2`, an address the certificate is not issued
//! for ("wrong name" checks); a second, unrelated CA is there for "wrong CA" checks, and a client
//! certificate signed by the CA for users that `REQUIRE X509`. The server is
//! killed and its directory removed on drop. Starting it touches only the temporary directory.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

use crate::{MysqlTls, MysqlUrl, SslMode, StoreUrl};

/// Where Debian's `mariadb-server` installs the server; otherwise it is looked up on `PATH`.
const MARIADBD_PATHS: [&str; 2] = ["/usr/sbin/mariadbd", "/usr/local/sbin/mariadbd"];

/// How long the server may take to accept connections: a fresh data directory starts in well
/// under a second on the 2-core test machine; the margin covers a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A second loopback address the server listens on, which its certificate does not name.
pub const UNNAMED_LOOPBACK: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// How often readiness is polled while the server starts.
const START_POLL: Duration = Duration::from_millis(20);

/// A running TLS-only MariaDB, killed on drop.
pub struct TlsMariaDb {
    child: Child,
    addr: SocketAddr,
    ca: PathBuf,
    other_ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    dir: TempDir,
}

impl TlsMariaDb {
    /// Generates the certificates, makes a data directory and starts the server; `None` (after
    /// printing why) only when no `mariadbd` binary is installed. `scripts/test.sh` installs
    /// `mariadb-server`, so in the test command this starts.
    ///
    /// # Panics
    /// When the server is installed but cannot be set up or started; the message carries the
    /// server's error log.
    pub fn start() -> Option<TlsMariaDb> {
        let Some(mariadbd) = find_mariadbd() else {
            eprintln!(
                "skipping: no `mariadbd` binary (looked in {MARIADBD_PATHS:?} and on PATH); \
                 install mariadb-server to run the TLS tests"
            );
            return None;
        };
        let dir = match tempfile::Builder::new()
            .prefix("lars-tls-mariadb")
            .tempdir()
        {
            Ok(dir) => dir,
            Err(e) => panic!("cannot make a temporary directory for TLS MariaDB: {e}"),
        };
        let certs = write_certificates(dir.path());
        let data = dir.path().join("data");
        install_db(&mariadbd, &data);
        let port = free_port();
        let log = dir.path().join("error.log");
        let mut command = Command::new(&mariadbd);
        command
            // `--no-defaults` must come first: no system my.cnf changes this server.
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg(format!(
                "--bind-address={},{}",
                Ipv4Addr::LOCALHOST,
                UNNAMED_LOOPBACK
            ))
            .arg(format!(
                "--socket={}",
                dir.path().join("mysqld.sock").display()
            ))
            .arg(format!(
                "--pid-file={}",
                dir.path().join("mysqld.pid").display()
            ))
            .arg(format!("--log-error={}", log.display()))
            .arg("--user=root")
            .arg("--skip-log-bin")
            .arg("--innodb-buffer-pool-size=16M")
            .arg(format!("--ssl-ca={}", certs.ca.display()))
            .arg(format!("--ssl-cert={}", certs.server_cert.display()))
            .arg(format!("--ssl-key={}", certs.server_key.display()))
            .arg("--require-secure-transport=ON")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) => panic!("cannot start {}: {e}", mariadbd.display()),
        };
        let mut server = TlsMariaDb {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            ca: certs.ca,
            other_ca: certs.other_ca,
            client_cert: certs.client_cert,
            client_key: certs.client_key,
            dir,
        };
        server.wait_until_listening(&log);
        Some(server)
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The PEM file of the CA that signed the server certificate.
    pub fn ca(&self) -> &Path {
        &self.ca
    }

    /// The PEM file of a CA that has nothing to do with this server.
    pub fn other_ca(&self) -> &Path {
        &self.other_ca
    }

    /// The PEM files of a client certificate signed by [`TlsMariaDb::ca`] and of its key, for
    /// `ssl-cert` and `ssl-key`.
    pub fn client_identity(&self) -> (PathBuf, PathBuf) {
        (self.client_cert.clone(), self.client_key.clone())
    }

    /// `mysql://root@127.0.0.1:PORT/database` with the given TLS options.
    pub fn url(&self, database: &str, tls: MysqlTls) -> StoreUrl {
        StoreUrl::Mysql(MysqlUrl {
            host: self.addr.ip().to_string(),
            port: self.addr.port(),
            user: Some("root".into()),
            password: None,
            database: database.into(),
            tls,
        })
    }

    /// [`TlsMariaDb::url`] with `ssl-mode=verify-ca&ssl-ca=<this server's CA>`.
    pub fn verify_ca_url(&self, database: &str) -> StoreUrl {
        self.url(
            database,
            MysqlTls {
                mode: SslMode::VerifyCa,
                ca: Some(self.ca.clone()),
                client_identity: None,
            },
        )
    }

    /// Polls until the server accepts TCP connections, within [`START_TIMEOUT`].
    fn wait_until_listening(&mut self, log: &Path) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if TcpStream::connect_timeout(&self.addr, START_POLL).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "mariadbd exited ({status}) before listening on {}; its log:\n{}",
                    self.addr,
                    read_log(log)
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "mariadbd did not listen on {} within {START_TIMEOUT:?}; its log:\n{}",
                    self.addr,
                    read_log(log)
                );
            }
            std::thread::sleep(START_POLL);
        }
    }
}

impl Drop for TlsMariaDb {
    fn drop(&mut self) {
        // The data is thrown away with the directory, so nothing needs a clean shutdown.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl std::fmt::Debug for TlsMariaDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TlsMariaDb({} in {})",
            self.addr,
            self.dir.path().display()
        )
    }
}

/// The PEM files [`write_certificates`] made.
struct Certificates {
    ca: PathBuf,
    other_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

/// A CA, a server certificate for `localhost` and `127.0.0.1` and a client certificate signed by
/// it, and an unrelated CA, as PEM files in `dir`.
fn write_certificates(dir: &Path) -> Certificates {
    let ca = new_ca("lars test CA");
    let other_ca = new_ca("lars unrelated test CA");
    let server_key = generated(KeyPair::generate(), "server key");
    let mut params = generated(
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]),
        "server certificate parameters",
    );
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let server_cert = generated(params.signed_by(&server_key, &ca), "server certificate");
    let client_key = generated(KeyPair::generate(), "client key");
    let mut params = generated(
        CertificateParams::new(Vec::<String>::new()),
        "client certificate parameters",
    );
    params
        .distinguished_name
        .push(DnType::CommonName, "lars test client");
    let client_cert = generated(params.signed_by(&client_key, &ca), "client certificate");
    let out = Certificates {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        server_cert: dir.join("server-cert.pem"),
        server_key: dir.join("server-key.pem"),
        client_cert: dir.join("client-cert.pem"),
        client_key: dir.join("client-key.pem"),
    };
    for (path, pem) in [
        (&out.ca, ca.pem()),
        (&out.other_ca, other_ca.pem()),
        (&out.server_cert, server_cert.pem()),
        (&out.server_key, server_key.serialize_pem()),
        (&out.client_cert, client_cert.pem()),
        (&out.client_key, client_key.serialize_pem()),
    ] {
        if let Err(e) = std::fs::write(path, pem) {
            panic!("cannot write {}: {e}", path.display());
        }
    }
    out
}

/// A self-signed CA that may sign server certificates.
fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = generated(
        CertificateParams::new(Vec::<String>::new()),
        "CA parameters",
    );
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = generated(KeyPair::generate(), "CA key");
    generated(CertifiedIssuer::self_signed(params, key), "CA certificate")
}

fn generated<T>(result: Result<T, rcgen::Error>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("cannot generate the test {what}: {e}"),
    }
}

/// A fresh data directory at `data` whose `root` has an empty password.
fn install_db(mariadbd: &Path, data: &Path) {
    // `mariadb-install-db` sits beside the client tools, not beside `mariadbd` in sbin.
    let output = Command::new("mariadb-install-db")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--user=root")
        .arg("--skip-test-db")
        .arg(format!(
            "--basedir={}",
            mariadbd
                .parent()
                .and_then(Path::parent)
                .map_or_else(|| "/usr".into(), |p| p.display().to_string())
        ))
        .stdin(Stdio::null())
        .output();
    match output {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "mariadb-install-db --datadir={} failed ({}):\n{}{}",
            data.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("cannot run mariadb-install-db: {e}"),
    }
}

/// `mariadbd` from the usual install paths, else from `PATH`.
fn find_mariadbd() -> Option<PathBuf> {
    let installed = MARIADBD_PATHS.iter().map(PathBuf::from);
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("mariadbd"));
    installed.chain(on_path).find(|p| p.is_file())
}

/// A loopback port that was free a moment ago (the OS picks it; the server binds it next).
fn free_port() -> u16 {
    match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(e) => panic!("cannot pick a free loopback port: {e}"),
    }
}

fn read_log(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_else(|e| format!("(cannot read {}: {e})", log.display()))
}
