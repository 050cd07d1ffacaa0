//! Test support for this crate and its users (feature `testing`): throw-away databases
//! ([`TestDb`]), a TCP proxy that can be cut to simulate a database outage ([`CutProxy`]), and a
//! private MariaDB that accepts only TLS, with certificates made for the test ([`TlsMariaDb`]).
//!
//! Meant for `[dev-dependencies]` only. These helpers panic with a clear message when the test
//! environment is wrong (no `LARS_TEST_MYSQL_URL`, no server), so a missing database fails a
//! test instead of silently skipping it.

mod cut_proxy;
mod test_db;
mod tls_mariadb;

pub use cut_proxy::CutProxy;
pub use test_db::{MYSQL_URL_ENV, TestDb};
pub use tls_mariadb::{TlsMariaDb, UNNAMED_LOOPBACK};
