//! Stored values before they are trusted: [`Cell`], [`RowCheck`] and [`Port`].
//!
//! Both backends turn every column they read into a [`Cell`] and hand it to the row decoders in
//! `route.rs` and `status.rs`, which range-check it through [`RowCheck`]. Integer columns are read
//! as `i64` whatever their declared signedness, so databases made by the original Lars (other
//! signedness, other widths) read the same as ours. Pure: no I/O.

use crate::{RowId, StoreError};

/// One column value as a backend returned it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    /// An integer that fits in `i64`.
    Int(i64),
    /// Text (MySQL's text protocol returns numbers as text too; `CHAR` columns always are).
    Text(String),
    /// SQL `NULL`.
    Null,
    /// Anything else, rendered for the error message (floats, blobs, dates, huge unsigned).
    Other(String),
}

impl Cell {
    /// The value as an integer, if it is one (text holding a decimal integer counts).
    pub(crate) fn int(&self) -> Option<i64> {
        match self {
            Cell::Int(i) => Some(*i),
            Cell::Text(s) => s.trim().parse().ok(),
            Cell::Null | Cell::Other(_) => None,
        }
    }

    /// The value as it would appear in an error message.
    pub(crate) fn render(&self) -> String {
        match self {
            Cell::Int(i) => i.to_string(),
            Cell::Text(s) => format!("'{s}'"),
            Cell::Null => "NULL".to_string(),
            Cell::Other(s) => s.clone(),
        }
    }
}

/// Which values a port column may hold.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Port {
    /// `1..=65535`: a port a host listens on (`RouteData.serverport`).
    NonZero,
    /// `0..=65535`: whatever port an agent reported (`ServerCallStatus.port`).
    Any,
}

/// Checks the columns of one stored row, producing [`StoreError::BadRow`] on the first bad one.
pub(crate) struct RowCheck {
    /// The table the row came from.
    pub(crate) table: &'static str,
    /// The row's id or key.
    pub(crate) row: RowId,
}

impl RowCheck {
    /// A check for the row whose `id` column holds `id`.
    pub(crate) fn by_id(table: &'static str, id: &Cell) -> RowCheck {
        let row = match id.int() {
            Some(id) => RowId::Id(id),
            None => RowId::Key(format!("id={}", id.render())),
        };
        RowCheck { table, row }
    }

    /// The error for `column` holding `cell`.
    pub(crate) fn bad(
        &self,
        column: &'static str,
        cell: &Cell,
        reason: &'static str,
    ) -> StoreError {
        StoreError::BadRow {
            table: self.table,
            row: self.row.clone(),
            column,
            value: cell.render(),
            reason,
        }
    }

    /// `cell` as an integer in `min..=max`, converted to `T`.
    pub(crate) fn int_in<T: TryFrom<i64>>(
        &self,
        column: &'static str,
        cell: &Cell,
        min: i64,
        max: i64,
        reason: &'static str,
    ) -> Result<T, StoreError> {
        cell.int()
            .filter(|v| (min..=max).contains(v))
            .and_then(|v| T::try_from(v).ok())
            .ok_or_else(|| self.bad(column, cell, reason))
    }

    /// `cell` as a route id (`modid`, `cmdid`): `0..=i32::MAX`, since no route has a negative
    /// id ([`lars_wire::RouteKey::is_route`]).
    pub(crate) fn route_id(&self, column: &'static str, cell: &Cell) -> Result<i32, StoreError> {
        self.int_in(
            column,
            cell,
            0,
            i32::MAX.into(),
            "must be an integer in 0..=2147483647 (no route has a negative id)",
        )
    }

    /// `cell` as a `u32` (IPv4 addresses, counters).
    pub(crate) fn u32(&self, column: &'static str, cell: &Cell) -> Result<u32, StoreError> {
        self.int_in(
            column,
            cell,
            0,
            u32::MAX.into(),
            "must be an integer in 0..=4294967295",
        )
    }

    /// `cell` as a port in the range `range` allows.
    pub(crate) fn port(
        &self,
        column: &'static str,
        cell: &Cell,
        range: Port,
    ) -> Result<u16, StoreError> {
        let (min, reason) = match range {
            Port::NonZero => (1, "must be a port in 1..=65535"),
            Port::Any => (0, "must be a port in 0..=65535"),
        };
        self.int_in(column, cell, min, u16::MAX.into(), reason)
    }

    /// `cell` as any `i64` (versions, timestamps).
    pub(crate) fn i64(&self, column: &'static str, cell: &Cell) -> Result<i64, StoreError> {
        cell.int()
            .ok_or_else(|| self.bad(column, cell, "must be an integer in i64 range"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> RowCheck {
        RowCheck::by_id("RouteData", &Cell::Int(7))
    }

    #[test]
    fn text_integers_count_as_integers() {
        assert_eq!(Cell::Text("42".into()).int(), Some(42));
        assert_eq!(Cell::Text("-1".into()).int(), Some(-1));
        assert_eq!(Cell::Text("x".into()).int(), None);
        assert_eq!(Cell::Null.int(), None);
    }

    #[test]
    fn out_of_range_values_name_table_row_column_and_value() {
        let err = check().u32("serverip", &Cell::Int(1 << 32)).unwrap_err();
        match err {
            StoreError::BadRow {
                table,
                row,
                column,
                value,
                ..
            } => {
                assert_eq!(table, "RouteData");
                assert_eq!(row, RowId::Id(7));
                assert_eq!(column, "serverip");
                assert_eq!(value, "4294967296");
            }
            other => panic!("unexpected {other}"),
        }
        for modid in [i64::from(i32::MAX) + 1, -1, i64::from(i32::MIN)] {
            assert!(
                check().route_id("modid", &Cell::Int(modid)).is_err(),
                "{modid}"
            );
        }
        assert!(check().u32("serverip", &Cell::Int(-1)).is_err());
        assert!(check().i64("version", &Cell::Null).is_err());
    }

    #[test]
    fn in_range_values_of_either_signedness_pass() {
        assert_eq!(check().route_id("modid", &Cell::Int(0)).ok(), Some(0));
        assert_eq!(
            check().route_id("cmdid", &Cell::Int(i32::MAX.into())).ok(),
            Some(i32::MAX)
        );
        assert_eq!(
            check().u32("serverip", &Cell::Int(u32::MAX.into())).ok(),
            Some(u32::MAX)
        );
        assert_eq!(check().i64("ts", &Cell::Text("17".into())).ok(), Some(17));
    }

    #[test]
    fn ports_are_checked_against_their_range() {
        assert!(
            check()
                .port("serverport", &Cell::Int(0), Port::NonZero)
                .is_err()
        );
        assert_eq!(check().port("port", &Cell::Int(0), Port::Any).ok(), Some(0));
        assert!(check().port("port", &Cell::Int(65_536), Port::Any).is_err());
    }

    #[test]
    fn unreadable_id_becomes_a_key() {
        let c = RowCheck::by_id("RouteData", &Cell::Null);
        assert_eq!(c.row, RowId::Key("id=NULL".into()));
    }
}
