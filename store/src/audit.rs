//! The operator console's audit log and the route change log as people read them.
//!
//! Owns [`AuditEntry`] (one console edit: who, from where, when, what) and its table
//! `ConsoleAudit`, which is the console's own and not one of Lars' tables: `lars init` creates it
//! with the rest of the schema, and the console creates it on a database that lacks it
//! ([`Store::ensure_audit_table`](crate::Store::ensure_audit_table), `CREATE TABLE IF NOT
//! EXISTS`, the statement of `schema.rs`). Also [`RouteChangeRow`], the `RouteChange` rows newest first for the console's
//! Changes page. The SQL text is shared by both backends except each one's `CREATE TABLE`; the
//! decoding of stored rows is here. Pure: the backends query.

use lars_wire::RouteKey;

use crate::StoreError;
use crate::row::{Cell, RowCheck};

/// The audit log's table.
pub(crate) const AUDIT_TABLE: &str = "ConsoleAudit";

/// Longest `who` stored (an operator name), in characters; longer ones are cut.
pub const AUDIT_WHO_MAX: usize = 64;

/// Longest `peer` stored (an address), in characters.
pub const AUDIT_PEER_MAX: usize = 64;

/// Longest `action` stored, in characters: room for a route edit with its key, host and outcome.
pub const AUDIT_ACTION_MAX: usize = 512;

/// Most rows one listing returns, whatever is asked: a page of history, not a dump.
pub const LIST_LIMIT_MAX: u32 = 10_000;

/// One edit made in the console, as stored in `ConsoleAudit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// The row id (0 for an entry not yet stored); ids grow, so newest first is id order.
    pub id: i64,
    /// When, Unix seconds.
    pub ts: i64,
    /// Who made it: the operator's name.
    pub who: String,
    /// From where: the peer address of the browser.
    pub peer: String,
    /// What: the edit and its outcome in words ("add host 10.0.0.1:9000 to route 1/1: version 7").
    pub action: String,
}

impl AuditEntry {
    /// An entry for `action` by `who` from `peer` at `ts`, each cut to its column's length.
    pub fn new(ts: i64, who: &str, peer: &str, action: &str) -> AuditEntry {
        AuditEntry {
            id: 0,
            ts,
            who: cut(who, AUDIT_WHO_MAX),
            peer: cut(peer, AUDIT_PEER_MAX),
            action: cut(action, AUDIT_ACTION_MAX),
        }
    }
}

/// One `RouteChange` row: the route of `key` changed, at route version `version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteChangeRow {
    /// The row id.
    pub id: i64,
    /// The route that changed.
    pub key: RouteKey,
    /// The route version the change was written with (Unix seconds when the clock was ahead of
    /// the previous version, see [`next_version`](crate::next_version)).
    pub version: i64,
}

/// `text` cut to at most `max` characters (never inside a character).
fn cut(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// `limit` within `1..=LIST_LIMIT_MAX`.
pub(crate) fn clamp_limit(limit: u32) -> u32 {
    limit.clamp(1, LIST_LIMIT_MAX)
}

/// Appends one entry: `(ts, who, peer, action)`.
pub(crate) const INSERT_AUDIT: &str =
    "INSERT INTO ConsoleAudit (ts, who, peer, action) VALUES (?, ?, ?, ?)";

/// The newest `?` entries, newest first, as [`decode_audit_row`] takes them.
pub(crate) const SELECT_AUDIT: &str =
    "SELECT id, ts, who, peer, action FROM ConsoleAudit ORDER BY id DESC LIMIT ?";

/// The newest `?` `RouteChange` rows, newest first, as [`decode_change_row`] takes them.
pub(crate) const SELECT_CHANGES: &str =
    "SELECT id, modid, cmdid, version FROM RouteChange ORDER BY id DESC LIMIT ?";

/// Decodes `ConsoleAudit(id, ts, who, peer, action)`.
pub(crate) fn decode_audit_row(cells: [Cell; 5]) -> Result<AuditEntry, StoreError> {
    let [id, ts, who, peer, action] = cells;
    let check = RowCheck::by_id("ConsoleAudit", &id);
    Ok(AuditEntry {
        id: check.i64("id", &id)?,
        ts: check.i64("ts", &ts)?,
        who: text(who),
        peer: text(peer),
        action: text(action),
    })
}

/// Decodes `RouteChange(id, modid, cmdid, version)`.
pub(crate) fn decode_change_row(cells: [Cell; 4]) -> Result<RouteChangeRow, StoreError> {
    let [id, modid, cmdid, version] = cells;
    let check = RowCheck::by_id("RouteChange", &id);
    Ok(RouteChangeRow {
        id: check.i64("id", &id)?,
        key: RouteKey::new(
            check.route_id("modid", &modid)?,
            check.route_id("cmdid", &cmdid)?,
        ),
        version: check.i64("version", &version)?,
    })
}

/// A text column as text; anything else as it renders.
fn text(cell: Cell) -> String {
    match cell {
        Cell::Text(s) => s,
        other => other.render(),
    }
}

/// The rows that decode, in order; the others are logged and skipped.
pub(crate) fn keep_decoded<const N: usize, T>(
    query: &'static str,
    rows: impl IntoIterator<Item = [Cell; N]>,
    decode: fn([Cell; N]) -> Result<T, StoreError>,
) -> Vec<T> {
    rows.into_iter()
        .filter_map(|cells| match decode(cells) {
            Ok(row) => Some(row),
            Err(e) => {
                tracing::warn!(query, error = %e, "skipping a bad row");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_cut_to_their_columns_without_splitting_a_character() {
        let long = "é".repeat(AUDIT_ACTION_MAX + 5);
        let entry = AuditEntry::new(1, &"w".repeat(100), "127.0.0.1:1", &long);
        assert_eq!(entry.who.chars().count(), AUDIT_WHO_MAX);
        assert_eq!(entry.action.chars().count(), AUDIT_ACTION_MAX);
        assert_eq!(entry.peer, "127.0.0.1:1");
    }

    #[test]
    fn listing_limits_stay_within_one_and_the_cap() {
        assert_eq!(clamp_limit(0), 1);
        assert_eq!(clamp_limit(50), 50);
        assert_eq!(clamp_limit(u32::MAX), LIST_LIMIT_MAX);
    }

    #[test]
    fn audit_and_change_rows_decode_and_bad_ones_are_refused() {
        let entry = decode_audit_row([
            Cell::Int(3),
            Cell::Int(100),
            Cell::Text("ops".into()),
            Cell::Text("127.0.0.1:5".into()),
            Cell::Text("remove route 1/2".into()),
        ])
        .unwrap();
        assert_eq!((entry.id, entry.ts, entry.who.as_str()), (3, 100, "ops"));
        let change =
            decode_change_row([Cell::Int(9), Cell::Int(1), Cell::Int(2), Cell::Int(77)]).unwrap();
        assert_eq!(change.key, RouteKey::new(1, 2));
        assert_eq!(change.version, 77);
        assert!(
            decode_change_row([Cell::Int(9), Cell::Int(1 << 40), Cell::Int(2), Cell::Int(1)])
                .is_err()
        );
    }
}
