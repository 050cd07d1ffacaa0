//! The table definitions of both backends (Lars' own table and column names) and what makes a
//! database a Lars route database.
//!
//! The MySQL DDL lives in `conf/lars_dns.sql`, the file operators also feed to `mysql` by hand;
//! it is compiled in and split into statements here. SQLite needs its own dialect
//! (`AUTOINCREMENT`, indexes as separate statements), kept beside it with the same tables and
//! columns. Every statement is idempotent. They run only where a database is created on purpose:
//! [`Store::init`](crate::Store::init) (`lars init`), and a service's first start on an SQLite
//! file that has no tables yet ([`OpenMode::CreateIfMissing`](crate::OpenMode)); opening a store
//! never runs DDL otherwise.
//!
//! A **Lars route database** has the tables `RouteData`, `RouteVersion` and `RouteChange`, and
//! the row `RouteVersion.id = 1` (the route version; "never set" means that row is missing).
//! `lars init` and the SQLite first start write that row with version 0; every database the
//! original Lars set up has it. The name tables (`ModIDConfig`, `CmdIDConfig`) are part of
//! the schema but not of a route database: a database without them serves routes, reads as no
//! names, and gets each from [`mysql_create`] / [`sqlite_create`] when a name is first written. [`SchemaState`] is what a backend found, [`SchemaProblem`] why it
//! is not a route database, [`InitReport`] what an init changed. Pure: the backends query.

use std::fmt;

/// The tables a dns needs: without one of them a database is not a Lars route database.
pub(crate) const ROUTE_TABLES: [&str; 3] = ["RouteData", "RouteVersion", "RouteChange"];

/// Every table of the schema, in creation order.
pub(crate) const TABLES: [&str; 7] = [
    "RouteData",
    "RouteVersion",
    "RouteChange",
    "ServerCallStatus",
    "ModIDConfig",
    "CmdIDConfig",
    "ConsoleAudit",
];

/// Why a reachable database is not a Lars route database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaProblem {
    /// These of the route tables (`RouteData`, `RouteVersion`, `RouteChange`) do not exist.
    MissingTables(Vec<&'static str>),
    /// The tables exist but `RouteVersion` has no row `id = 1`: the route version was never set.
    NoVersionRow,
}

impl fmt::Display for SchemaProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemaProblem::MissingTables(tables) => {
                write!(f, "it has no table {}", tables.join(", "))
            }
            SchemaProblem::NoVersionRow => {
                f.write_str("RouteVersion has no row id = 1, so the route version was never set")
            }
        }
    }
}

/// What a backend found in a database: which schema tables are missing and whether the version
/// row is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchemaState {
    /// The tables of [`TABLES`] the database lacks.
    pub(crate) missing: Vec<&'static str>,
    /// `RouteVersion` has its row `id = 1` (false when the table itself is missing).
    pub(crate) version_row: bool,
}

impl SchemaState {
    /// The state of a database holding the tables `present` (any letter case: MySQL may store
    /// names in lower case, SQLite compares them without case) and, if `version_row`, the
    /// version row.
    pub(crate) fn new<S: AsRef<str>>(present: &[S], version_row: bool) -> SchemaState {
        let missing = TABLES
            .into_iter()
            .filter(|table| {
                !present
                    .iter()
                    .any(|p| p.as_ref().eq_ignore_ascii_case(table))
            })
            .collect::<Vec<_>>();
        SchemaState {
            version_row: version_row && !missing.contains(&"RouteVersion"),
            missing,
        }
    }

    /// Whether `RouteVersion` exists, so its row can be looked for.
    pub(crate) fn has_version_table(present: &[impl AsRef<str>]) -> bool {
        present
            .iter()
            .any(|p| p.as_ref().eq_ignore_ascii_case("RouteVersion"))
    }

    /// Why this is not a Lars route database, or `None` when it is one. `ServerCallStatus` is
    /// the reporter's table; a dns does not need it.
    pub(crate) fn route_problem(&self) -> Option<SchemaProblem> {
        let missing: Vec<&'static str> = ROUTE_TABLES
            .into_iter()
            .filter(|t| self.missing.contains(t))
            .collect();
        if !missing.is_empty() {
            Some(SchemaProblem::MissingTables(missing))
        } else if !self.version_row {
            Some(SchemaProblem::NoVersionRow)
        } else {
            None
        }
    }
}

/// What [`Store::init`](crate::Store::init) did; prints as lines a person reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    /// The store, as its URL prints (no password).
    pub store: String,
    /// The MySQL database or the SQLite file was created.
    pub created_database: bool,
    /// The tables created, in creation order.
    pub created_tables: Vec<&'static str>,
    /// The `RouteVersion` row `id = 1` was written (version 0).
    pub created_version_row: bool,
}

impl InitReport {
    /// The report of an init that found `before` (after creating the database, if it did).
    pub(crate) fn new(store: String, created_database: bool, before: &SchemaState) -> InitReport {
        InitReport {
            store,
            created_database,
            created_tables: before.missing.clone(),
            created_version_row: !before.version_row,
        }
    }

    /// Whether the init changed anything.
    pub fn changed(&self) -> bool {
        self.created_database || !self.created_tables.is_empty() || self.created_version_row
    }
}

impl fmt::Display for InitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.changed() {
            return write!(
                f,
                "{} is already a Lars database; nothing changed",
                self.store
            );
        }
        if self.created_database {
            writeln!(f, "created the database {}", self.store)?;
        }
        if !self.created_tables.is_empty() {
            writeln!(f, "created tables {}", self.created_tables.join(", "))?;
        }
        if self.created_version_row {
            writeln!(f, "set the route version to 0 (RouteVersion row id = 1)")?;
        }
        write!(f, "{} is ready", self.store)
    }
}

/// `conf/lars_dns.sql`, compiled in.
pub(crate) const MYSQL_SCHEMA: &str = include_str!("../../conf/lars_dns.sql");

/// The MySQL statements of [`MYSQL_SCHEMA`]: comment lines (`-- ...`) dropped, split at `;`.
pub(crate) fn mysql_statements() -> Vec<String> {
    split_statements(MYSQL_SCHEMA)
}

/// The statements of `schema`: comment lines (`-- ...`) dropped, split at `;`, trimmed.
fn split_statements(schema: &str) -> Vec<String> {
    let without_comments: String = schema
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The `CREATE TABLE` statement of `table` in `schema` (statements split at `;`); empty when
/// there is none, which the tests below rule out for every table of [`TABLES`].
fn create_statement(statements: impl IntoIterator<Item = String>, table: &str) -> String {
    let create = format!("CREATE TABLE IF NOT EXISTS {table} (");
    statements
        .into_iter()
        .find(|s| s.starts_with(&create))
        .unwrap_or_default()
}

/// The MySQL `CREATE TABLE IF NOT EXISTS` of `table`, for a table a tool adds to a database made
/// before it existed (the console's `ConsoleAudit`).
pub(crate) fn mysql_create(table: &str) -> String {
    create_statement(mysql_statements(), table)
}

/// The SQLite `CREATE TABLE IF NOT EXISTS` of `table`, as [`mysql_create`].
pub(crate) fn sqlite_create(table: &str) -> String {
    let statements = SQLITE_SCHEMA.split(';').map(|s| s.trim().to_string());
    create_statement(statements, table)
}

/// The SQLite schema, run as one batch inside one `BEGIN IMMEDIATE` transaction.
///
/// Column types are SQLite's `INTEGER`/`TEXT`; the value ranges are the MySQL ones, enforced by
/// the store on write and checked on read.
pub(crate) const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS RouteData (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    modid      INTEGER NOT NULL,
    cmdid      INTEGER NOT NULL,
    serverip   INTEGER NOT NULL,
    serverport INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS route_key ON RouteData (modid, cmdid);

CREATE TABLE IF NOT EXISTS RouteVersion (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    version INTEGER NOT NULL
);
INSERT OR IGNORE INTO RouteVersion (id, version) VALUES (1, 0);

CREATE TABLE IF NOT EXISTS RouteChange (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    modid   INTEGER NOT NULL,
    cmdid   INTEGER NOT NULL,
    version INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS ServerCallStatus (
    modid    INTEGER NOT NULL,
    cmdid    INTEGER NOT NULL,
    ip       INTEGER NOT NULL,
    port     INTEGER NOT NULL,
    caller   INTEGER NOT NULL,
    succ_cnt INTEGER NOT NULL,
    err_cnt  INTEGER NOT NULL,
    ts       INTEGER NOT NULL,
    overload TEXT    NOT NULL,
    PRIMARY KEY (modid, cmdid, ip, port, caller)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS mlb_index ON ServerCallStatus (modid, cmdid);

CREATE TABLE IF NOT EXISTS ModIDConfig (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    modid   INTEGER NOT NULL,
    content TEXT    NOT NULL
);

CREATE TABLE IF NOT EXISTS CmdIDConfig (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    cmdid   INTEGER NOT NULL,
    content TEXT    NOT NULL
);

CREATE TABLE IF NOT EXISTS ConsoleAudit (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    ts     INTEGER NOT NULL,
    who    TEXT    NOT NULL,
    peer   TEXT    NOT NULL,
    action TEXT    NOT NULL
);
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_schema_splits_into_its_statements() {
        let statements = mysql_statements();
        assert_eq!(statements.len(), 8, "{statements:#?}");
        for s in &statements {
            assert!(
                s.starts_with("CREATE TABLE IF NOT EXISTS") || s.starts_with("INSERT IGNORE"),
                "not idempotent: {s}"
            );
            assert!(!s.contains("--"), "comment left in: {s}");
        }
    }

    #[test]
    fn both_schemas_create_every_table() {
        let mysql = mysql_statements().join("\n");
        for table in TABLES {
            let create = format!("CREATE TABLE IF NOT EXISTS {table} (");
            assert!(mysql.contains(&create), "mysql lacks {table}");
            assert!(SQLITE_SCHEMA.contains(&create), "sqlite lacks {table}");
            assert!(mysql_create(table).starts_with(&create), "{table}");
            assert!(sqlite_create(table).starts_with(&create), "{table}");
        }
    }

    #[test]
    fn each_names_table_has_one_create_statement_per_backend() {
        for table in ["ModIDConfig", "CmdIDConfig"] {
            for create in [mysql_create(table), sqlite_create(table)] {
                assert!(create.contains("content"), "{create}");
                assert!(!create.contains(';'), "{create}");
            }
        }
        assert_eq!(sqlite_create("Nothing"), "");
    }

    #[test]
    fn a_database_is_a_route_database_with_the_three_tables_and_the_version_row() {
        let all = [
            "routedata",
            "RouteVersion",
            "ROUTECHANGE",
            "ServerCallStatus",
        ];
        assert_eq!(SchemaState::new(&all, true).route_problem(), None);
        // The reporter's table is not needed to serve routes.
        assert_eq!(SchemaState::new(&all[..3], true).route_problem(), None);
        assert_eq!(
            SchemaState::new(&all, false).route_problem(),
            Some(SchemaProblem::NoVersionRow)
        );
        assert_eq!(
            SchemaState::new(&["RouteData", "other"], true).route_problem(),
            Some(SchemaProblem::MissingTables(vec![
                "RouteVersion",
                "RouteChange"
            ]))
        );
        let none: [&str; 0] = [];
        let empty = SchemaState::new(&none, true);
        assert!(!empty.version_row, "no RouteVersion table, no version row");
        assert_eq!(empty.missing, TABLES);
    }

    #[test]
    fn init_reports_say_what_changed() {
        let none: [&str; 0] = [];
        let fresh = InitReport::new(
            "sqlite://x.db".into(),
            true,
            &SchemaState::new(&none, false),
        );
        let text = fresh.to_string();
        assert!(
            text.contains("created the database sqlite://x.db"),
            "{text}"
        );
        assert!(
            text.contains(
                "created tables RouteData, RouteVersion, RouteChange, ServerCallStatus, \
                 ModIDConfig, CmdIDConfig, ConsoleAudit"
            ),
            "{text}"
        );
        assert!(text.contains("route version to 0"), "{text}");
        let again = InitReport::new(
            "sqlite://x.db".into(),
            false,
            &SchemaState::new(&TABLES, true),
        );
        assert!(!again.changed());
        assert_eq!(
            again.to_string(),
            "sqlite://x.db is already a Lars database; nothing changed"
        );
    }
}
