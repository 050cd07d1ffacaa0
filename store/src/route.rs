//! Routes as the store sees them: keys, hosts, the loaded route table and route edits.
//!
//! Owns the domain types ([`RouteKey`], [`RouteHost`], [`RouteLoad`], [`EditOutcome`]), the rule
//! for the next route version ([`next_version`]) and the decoding of stored `RouteData` rows.
//! Pure: the backends (`mysql.rs`, `sqlite.rs`) do the reading and writing and call in here.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::StoreError;
use crate::row::{Cell, RowCheck};

/// The name of a service: `(modid, cmdid)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    /// The business area.
    pub modid: i32,
    /// The command inside it.
    pub cmdid: i32,
}

impl RouteKey {
    /// `(modid, cmdid)`.
    pub fn new(modid: i32, cmdid: i32) -> RouteKey {
        RouteKey { modid, cmdid }
    }
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "modid={} cmdid={}", self.modid, self.cmdid)
    }
}

/// One `ip:port` node serving a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteHost {
    /// IPv4 address in host order: `a.b.c.d` is `a<<24 | b<<16 | c<<8 | d`, as Lars stores it
    /// in `RouteData.serverip`.
    pub ip: u32,
    /// TCP/UDP port.
    pub port: u16,
}

impl RouteHost {
    /// A host from its address parts.
    pub fn new(ip: Ipv4Addr, port: u16) -> RouteHost {
        RouteHost {
            ip: u32::from(ip),
            port,
        }
    }

    /// The host as a socket address.
    pub fn addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(self.ip), self.port)
    }
}

impl From<SocketAddrV4> for RouteHost {
    fn from(addr: SocketAddrV4) -> RouteHost {
        RouteHost::new(*addr.ip(), addr.port())
    }
}

impl fmt::Display for RouteHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.addr().fmt(f)
    }
}

/// The whole route table: every key with its hosts, in `RouteData.id` order, no duplicates.
pub type RouteTable = HashMap<RouteKey, Vec<RouteHost>>;

/// The result of [`Store::load_routes`](crate::Store::load_routes).
#[derive(Debug, Default)]
pub struct RouteLoad {
    /// The routes that could be read.
    pub routes: RouteTable,
    /// One [`StoreError::BadRow`] per stored row that was skipped because a value was out of
    /// range (port 0 or above 65535, an address above `u32::MAX`, a modid outside `i32`, ...).
    pub rejected: Vec<StoreError>,
}

impl RouteLoad {
    /// Adds one decoded row; a `(key, host)` already present is ignored, so duplicate rows in
    /// `RouteData` collapse into one host.
    pub(crate) fn push(&mut self, row: Result<(RouteKey, RouteHost), StoreError>) {
        match row {
            Ok((key, host)) => {
                let hosts = self.routes.entry(key).or_default();
                if !hosts.contains(&host) {
                    hosts.push(host);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "skipping a bad RouteData row");
                self.rejected.push(e);
            }
        }
    }
}

/// What a route edit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EditOutcome {
    /// The new route version, or `None` when the edit changed nothing and so wrote no version
    /// (adding a host that is already there, removing one that is not).
    pub version: Option<i64>,
    /// `RouteData` rows inserted or deleted.
    pub rows_changed: u64,
}

impl EditOutcome {
    /// The outcome of an edit that found nothing to do.
    pub(crate) const UNCHANGED: EditOutcome = EditOutcome {
        version: None,
        rows_changed: 0,
    };
}

/// A change to `RouteData`, applied in one transaction together with its version bump.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RouteEdit {
    /// Insert `(key, host)` unless it is there.
    AddHost(RouteKey, RouteHost),
    /// Delete every `(key, host)` row.
    RemoveHost(RouteKey, RouteHost),
    /// Delete every row of `key`.
    RemoveRoute(RouteKey),
}

impl RouteEdit {
    /// The key whose route changes.
    pub(crate) fn key(&self) -> RouteKey {
        match *self {
            RouteEdit::AddHost(key, _) | RouteEdit::RemoveHost(key, _) => key,
            RouteEdit::RemoveRoute(key) => key,
        }
    }

    /// The operation name, for errors and logs.
    pub(crate) fn op(&self) -> &'static str {
        match self {
            RouteEdit::AddHost(..) => "add_host",
            RouteEdit::RemoveHost(..) => "remove_host",
            RouteEdit::RemoveRoute(..) => "remove_route",
        }
    }

    /// Logs an edit that was committed.
    pub(crate) fn log_committed(&self, outcome: EditOutcome) {
        if let Some(version) = outcome.version {
            match self {
                RouteEdit::AddHost(key, host) | RouteEdit::RemoveHost(key, host) => {
                    tracing::info!(op = self.op(), %key, %host, version, "route updated");
                }
                RouteEdit::RemoveRoute(key) => {
                    tracing::info!(op = self.op(), %key, version, rows = outcome.rows_changed, "route updated");
                }
            }
        }
    }
}

/// The version a route edit writes: `max(now, current + 1)`.
///
/// Lars wrote plain `now`, so two edits in one second shared a version and the dns service
/// missed the second until its next full reload; this keeps versions strictly increasing while
/// staying close to wall-clock seconds, so a Lars dns reading the same database still works.
pub fn next_version(now_unix_seconds: i64, current: i64) -> i64 {
    now_unix_seconds.max(current.saturating_add(1))
}

/// Seconds since the Unix epoch by the system clock (0 if the clock is before 1970).
pub(crate) fn now_unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Decodes `RouteData(id, modid, cmdid, serverip, serverport)`.
pub(crate) fn decode_route_row(cells: [Cell; 5]) -> Result<(RouteKey, RouteHost), StoreError> {
    let [id, modid, cmdid, serverip, serverport] = cells;
    let check = RowCheck::by_id("RouteData", &id);
    let key = RouteKey {
        modid: check.i32("modid", &modid)?,
        cmdid: check.i32("cmdid", &cmdid)?,
    };
    let host = RouteHost {
        ip: check.u32("serverip", &serverip)?,
        port: check.int_in(
            "serverport",
            &serverport,
            1,
            u16::MAX.into(),
            "must be a port in 1..=65535",
        )?,
    };
    Ok((key, host))
}

/// Decodes the `RouteVersion.version` of row `id=1`; no row reads as version 0.
pub(crate) fn decode_version(cell: Option<Cell>) -> Result<i64, StoreError> {
    match cell {
        None => Ok(0),
        Some(cell) => RowCheck::by_id("RouteVersion", &Cell::Int(1)).int_in(
            "version",
            &cell,
            0,
            i64::MAX,
            "must be an integer >= 0",
        ),
    }
}

/// Decodes `RouteChange(modid, cmdid)`; a bad key is logged and skipped, since the dns service
/// reloads the whole table anyway and only uses the keys to choose whom to notify.
pub(crate) fn decode_change_key(id: Cell, modid: Cell, cmdid: Cell) -> Option<RouteKey> {
    let check = RowCheck::by_id("RouteChange", &id);
    let key = check
        .i32("modid", &modid)
        .and_then(|modid| Ok(RouteKey::new(modid, check.i32("cmdid", &cmdid)?)));
    match key {
        Ok(key) => Some(key),
        Err(e) => {
            tracing::warn!(error = %e, "skipping a bad RouteChange row");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_version_is_now_when_the_clock_is_ahead() {
        assert_eq!(next_version(1_000, 10), 1_000);
    }

    #[test]
    fn next_version_strictly_increases_within_one_second() {
        assert_eq!(next_version(1_000, 1_000), 1_001);
        assert_eq!(next_version(1_000, 1_001), 1_002);
        assert_eq!(next_version(0, i64::MAX), i64::MAX);
    }

    #[test]
    fn host_ip_is_host_order() {
        let h = RouteHost::new(Ipv4Addr::new(10, 0, 0, 1), 80);
        assert_eq!(h.ip, (10 << 24) | 1);
        assert_eq!(h.to_string(), "10.0.0.1:80");
        assert_eq!(RouteHost::from(h.addr()), h);
    }

    fn row(port: i64) -> [Cell; 5] {
        [
            Cell::Int(3),
            Cell::Int(1),
            Cell::Int(2),
            Cell::Int(0x7f00_0001),
            Cell::Int(port),
        ]
    }

    #[test]
    fn route_rows_with_ports_outside_1_to_65535_are_rejected() {
        assert!(decode_route_row(row(0)).is_err());
        assert!(decode_route_row(row(70_000)).is_err());
        let (key, host) = decode_route_row(row(65_535)).unwrap();
        assert_eq!(key, RouteKey::new(1, 2));
        assert_eq!(host.port, 65_535);
    }

    #[test]
    fn duplicate_rows_collapse_and_bad_rows_are_kept_apart() {
        let mut load = RouteLoad::default();
        load.push(decode_route_row(row(80)));
        load.push(decode_route_row(row(80)));
        load.push(decode_route_row(row(81)));
        load.push(decode_route_row(row(0)));
        assert_eq!(load.routes[&RouteKey::new(1, 2)].len(), 2);
        assert_eq!(load.rejected.len(), 1);
    }

    #[test]
    fn missing_version_row_reads_as_zero() {
        assert_eq!(decode_version(None).unwrap(), 0);
        assert_eq!(decode_version(Some(Cell::Int(9))).unwrap(), 9);
        assert!(decode_version(Some(Cell::Int(-1))).is_err());
    }
}
