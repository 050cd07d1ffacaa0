//! The table definitions of both backends (Lars' own table and column names).
//!
//! The MySQL DDL lives in `conf/lars_dns.sql`, the file operators also feed to `mysql` by hand;
//! it is compiled in and split into statements here. SQLite needs its own dialect
//! (`AUTOINCREMENT`, indexes as separate statements), kept beside it with the same tables and
//! columns. Every statement is idempotent: opening a store runs them all, every time.

/// `conf/lars_dns.sql`, compiled in.
pub(crate) const MYSQL_SCHEMA: &str = include_str!("../../conf/lars_dns.sql");

/// The MySQL statements of [`MYSQL_SCHEMA`]: comment lines (`-- ...`) dropped, split at `;`.
pub(crate) fn mysql_statements() -> Vec<String> {
    let without_comments: String = MYSQL_SCHEMA
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
";

#[cfg(test)]
mod tests {
    use super::*;

    const TABLES: [&str; 4] = [
        "RouteData",
        "RouteVersion",
        "RouteChange",
        "ServerCallStatus",
    ];

    #[test]
    fn mysql_schema_splits_into_its_statements() {
        let statements = mysql_statements();
        assert_eq!(statements.len(), 5, "{statements:#?}");
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
        }
    }
}
