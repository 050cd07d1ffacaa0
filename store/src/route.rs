//! Routes as the store sees them: the loaded route table.
//!
//! Owns [`RouteLoad`] (the keys and hosts are lars-wire's [`RouteKey`] and [`HostAddr`]; in
//! `RouteData.serverip` an address is stored as its host-order `u32`), the queries that read
//! `RouteData`, `RouteVersion` and `RouteChange` (SQL both backends run as is) and the decoding
//! of their rows. Edits live in `edit.rs`. Pure: the backends (`mysql.rs`, `sqlite.rs`) do the
//! reading and call in here.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use lars_wire::{HostAddr, RouteKey};

use crate::StoreError;
use crate::row::{Cell, Port, RowCheck};

/// The whole route table: every key with its hosts, in `RouteData.id` order, no duplicates.
pub type RouteTable = HashMap<RouteKey, Vec<HostAddr>>;

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
    pub(crate) fn push(&mut self, row: Result<(RouteKey, HostAddr), StoreError>) {
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

/// The `RouteData` rows in id order, as [`decode_route_row`] takes them.
pub(crate) const SELECT_ROUTES: &str =
    "SELECT id, modid, cmdid, serverip, serverport FROM RouteData ORDER BY id";

/// The current version, as [`decode_version`] takes it (no row: no version yet).
pub(crate) const SELECT_VERSION: &str = "SELECT version FROM RouteVersion WHERE id = 1";

/// The keys changed up to the version `?`, one row per key, as [`decode_change_key`] takes them.
pub(crate) const SELECT_CHANGED_KEYS: &str = "SELECT MIN(id), modid, cmdid FROM RouteChange \
     WHERE version <= ? GROUP BY modid, cmdid ORDER BY modid, cmdid";

/// The keys changed after the version `?`, one row per key, as [`decode_change_key`] takes them.
pub(crate) const SELECT_CHANGED_KEYS_AFTER: &str = "SELECT MIN(id), modid, cmdid FROM RouteChange \
     WHERE version > ? GROUP BY modid, cmdid ORDER BY modid, cmdid";

/// Deletes the `RouteChange` rows up to the version `?`.
pub(crate) const DELETE_CHANGES_UP_TO: &str = "DELETE FROM RouteChange WHERE version <= ?";

/// Deletes every `RouteChange` row.
pub(crate) const CLEAR_CHANGES: &str = "DELETE FROM RouteChange";

/// Decodes `RouteData(id, modid, cmdid, serverip, serverport)`.
pub(crate) fn decode_route_row(cells: [Cell; 5]) -> Result<(RouteKey, HostAddr), StoreError> {
    let [id, modid, cmdid, serverip, serverport] = cells;
    let check = RowCheck::by_id("RouteData", &id);
    let key = RouteKey {
        modid: check.route_id("modid", &modid)?,
        cmdid: check.route_id("cmdid", &cmdid)?,
    };
    let host = HostAddr::new(
        Ipv4Addr::from(check.u32("serverip", &serverip)?),
        check.port("serverport", &serverport, Port::NonZero)?,
    );
    Ok((key, host))
}

/// Decodes the `RouteVersion.version` of row `id=1`; `None` when there is no such row (the
/// version was never set: not a Lars route database).
pub(crate) fn decode_version(cell: Option<Cell>) -> Result<Option<i64>, StoreError> {
    cell.map(|cell| {
        RowCheck::by_id("RouteVersion", &Cell::Int(1)).int_in(
            "version",
            &cell,
            0,
            i64::MAX,
            "must be an integer >= 0",
        )
    })
    .transpose()
}

/// Decodes `RouteChange(modid, cmdid)`; a bad key is logged and skipped, since the dns service
/// reloads the whole table anyway and only uses the keys to choose whom to notify.
pub(crate) fn decode_change_key(id: Cell, modid: Cell, cmdid: Cell) -> Option<RouteKey> {
    let check = RowCheck::by_id("RouteChange", &id);
    let key = check
        .route_id("modid", &modid)
        .and_then(|modid| Ok(RouteKey::new(modid, check.route_id("cmdid", &cmdid)?)));
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
        assert_eq!(host, HostAddr::new(Ipv4Addr::LOCALHOST, 65_535));
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
    fn a_missing_version_row_is_no_version() {
        assert_eq!(decode_version(None).unwrap(), None);
        assert_eq!(decode_version(Some(Cell::Int(0))).unwrap(), Some(0));
        assert_eq!(decode_version(Some(Cell::Int(9))).unwrap(), Some(9));
        assert!(decode_version(Some(Cell::Int(-1))).is_err());
    }
}
