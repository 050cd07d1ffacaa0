//! Call statistics as the reporter stores them in `ServerCallStatus`.
//!
//! Owns [`CallStatusRow`], the coalescing of a batch before it is written (one row per key, the
//! latest wins, in key order so concurrent writers lock rows in the same order and cannot
//! deadlock each other), the batch size limit, the SQL text and column values both backends write
//! and read with, and the decoding of stored rows. Pure.

use lars_wire::LatestWins;

use crate::StoreError;
use crate::row::{Cell, Port, RowCheck};

/// Most rows in one multi-row upsert statement: 9 placeholders per row stays far below both
/// MySQL's 65 535 and SQLite's 32 766 placeholder limits, and the statement below MySQL's
/// default `max_allowed_packet`.
pub(crate) const UPSERT_CHUNK_ROWS: usize = 1_000;

/// One `ServerCallStatus` row: what one caller saw of one host of one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallStatusRow {
    /// The route's modid.
    pub modid: i32,
    /// The route's cmdid.
    pub cmdid: i32,
    /// The host's IPv4 address, host order (see [`HostAddr::ip_bits`](lars_wire::HostAddr::ip_bits)).
    pub ip: u32,
    /// The host's port.
    pub port: u16,
    /// The reporting agent's IPv4 address, host order.
    pub caller: u32,
    /// Successful calls in the reported window.
    pub succ_cnt: u32,
    /// Failed calls in the reported window.
    pub err_cnt: u32,
    /// When the agent reported it, Unix seconds.
    pub ts: i64,
    /// Whether the agent had the host marked overloaded; stored as `'1'`/`'0'`.
    pub overload: bool,
}

/// The primary key of `ServerCallStatus`.
pub type CallStatusKey = (i32, i32, u32, u16, u32);

impl CallStatusRow {
    /// `(modid, cmdid, ip, port, caller)`.
    pub fn key(&self) -> CallStatusKey {
        (self.modid, self.cmdid, self.ip, self.port, self.caller)
    }

    /// The values to write, in [`INSERT_COLUMNS`] order: the eight integer columns, then the
    /// `overload` text (`'1'`/`'0'`).
    pub(crate) fn values(&self) -> ([i64; 8], &'static str) {
        let ints = [
            self.modid.into(),
            self.cmdid.into(),
            self.ip.into(),
            self.port.into(),
            self.caller.into(),
            self.succ_cnt.into(),
            self.err_cnt.into(),
            self.ts,
        ];
        (ints, if self.overload { "1" } else { "0" })
    }
}

/// One row per key, the last one of `rows` winning, sorted by key.
pub fn coalesce_call_status(rows: &[CallStatusRow]) -> Vec<CallStatusRow> {
    let mut latest = LatestWins::new();
    for row in rows {
        latest.put(row.key(), *row);
    }
    let mut out: Vec<CallStatusRow> = latest.drain().map(|(_, row)| row).collect();
    out.sort_unstable_by_key(CallStatusRow::key);
    out
}

/// Decodes `ServerCallStatus(modid, cmdid, ip, port, caller, succ_cnt, err_cnt, ts, overload)`;
/// `overload` may be `'1'`/`'0'` text or a number (0 is false, anything else true).
pub(crate) fn decode_status_row(cells: [Cell; 9]) -> Result<CallStatusRow, StoreError> {
    let [modid, cmdid, ip, port, caller, succ, err, ts, overload] = cells;
    let key = format!(
        "({}, {}, {}, {}, {})",
        modid.render(),
        cmdid.render(),
        ip.render(),
        port.render(),
        caller.render()
    );
    let check = RowCheck {
        table: "ServerCallStatus",
        row: crate::RowId::Key(key),
    };
    let overload_flag = match &overload {
        Cell::Text(s) if s.trim().is_empty() => false,
        other => match other.int() {
            Some(v) => v != 0,
            None => return Err(check.bad("overload", &overload, "must be '1' or '0'")),
        },
    };
    Ok(CallStatusRow {
        modid: check.route_id("modid", &modid)?,
        cmdid: check.route_id("cmdid", &cmdid)?,
        ip: check.u32("ip", &ip)?,
        port: check.port("port", &port, Port::Any)?,
        caller: check.u32("caller", &caller)?,
        succ_cnt: check.u32("succ_cnt", &succ)?,
        err_cnt: check.u32("err_cnt", &err)?,
        ts: check.i64("ts", &ts)?,
        overload: overload_flag,
    })
}

/// The `SELECT` of stored rows, optionally narrowed to one modid and/or cmdid, in key order,
/// with its positional parameters.
pub(crate) fn select_sql(modid: Option<i32>, cmdid: Option<i32>) -> (String, Vec<i32>) {
    let mut conditions = Vec::new();
    let mut params = Vec::new();
    if let Some(modid) = modid {
        conditions.push("modid = ?");
        params.push(modid);
    }
    if let Some(cmdid) = cmdid {
        conditions.push("cmdid = ?");
        params.push(cmdid);
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT modid, cmdid, ip, port, caller, succ_cnt, err_cnt, ts, overload \
         FROM ServerCallStatus{filter} ORDER BY modid, cmdid, ip, port, caller"
    );
    (sql, params)
}

/// The column list of `ServerCallStatus` writes.
pub(crate) const INSERT_COLUMNS: &str = "INSERT INTO ServerCallStatus (modid, cmdid, ip, port, caller, succ_cnt, err_cnt, ts, overload)";

/// The placeholders of one row's [`CallStatusRow::values`] after [`INSERT_COLUMNS`].
pub(crate) const ROW_PLACEHOLDERS: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// Keeps the rows that decode; logs and drops the others.
pub(crate) fn keep_good(rows: impl IntoIterator<Item = [Cell; 9]>) -> Vec<CallStatusRow> {
    rows.into_iter()
        .filter_map(|cells| match decode_status_row(cells) {
            Ok(row) => Some(row),
            Err(e) => {
                tracing::warn!(error = %e, "skipping a bad ServerCallStatus row");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(modid: i32, succ_cnt: u32) -> CallStatusRow {
        CallStatusRow {
            modid,
            cmdid: 1,
            ip: 1,
            port: 80,
            caller: 2,
            succ_cnt,
            err_cnt: 0,
            ts: 100,
            overload: false,
        }
    }

    #[test]
    fn coalesce_keeps_the_last_row_per_key_in_key_order() {
        let out = coalesce_call_status(&[row(2, 1), row(1, 5), row(2, 3), row(1, 6)]);
        assert_eq!(out, vec![row(1, 6), row(2, 3)]);
    }

    /// A stored row with these `modid` and `overload` cells and plain integers elsewhere.
    fn stored(modid: Cell, overload: Cell) -> [Cell; 9] {
        [
            modid,
            Cell::Int(2),
            Cell::Int(3),
            Cell::Int(80),
            Cell::Int(4),
            Cell::Int(5),
            Cell::Int(6),
            Cell::Int(7),
            overload,
        ]
    }

    #[test]
    fn stored_rows_decode_from_text_or_integers() {
        let cells = stored(Cell::Text("1".into()), Cell::Text("1".into()));
        let r = decode_status_row(cells).unwrap();
        assert_eq!((r.modid, r.port, r.ts, r.overload), (1, 80, 7, true));
    }

    #[test]
    fn bad_overload_and_negative_counts_are_rejected() {
        let mut cells = stored(Cell::Int(1), Cell::Text("x".into()));
        assert!(decode_status_row(cells.clone()).is_err());
        cells[8] = Cell::Text("0".into());
        cells[5] = Cell::Int(-1);
        assert!(decode_status_row(cells).is_err());
    }

    #[test]
    fn values_follow_the_insert_column_order() {
        let (ints, overload) = CallStatusRow {
            overload: true,
            ..row(-1, 5)
        }
        .values();
        assert_eq!(ints, [-1, 1, 1, 80, 2, 5, 0, 100]);
        assert_eq!(overload, "1");
        assert_eq!(row(1, 1).values().1, "0");
    }
}
