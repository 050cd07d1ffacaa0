//! Names of modules and commands: larsWeb's `ModIDConfig(id, modid, content)` and
//! `CmdIDConfig(id, cmdid, content)`, a name per modid and a name per cmdid (one name for a
//! cmdid across every module, as in Lars, whose table has no modid column).
//!
//! Owns [`Names`] (what [`Store::load_names`](crate::Store::load_names) reads, with the label a
//! route is shown with), the rules a name must pass before it is written ([`check_name`]), the
//! SQL both backends run and the decoding of stored rows. Names are for people only: nothing in
//! routing reads them. A database made before these tables existed has neither: reading it
//! gives no names, and the first write creates the table it needs (`CREATE TABLE IF NOT
//! EXISTS`, the statement of the schema). A stored row our types cannot hold is skipped and
//! listed in [`Names::rejected`]. Pure: the backends (`mysql.rs`, `sqlite.rs`) do the I/O.

use std::collections::BTreeMap;

use lars_wire::RouteKey;

use crate::StoreError;
use crate::row::{Cell, RowCheck};

/// Longest name, in characters: the `VARCHAR(255)` of `content` in `conf/lars_dns.sql`, so a
/// name that [`Store::set_module_name`](crate::Store::set_module_name) accepts always fits the
/// MySQL column.
pub const MAX_NAME_CHARS: usize = 255;

/// The names of modules and commands.
#[derive(Debug, Default)]
pub struct Names {
    /// modid → name (`ModIDConfig`).
    pub modules: BTreeMap<i32, String>,
    /// cmdid → name (`CmdIDConfig`), the same in every module.
    pub commands: BTreeMap<i32, String>,
    /// One [`StoreError::BadRow`] per stored row that was skipped (an id outside `i32`, a
    /// `NULL`, empty or control-character `content`).
    pub rejected: Vec<StoreError>,
}

impl Names {
    /// How the route `key` is shown to a person: `module/command` with either side falling
    /// back to its number (`users/cmdid 2`, `modid 1/login`), or `None` when neither is named.
    pub fn label(&self, key: RouteKey) -> Option<String> {
        let module = self.modules.get(&key.modid);
        let command = self.commands.get(&key.cmdid);
        if module.is_none() && command.is_none() {
            return None;
        }
        let module = module.map_or_else(|| format!("modid {}", key.modid), Clone::clone);
        let command = command.map_or_else(|| format!("cmdid {}", key.cmdid), Clone::clone);
        Some(format!("{module}/{command}"))
    }

    /// The name of module `modid`, if it has one.
    pub fn module(&self, modid: i32) -> Option<&str> {
        self.modules.get(&modid).map(String::as_str)
    }

    /// The name of command `cmdid`, if it has one.
    pub fn command(&self, cmdid: i32) -> Option<&str> {
        self.commands.get(&cmdid).map(String::as_str)
    }
}

/// What writing a name did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameChange {
    /// There was no name; the row was added.
    Added,
    /// The name replaced this one.
    Renamed {
        /// The name before, as stored.
        from: String,
    },
    /// The name was already this; nothing was written.
    Unchanged,
}

impl NameChange {
    /// What writing `name` over `stored` (the newest stored `content` of the id, if it has a
    /// row) does.
    pub(crate) fn new(stored: Option<Cell>, name: &str) -> NameChange {
        match stored {
            None => NameChange::Added,
            Some(Cell::Text(from)) if from == name => NameChange::Unchanged,
            Some(Cell::Text(from)) => NameChange::Renamed { from },
            Some(other) => NameChange::Renamed {
                from: other.render(),
            },
        }
    }
}

/// Whether `table` is among `tables` (any letter case, as the backends list them).
pub(crate) fn has_table(tables: &[String], table: NameTable) -> bool {
    tables.iter().any(|t| t.eq_ignore_ascii_case(table.table()))
}

/// What a name is given to: a module (a row of `ModIDConfig`) or a command (`CmdIDConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameTable {
    /// `ModIDConfig`, keyed by `modid`.
    Module,
    /// `CmdIDConfig`, keyed by `cmdid`.
    Command,
}

impl NameTable {
    /// The table's name.
    pub(crate) fn table(self) -> &'static str {
        match self {
            NameTable::Module => "ModIDConfig",
            NameTable::Command => "CmdIDConfig",
        }
    }

    /// The key column.
    pub(crate) fn column(self) -> &'static str {
        match self {
            NameTable::Module => "modid",
            NameTable::Command => "cmdid",
        }
    }

    /// The table's rows in id order, as [`decode_name_row`] takes them.
    pub(crate) fn select(self) -> &'static str {
        match self {
            NameTable::Module => "SELECT id, modid, content FROM ModIDConfig ORDER BY id",
            NameTable::Command => "SELECT id, cmdid, content FROM CmdIDConfig ORDER BY id",
        }
    }

    /// The name stored for the id `?`, the newest row first (an old table may hold several).
    /// `suffix` is appended (MySQL's `FOR UPDATE`).
    pub(crate) fn select_one(self, suffix: &str) -> String {
        format!(
            "SELECT content FROM {} WHERE {} = ? ORDER BY id DESC LIMIT 1{suffix}",
            self.table(),
            self.column()
        )
    }

    /// Sets `content = ?` on every row of the id `?`.
    pub(crate) fn update(self) -> String {
        format!(
            "UPDATE {} SET content = ? WHERE {} = ?",
            self.table(),
            self.column()
        )
    }

    /// Inserts a row `(id ?, content ?)`.
    pub(crate) fn insert(self) -> String {
        format!(
            "INSERT INTO {} ({}, content) VALUES (?, ?)",
            self.table(),
            self.column()
        )
    }
}

/// The tables of [`Names`], in the order they are read.
pub(crate) const NAME_TABLES: [NameTable; 2] = [NameTable::Module, NameTable::Command];

/// Checks a name write: `id` (the modid or cmdid) is 0 or more and `text`, trimmed, is not
/// empty, at most [`MAX_NAME_CHARS`] characters and free of control characters (a name is printed
/// on terminals and pages). Returns the trimmed text.
pub(crate) fn check_name(table: NameTable, id: i32, text: &str) -> Result<String, StoreError> {
    let invalid = |reason: String| StoreError::InvalidName {
        what: format!("{} {id}", table.column()),
        reason,
    };
    if id < 0 {
        return Err(invalid(format!("{} must be 0 or more", table.column())));
    }
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid("the name is empty".to_string()));
    }
    let chars = text.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(invalid(format!(
            "the name has {chars} characters, more than {MAX_NAME_CHARS}"
        )));
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(invalid(format!(
            "the name holds the control character {:?}",
            c
        )));
    }
    Ok(text.to_string())
}

/// Decodes one row `(id, modid|cmdid, content)` of `table`.
pub(crate) fn decode_name_row(
    table: NameTable,
    [id, key, content]: [Cell; 3],
) -> Result<(i32, String), StoreError> {
    let check = RowCheck::by_id(table.table(), &id);
    let key = check.route_id(table.column(), &key)?;
    let bad_content = || {
        check.bad(
            "content",
            &content,
            "must be text of 1 or more characters, none a control character",
        )
    };
    let Cell::Text(text) = &content else {
        return Err(bad_content());
    };
    if text.trim().is_empty() || text.chars().any(char::is_control) {
        return Err(bad_content());
    }
    Ok((key, text.clone()))
}

impl Names {
    /// Adds the decoded rows of `table`; a later row (higher id) for the same key wins, and a
    /// bad row is logged and kept in [`Names::rejected`].
    pub(crate) fn push(&mut self, table: NameTable, row: Result<(i32, String), StoreError>) {
        match row {
            Ok((key, name)) => {
                let map = match table {
                    NameTable::Module => &mut self.modules,
                    NameTable::Command => &mut self.commands,
                };
                map.insert(key, name);
            }
            Err(e) => {
                tracing::warn!(error = %e, table = table.table(), "skipping a bad name row");
                self.rejected.push(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        let mut names = Names::default();
        names.modules.insert(1, "users".into());
        names.commands.insert(2, "login".into());
        names
    }

    #[test]
    fn a_label_names_what_is_named_and_numbers_the_rest() {
        let names = names();
        assert_eq!(
            names.label(RouteKey::new(1, 2)).as_deref(),
            Some("users/login")
        );
        assert_eq!(
            names.label(RouteKey::new(1, 3)).as_deref(),
            Some("users/cmdid 3")
        );
        assert_eq!(
            names.label(RouteKey::new(4, 2)).as_deref(),
            Some("modid 4/login")
        );
        assert_eq!(names.label(RouteKey::new(4, 3)), None);
        assert_eq!(names.module(1), Some("users"));
        assert_eq!(names.command(3), None);
    }

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(
            check_name(NameTable::Module, 0, "  user service ").unwrap(),
            "user service"
        );
        assert_eq!(
            check_name(NameTable::Command, 7, &"é".repeat(MAX_NAME_CHARS)).unwrap(),
            "é".repeat(MAX_NAME_CHARS)
        );
        for (id, text, reason) in [
            (-1, "x", "modid must be 0 or more"),
            (1, "   ", "empty"),
            (1, "a\u{1b}[31m", "control character"),
            (1, "two\nlines", "control character"),
        ] {
            let err = check_name(NameTable::Module, id, text).unwrap_err();
            assert!(err.to_string().contains(reason), "{text:?}: {err}");
            assert!(err.to_string().contains(&format!("modid {id}")), "{err}");
        }
        let long = "x".repeat(MAX_NAME_CHARS + 1);
        let err = check_name(NameTable::Command, 3, &long).unwrap_err();
        assert!(err.to_string().contains("256 characters"), "{err}");
        assert!(err.to_string().contains("cmdid 3"), "{err}");
    }

    #[test]
    fn rows_with_bad_ids_or_content_are_rejected_and_later_rows_win() {
        let mut names = Names::default();
        let row = |id: i64, key: Cell, content: Cell| {
            decode_name_row(NameTable::Module, [Cell::Int(id), key, content])
        };
        names.push(
            NameTable::Module,
            row(1, Cell::Int(5), Cell::Text("old".into())),
        );
        names.push(
            NameTable::Module,
            row(2, Cell::Int(5), Cell::Text("new".into())),
        );
        names.push(
            NameTable::Module,
            row(3, Cell::Int(1 << 40), Cell::Text("x".into())),
        );
        names.push(NameTable::Module, row(4, Cell::Int(6), Cell::Null));
        names.push(
            NameTable::Module,
            row(5, Cell::Int(6), Cell::Text("bell\u{7}".into())),
        );
        assert_eq!(names.module(5), Some("new"));
        assert_eq!(names.module(6), None);
        assert_eq!(names.rejected.len(), 3);
        assert!(
            names.rejected[0].to_string().contains("ModIDConfig"),
            "{}",
            names.rejected[0]
        );
    }

    #[test]
    fn statements_name_the_table_and_its_key_column() {
        assert_eq!(
            NameTable::Command.select_one(" FOR UPDATE"),
            "SELECT content FROM CmdIDConfig WHERE cmdid = ? ORDER BY id DESC LIMIT 1 FOR UPDATE"
        );
        assert_eq!(
            NameTable::Module.update(),
            "UPDATE ModIDConfig SET content = ? WHERE modid = ?"
        );
        assert_eq!(
            NameTable::Module.insert(),
            "INSERT INTO ModIDConfig (modid, content) VALUES (?, ?)"
        );
    }
}
