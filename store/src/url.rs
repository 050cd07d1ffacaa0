//! The store URL: which backend, and where its data lives.
//!
//! Owns parsing (`"mysql://user:pass@host:port/db?ssl-mode=verify-ca&ssl-ca=/ca.pem"
//! .parse::<StoreUrl>()`, `"sqlite://PATH"`) and printing, and the meaning of the TLS options
//! ([`MysqlTls`]); `mysql.rs` hands them to the driver. Printing (`Display`, `Debug`, errors) never shows the password; only
//! [`StoreUrl::to_full_string`] does, for handing the URL to a child process. Parsing never
//! touches the network or the file system.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

use crate::StoreError;

/// The services' built-in `[store] url` when their config names none: an SQLite file in the
/// working directory. Command lines (`lars`, the console) and the launcher use
/// [`StoreChoice::resolve`](crate::StoreChoice::resolve) instead.
pub const DEFAULT_STORE_URL: &str = "sqlite://lars.db";

/// The MySQL database used when the URL names none, as in Lars.
pub const DEFAULT_MYSQL_DATABASE: &str = "lars_dns";

/// The MySQL port used when the URL names none.
pub const DEFAULT_MYSQL_PORT: u16 = 3306;

/// Longest database name MySQL accepts.
const MAX_DATABASE_NAME: usize = 64;

/// Characters escaped in the user and password of [`StoreUrl::to_full_string`].
const USERINFO: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b':')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Characters escaped in a query value (a file path) when printing a URL.
const QUERY_VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'=')
    .add(b'<')
    .add(b'>');

/// The query options a `mysql://` URL accepts, for the error that names an unknown one.
pub const MYSQL_URL_OPTIONS: [&str; 4] = ["ssl-mode", "ssl-ca", "ssl-cert", "ssl-key"];

/// Where the store lives, parsed from a URL.
///
/// `mysql://user:pass@host:port/db?ssl-mode=MODE&ssl-ca=PATH&ssl-cert=PATH&ssl-key=PATH` (port
/// defaults to 3306, database to `lars_dns`; user and password may be percent-encoded;
/// `mariadb://` is accepted as a synonym; the options are described at [`MysqlTls`]) or
/// `sqlite://PATH` (`sqlite://lars.db` is relative to the working directory,
/// `sqlite:///var/lib/lars/lars.db` absolute).
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A MySQL or MariaDB server.
    Mysql(MysqlUrl),
    /// An SQLite file (made by `lars init`, or by a service's first start).
    Sqlite(PathBuf),
}

/// The parts of a `mysql://` store URL.
#[derive(Clone, PartialEq, Eq)]
pub struct MysqlUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// User name; `None` lets the server decide (usually the anonymous user).
    pub user: Option<String>,
    /// Password; never printed.
    pub password: Option<String>,
    /// Database name; opening never creates it, `lars init` does.
    pub database: String,
    /// Whether and how the connection is encrypted (`ssl-*` options).
    pub tls: MysqlTls,
}

/// How a MySQL connection uses TLS: MySQL's own `ssl-mode` names, minus `preferred`.
///
/// The default is [`SslMode::Disabled`], plain TCP, as before TLS support existed, so a URL
/// without options connects as it always has; a server with `require_secure_transport=ON`
/// refuses it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MysqlTls {
    /// `ssl-mode`.
    pub mode: SslMode,
    /// `ssl-ca`: PEM file of the CA certificates to trust instead of the built-in public roots.
    pub ca: Option<PathBuf>,
    /// `ssl-cert` and `ssl-key`: PEM files of a client certificate chain and its private key,
    /// for servers that require X509 of their users. Given together or not at all.
    pub client_identity: Option<(PathBuf, PathBuf)>,
}

/// `ssl-mode`: how much of TLS a MySQL connection demands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SslMode {
    /// `disabled` (the default): plain TCP.
    #[default]
    Disabled,
    /// `required`: encrypted, but the server certificate is not checked (protects against
    /// eavesdropping, not against an impostor).
    Required,
    /// `verify-ca`: encrypted, and the server certificate must be signed by a trusted CA
    /// (`ssl-ca`, or the built-in public roots). Its name should not be checked, but with
    /// mysql_async 0.37.1 it still is (blackbeam/mysql_async#404, fixed upstream and not yet
    /// released), so for now this is as strict as `verify-identity`.
    VerifyCa,
    /// `verify-identity`: as `verify-ca`, and the certificate must also be issued for the host
    /// in the URL (a DNS name or IP address SAN).
    VerifyIdentity,
}

impl SslMode {
    /// The URL spelling, as MySQL's `--ssl-mode` spells it (lower case).
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disabled => "disabled",
            SslMode::Required => "required",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyIdentity => "verify-identity",
        }
    }

    fn parse(value: &str) -> Result<SslMode, String> {
        // MySQL writes them upper case with underscores (`VERIFY_CA`); accept that spelling too.
        match value.to_ascii_lowercase().replace('_', "-").as_str() {
            "disabled" => Ok(SslMode::Disabled),
            "required" => Ok(SslMode::Required),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-identity" => Ok(SslMode::VerifyIdentity),
            "preferred" => Err(
                "`ssl-mode=preferred` is not supported: it falls back to plain text without \
                 telling anyone; use `required` (or `verify-ca`) to encrypt, `disabled` not to"
                    .into(),
            ),
            other => Err(format!(
                "unknown `ssl-mode={other}` (expected disabled, required, verify-ca or \
                 verify-identity)"
            )),
        }
    }
}

impl MysqlTls {
    /// Whether the connection is encrypted at all.
    pub fn enabled(&self) -> bool {
        self.mode != SslMode::Disabled
    }

    /// The options from the URL's query pairs; every option at most once, each known, and none
    /// that the mode would ignore.
    fn from_query(pairs: impl Iterator<Item = (String, String)>) -> Result<Self, String> {
        let mut mode = None;
        let mut ca = None;
        let mut cert = None;
        let mut key = None;
        for (name, value) in pairs {
            let slot = match name.as_str() {
                "ssl-mode" => {
                    set_once(&mut mode, &name, SslMode::parse(&value)?)?;
                    continue;
                }
                "ssl-ca" => &mut ca,
                "ssl-cert" => &mut cert,
                "ssl-key" => &mut key,
                _ => {
                    return Err(format!(
                        "unknown option `{name}` (known options: {})",
                        MYSQL_URL_OPTIONS.join(", ")
                    ));
                }
            };
            if value.is_empty() {
                return Err(format!("`{name}` needs a file path"));
            }
            set_once(slot, &name, PathBuf::from(value))?;
        }
        let mode = mode.unwrap_or_default();
        let client_identity = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => return Err("`ssl-cert` needs `ssl-key` beside it".into()),
            (None, Some(_)) => return Err("`ssl-key` needs `ssl-cert` beside it".into()),
        };
        if mode == SslMode::Disabled && (ca.is_some() || client_identity.is_some()) {
            return Err(
                "`ssl-ca`/`ssl-cert`/`ssl-key` have no effect without TLS; add \
                 `ssl-mode=verify-ca` (or another mode than `disabled`)"
                    .into(),
            );
        }
        if mode == SslMode::Required && ca.is_some() {
            return Err(
                "`ssl-mode=required` does not check the server certificate, so `ssl-ca` would \
                 be ignored; use `ssl-mode=verify-ca` to check it against that CA"
                    .into(),
            );
        }
        Ok(MysqlTls {
            mode,
            ca,
            client_identity,
        })
    }

    /// The options as a URL query (`?ssl-mode=...`), empty for the default.
    fn write(&self, f: &mut dyn fmt::Write) -> fmt::Result {
        if !self.enabled() {
            return Ok(());
        }
        write!(f, "?ssl-mode={}", self.mode.as_str())?;
        let mut path = |name: &str, path: &Path| {
            write!(
                f,
                "&{name}={}",
                utf8_percent_encode(&path.to_string_lossy(), QUERY_VALUE)
            )
        };
        if let Some(ca) = &self.ca {
            path("ssl-ca", ca)?;
        }
        if let Some((cert, key)) = &self.client_identity {
            path("ssl-cert", cert)?;
            path("ssl-key", key)?;
        }
        Ok(())
    }
}

/// Stores `value` in `slot`, unless the option was given before.
fn set_once<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("option `{name}` is given twice"));
    }
    *slot = Some(value);
    Ok(())
}

impl MysqlUrl {
    /// `host:port`, for messages.
    pub fn server(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `host:port/db`, for messages.
    pub fn target(&self) -> String {
        format!("{}/{}", self.server(), self.database)
    }

    fn write(&self, f: &mut dyn fmt::Write, reveal_password: bool) -> fmt::Result {
        f.write_str("mysql://")?;
        if let Some(user) = &self.user {
            write!(f, "{}", utf8_percent_encode(user, USERINFO))?;
        }
        if let Some(password) = &self.password {
            if reveal_password {
                write!(f, ":{}", utf8_percent_encode(password, USERINFO))?;
            } else {
                f.write_str(":***")?;
            }
        }
        if self.user.is_some() || self.password.is_some() {
            f.write_str("@")?;
        }
        write!(f, "{}/{}", self.server(), self.database)?;
        self.tls.write(f)
    }
}

impl StoreUrl {
    /// The URL with the password in clear, e.g. to pass `--store` to a child process.
    /// Never log it.
    pub fn to_full_string(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = match self {
            StoreUrl::Mysql(m) => m.write(&mut out, true),
            StoreUrl::Sqlite(path) => {
                use fmt::Write;
                write!(out, "sqlite://{}", path.display())
            }
        };
        out
    }

    /// Where the data is, for messages: `host:port/db` or the SQLite path.
    pub fn target(&self) -> String {
        match self {
            StoreUrl::Mysql(m) => m.target(),
            StoreUrl::Sqlite(path) => path.display().to_string(),
        }
    }
}

impl Default for StoreUrl {
    /// [`DEFAULT_STORE_URL`].
    fn default() -> Self {
        StoreUrl::Sqlite(PathBuf::from("lars.db"))
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Mysql(m) => m.write(f, false),
            StoreUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

impl fmt::Debug for MysqlUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MysqlUrl(")?;
        self.write(f, false)?;
        f.write_str(")")
    }
}

impl FromStr for StoreUrl {
    type Err = StoreError;

    fn from_str(raw: &str) -> Result<StoreUrl, StoreError> {
        let bad = |reason: String| StoreError::BadUrl {
            url: mask_password(raw),
            reason,
        };
        let raw = raw.trim();
        let Some((scheme, rest)) = raw.split_once("://") else {
            return Err(bad(
                "expected `mysql://user:pass@host:port/db` or `sqlite://PATH`".into(),
            ));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => {
                if rest.is_empty() {
                    return Err(bad("`sqlite://` needs a file path after it".into()));
                }
                if rest.contains('?') {
                    return Err(bad(format!(
                        "query parameters are not supported (`{rest}`); give a plain file path"
                    )));
                }
                Ok(StoreUrl::Sqlite(PathBuf::from(rest)))
            }
            "mysql" | "mariadb" => parse_mysql(raw).map(StoreUrl::Mysql).map_err(bad),
            other => Err(bad(format!(
                "unknown scheme `{other}` (expected `mysql` or `sqlite`)"
            ))),
        }
    }
}

fn parse_mysql(raw: &str) -> Result<MysqlUrl, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("cannot parse: {e}"))?;
    let host = match url.host() {
        None => return Err("missing host".into()),
        Some(url::Host::Domain("")) => return Err("missing host".into()),
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
    };
    let port = url.port().unwrap_or(DEFAULT_MYSQL_PORT);
    if port == 0 {
        return Err("port 0 is not a server port".into());
    }
    let decode = |part: &str, what: &str| {
        percent_decode_str(part)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| format!("{what} is not valid UTF-8 after percent-decoding"))
    };
    let user = match url.username() {
        "" => None,
        u => Some(decode(u, "user")?),
    };
    let password = match url.password() {
        None => None,
        Some(p) => Some(decode(p, "password")?),
    };
    let tls = MysqlTls::from_query(
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned())),
    )?;
    if url.fragment().is_some() {
        return Err("a `#fragment` is not supported".into());
    }
    let path = url.path().strip_prefix('/').unwrap_or(url.path());
    let database = decode(path, "database name")?;
    let database = if database.is_empty() {
        DEFAULT_MYSQL_DATABASE.to_string()
    } else {
        database
    };
    if database.contains('/') {
        return Err(format!(
            "database name `{database}` must not contain `/` (one path segment: `/db`)"
        ));
    }
    if database.len() > MAX_DATABASE_NAME || database.contains('\0') {
        return Err(format!(
            "database name `{database}` is not a MySQL database name (at most 64 bytes, no NUL)"
        ));
    }
    Ok(MysqlUrl {
        host,
        port,
        user,
        password,
        database,
        tls,
    })
}

/// `raw` with the password part of its authority replaced by `***`, for error messages.
fn mask_password(raw: &str) -> String {
    let Some(start) = raw.find("://").map(|i| i + 3) else {
        return raw.to_string();
    };
    let authority_end = raw[start..]
        .find(['/', '?', '#'])
        .map_or(raw.len(), |i| start + i);
    let authority = &raw[start..authority_end];
    let Some(at) = authority.rfind('@') else {
        return raw.to_string();
    };
    let userinfo = &authority[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &raw[..start],
            &userinfo[..colon],
            &raw[start + at..]
        ),
        None => raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> StoreUrl {
        match raw.parse() {
            Ok(url) => url,
            Err(e) => panic!("{raw}: {e}"),
        }
    }

    fn reason(raw: &str) -> String {
        match raw.parse::<StoreUrl>() {
            Ok(url) => panic!("{raw} parsed as {url}"),
            Err(StoreError::BadUrl { reason, url }) => {
                assert!(!url.contains("secret"), "password leaked in {url}");
                reason
            }
            Err(e) => panic!("{raw}: unexpected error {e}"),
        }
    }

    #[test]
    fn full_mysql_url_parses_every_part() {
        let StoreUrl::Mysql(m) = parse("mysql://lars:p%40ss@db.example:3307/routes") else {
            panic!("not mysql");
        };
        assert_eq!(m.host, "db.example");
        assert_eq!(m.port, 3307);
        assert_eq!(m.user.as_deref(), Some("lars"));
        assert_eq!(m.password.as_deref(), Some("p@ss"));
        assert_eq!(m.database, "routes");
    }

    #[test]
    fn mysql_url_defaults_port_and_database() {
        let StoreUrl::Mysql(m) = parse("mysql://root@127.0.0.1") else {
            panic!("not mysql");
        };
        assert_eq!(m.port, 3306);
        assert_eq!(m.database, "lars_dns");
        assert_eq!(m.password, None);
        let StoreUrl::Mysql(m) = parse("mysql://root@127.0.0.1:3306/") else {
            panic!("not mysql");
        };
        assert_eq!(m.database, "lars_dns");
    }

    #[test]
    fn ipv6_host_loses_its_brackets() {
        let StoreUrl::Mysql(m) = parse("mysql://root@[::1]:3306/x") else {
            panic!("not mysql");
        };
        assert_eq!(m.host, "::1");
        assert_eq!(m.server(), "[::1]:3306");
    }

    #[test]
    fn sqlite_url_keeps_relative_and_absolute_paths() {
        assert_eq!(
            parse("sqlite://lars.db"),
            StoreUrl::Sqlite("lars.db".into())
        );
        assert_eq!(
            parse("sqlite:///var/lib/lars.db"),
            StoreUrl::Sqlite("/var/lib/lars.db".into())
        );
        assert_eq!(parse(DEFAULT_STORE_URL), StoreUrl::default());
    }

    #[test]
    fn display_and_debug_hide_the_password() {
        let url = parse("mysql://lars:secret@h:1/d");
        assert_eq!(url.to_string(), "mysql://lars:***@h:1/d");
        assert!(!format!("{url:?}").contains("secret"));
        let StoreUrl::Mysql(m) = &url else {
            panic!("not mysql")
        };
        assert!(!format!("{m:?}").contains("secret"));
    }

    #[test]
    fn full_string_round_trips_with_the_password() {
        for raw in [
            "mysql://lars:s%40c%3Aret@h:1/d",
            "mysql://root@127.0.0.1:3306/lars_dns",
            "sqlite:///tmp/x.db",
        ] {
            let url = parse(raw);
            assert_eq!(url.to_full_string(), raw);
            assert_eq!(parse(&url.to_full_string()), url);
        }
    }

    #[test]
    fn bad_urls_name_the_bad_part() {
        assert!(reason("postgres://u:secret@h/d").contains("unknown scheme `postgres`"));
        assert!(reason("lars.db").contains("expected"));
        assert!(reason("sqlite://").contains("file path"));
        assert!(reason("mysql://u:secret@h:notaport/d").contains("port"));
        assert!(reason("mysql://u:secret@h:70000/d").contains("port"));
        assert!(reason("mysql://u:secret@h:0/d").contains("port 0"));
        assert!(reason("mysql://u:secret@h/a/b").contains("must not contain `/`"));
        assert!(
            reason("mysql://u:secret@h/d?ssl=1").contains(
                "unknown option `ssl` (known options: ssl-mode, ssl-ca, ssl-cert, ssl-key)"
            )
        );
        assert!(reason("mysql://u:secret@/d").contains("host"));
        assert!(reason(&format!("mysql://h/{}", "x".repeat(65))).contains("at most 64"));
    }

    fn tls(raw: &str) -> MysqlTls {
        match parse(raw) {
            StoreUrl::Mysql(m) => m.tls,
            other => panic!("{raw} parsed as {other}"),
        }
    }

    #[test]
    fn tls_is_off_unless_the_url_asks_for_it() {
        assert_eq!(tls("mysql://u@h/d"), MysqlTls::default());
        assert_eq!(tls("mysql://u@h/d").mode, SslMode::Disabled);
        assert!(!tls("mysql://u@h/d?ssl-mode=disabled").enabled());
    }

    #[test]
    fn tls_options_parse_in_mysql_spelling() {
        let t = tls("mysql://u:secret@h/d?ssl-mode=verify-ca&ssl-ca=/etc/lars/ca%20x.pem");
        assert_eq!(t.mode, SslMode::VerifyCa);
        assert_eq!(t.ca.as_deref(), Some(Path::new("/etc/lars/ca x.pem")));
        assert_eq!(t.client_identity, None);
        assert_eq!(
            tls("mysql://h/d?ssl-mode=VERIFY_IDENTITY").mode,
            SslMode::VerifyIdentity
        );
        assert_eq!(tls("mysql://h/d?ssl-mode=required").mode, SslMode::Required);
        let t = tls("mysql://h/d?ssl-mode=verify-identity&ssl-cert=/c.pem&ssl-key=/k.pem");
        assert_eq!(
            t.client_identity,
            Some((PathBuf::from("/c.pem"), PathBuf::from("/k.pem")))
        );
        assert_eq!(t.ca, None);
    }

    #[test]
    fn bad_tls_options_name_the_option() {
        assert!(reason("mysql://u:secret@h/d?ssl-mode=preferred").contains("not supported"));
        assert!(reason("mysql://u:secret@h/d?ssl-mode=on").contains("unknown `ssl-mode=on`"));
        assert!(
            reason("mysql://u:secret@h/d?ssl-mode=required&ssl-mode=disabled")
                .contains("`ssl-mode` is given twice")
        );
        assert!(reason("mysql://u:secret@h/d?ssl-ca=/ca.pem").contains("without TLS"));
        assert!(
            reason("mysql://u:secret@h/d?ssl-mode=required&ssl-ca=/ca.pem").contains("verify-ca")
        );
        assert!(reason("mysql://u:secret@h/d?ssl-mode=verify-ca&ssl-ca=").contains("file path"));
        assert!(
            reason("mysql://u:secret@h/d?ssl-mode=verify-ca&ssl-cert=/c.pem")
                .contains("`ssl-cert` needs `ssl-key`")
        );
        assert!(
            reason("mysql://u:secret@h/d?ssl-mode=verify-ca&ssl-key=/k.pem")
                .contains("`ssl-key` needs `ssl-cert`")
        );
        assert!(
            reason("mysql://u:secret@h/d?sslmode=require").contains("unknown option `sslmode`")
        );
    }

    #[test]
    fn tls_options_round_trip_and_show_no_password() {
        let raw = "mysql://lars:secret@h:1/d?ssl-mode=verify-identity&ssl-ca=/a%26b/ca.pem\
                   &ssl-cert=/c.pem&ssl-key=/k.pem";
        let url = parse(raw);
        assert_eq!(url.to_full_string(), raw);
        assert_eq!(parse(&url.to_full_string()), url);
        let shown = url.to_string();
        assert_eq!(
            shown,
            "mysql://lars:***@h:1/d?ssl-mode=verify-identity&ssl-ca=/a%26b/ca.pem\
             &ssl-cert=/c.pem&ssl-key=/k.pem"
        );
        for text in [shown, format!("{url:?}"), url.target()] {
            assert!(!text.contains("secret"), "password shown in {text}");
        }
        let err = "mysql://lars:secret@h:1/d?ssl-mode=bogus"
            .parse::<StoreUrl>()
            .unwrap_err();
        assert!(!format!("{err} {err:?}").contains("secret"), "{err:?}");
    }

    #[test]
    fn mask_password_only_touches_the_password() {
        assert_eq!(mask_password("mysql://u:secret@h/d"), "mysql://u:***@h/d");
        assert_eq!(mask_password("mysql://u@h/d"), "mysql://u@h/d");
        assert_eq!(mask_password("mysql://h/d@x"), "mysql://h/d@x");
        assert_eq!(mask_password("nonsense"), "nonsense");
    }
}
