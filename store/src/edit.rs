//! Route edits and the version each one writes, decided without I/O.
//!
//! Owns [`RouteEdit`], [`EditOutcome`], the rule for the next route version ([`next_version`])
//! and [`EditPlan`], the statements of one edit's transaction in order: the `RouteData` change,
//! then, only if it changed a row, the `RouteChange` row and the new `RouteVersion`. Both
//! backends open the transaction, read the current version, run the steps the plan returns and
//! feed back the rows each one found or changed; the SQL text is shared (`?` placeholders, which
//! MySQL and SQLite both take) except the version upsert, which the backend passes in its own
//! dialect. Pure: no I/O, no clock.

use std::time::{SystemTime, UNIX_EPOCH};

use lars_wire::{HostAddr, RouteKey};

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
    AddHost(RouteKey, HostAddr),
    /// Delete every `(key, host)` row.
    RemoveHost(RouteKey, HostAddr),
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

    /// The `RouteData` statement that makes the change; its affected rows are the edit's
    /// `rows_changed`.
    fn change(&self) -> Statement {
        match *self {
            RouteEdit::AddHost(key, host) => Statement {
                sql: "INSERT INTO RouteData (modid, cmdid, serverip, serverport) \
                      VALUES (?, ?, ?, ?)",
                params: host_params(key, host),
            },
            RouteEdit::RemoveHost(key, host) => Statement {
                sql: "DELETE FROM RouteData WHERE modid = ? AND cmdid = ? \
                      AND serverip = ? AND serverport = ?",
                params: host_params(key, host),
            },
            RouteEdit::RemoveRoute(key) => Statement {
                sql: "DELETE FROM RouteData WHERE modid = ? AND cmdid = ?",
                params: vec![key.modid.into(), key.cmdid.into()],
            },
        }
    }
}

/// `(modid, cmdid, serverip, serverport)` as statement parameters.
fn host_params(key: RouteKey, host: HostAddr) -> Vec<i64> {
    vec![
        key.modid.into(),
        key.cmdid.into(),
        host.ip_bits().into(),
        host.port.into(),
    ]
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

/// One SQL statement with its positional `?` parameters, in SQL both backends run as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Statement {
    /// The SQL text.
    pub(crate) sql: &'static str,
    /// The values of its `?` placeholders, in order.
    pub(crate) params: Vec<i64>,
}

/// What the backend does next inside an edit's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EditStep {
    /// Run this query; report 1 if it returned a row, else 0.
    Query(Statement),
    /// Run this statement; report its affected rows.
    Execute(Statement),
    /// Commit; the edit did this.
    Commit(EditOutcome),
    /// Roll back; the edit found nothing to do ([`EditOutcome::UNCHANGED`]).
    Rollback,
}

/// Where an [`EditPlan`] is.
#[derive(Debug, Clone, Copy)]
enum Stage {
    /// `AddHost` only: looking for the host among the stored rows.
    LookForHost(RouteKey, HostAddr),
    /// Changing `RouteData`.
    Change,
    /// Logging the change in `RouteChange`.
    LogChange { rows_changed: u64 },
    /// Setting `RouteVersion`.
    SetVersion { rows_changed: u64 },
    /// Done, with whatever changed.
    Done { rows_changed: u64 },
}

/// The statements of one route edit's transaction, each chosen from what the previous one did.
///
/// The backend starts the transaction, reads (and locks) the current version, then calls
/// [`EditPlan::start`] and [`EditPlan::next`] until it gets `Commit` or `Rollback`.
#[derive(Debug)]
pub(crate) struct EditPlan {
    edit: RouteEdit,
    /// The version written if the edit changes a row.
    version: i64,
    /// The backend's upsert of `RouteVersion` row `id = 1`, with the version as its one `?`.
    set_version_sql: &'static str,
    stage: Stage,
}

impl EditPlan {
    /// The plan of `edit` over a database at version `current`, at `now_unix_seconds`;
    /// `set_version_sql` is the backend's upsert of `RouteVersion` row `id = 1`, taking the new
    /// version as its one `?`.
    pub(crate) fn new(
        edit: RouteEdit,
        current: i64,
        now_unix_seconds: i64,
        set_version_sql: &'static str,
    ) -> EditPlan {
        EditPlan {
            edit,
            version: next_version(now_unix_seconds, current),
            set_version_sql,
            stage: match edit {
                RouteEdit::AddHost(key, host) => Stage::LookForHost(key, host),
                RouteEdit::RemoveHost(..) | RouteEdit::RemoveRoute(..) => Stage::Change,
            },
        }
    }

    /// The first step.
    pub(crate) fn start(&self) -> EditStep {
        self.step()
    }

    /// The step after the last one, which found or changed `rows` rows.
    pub(crate) fn next(&mut self, rows: u64) -> EditStep {
        self.stage = match self.stage {
            Stage::LookForHost(..) if rows > 0 => Stage::Done { rows_changed: 0 },
            Stage::LookForHost(..) => Stage::Change,
            Stage::Change if rows == 0 => Stage::Done { rows_changed: 0 },
            Stage::Change => Stage::LogChange { rows_changed: rows },
            Stage::LogChange { rows_changed } => Stage::SetVersion { rows_changed },
            Stage::SetVersion { rows_changed } | Stage::Done { rows_changed } => {
                Stage::Done { rows_changed }
            }
        };
        self.step()
    }

    /// What the current stage asks for.
    fn step(&self) -> EditStep {
        match self.stage {
            Stage::LookForHost(key, host) => EditStep::Query(Statement {
                sql: "SELECT id FROM RouteData WHERE modid = ? AND cmdid = ? \
                      AND serverip = ? AND serverport = ? LIMIT 1",
                params: host_params(key, host),
            }),
            Stage::Change => EditStep::Execute(self.edit.change()),
            Stage::LogChange { .. } => {
                let key = self.edit.key();
                EditStep::Execute(Statement {
                    sql: "INSERT INTO RouteChange (modid, cmdid, version) VALUES (?, ?, ?)",
                    params: vec![key.modid.into(), key.cmdid.into(), self.version],
                })
            }
            Stage::SetVersion { .. } => EditStep::Execute(Statement {
                sql: self.set_version_sql,
                params: vec![self.version],
            }),
            Stage::Done { rows_changed: 0 } => EditStep::Rollback,
            Stage::Done { rows_changed } => EditStep::Commit(EditOutcome {
                version: Some(self.version),
                rows_changed,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const SET_VERSION: &str = "SET VERSION ?";

    fn key() -> RouteKey {
        RouteKey::new(1, 2)
    }

    fn host() -> HostAddr {
        HostAddr::new(Ipv4Addr::new(10, 0, 0, 1), 80)
    }

    /// The SQL of every step the plan asks for, answering each with `rows` in turn, up to the end.
    fn run(edit: RouteEdit, rows: &[u64]) -> (Vec<&'static str>, EditStep) {
        let mut plan = EditPlan::new(edit, 1_000, 1_000, SET_VERSION);
        let mut step = plan.start();
        let mut sql = Vec::new();
        for &n in rows {
            match &step {
                EditStep::Query(s) | EditStep::Execute(s) => sql.push(s.sql),
                EditStep::Commit(_) | EditStep::Rollback => break,
            }
            step = plan.next(n);
        }
        (sql, step)
    }

    /// The end of a [`run`] that changed `rows_changed` rows: version 1_000 + 1.
    fn committed(rows_changed: u64) -> EditStep {
        EditStep::Commit(EditOutcome {
            version: Some(1_001),
            rows_changed,
        })
    }

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
    fn adding_a_new_host_inserts_it_logs_the_change_and_sets_the_version() {
        let (sql, end) = run(RouteEdit::AddHost(key(), host()), &[0, 1, 1, 1]);
        assert_eq!(sql.len(), 4, "{sql:?}");
        assert!(sql[0].starts_with("SELECT id FROM RouteData"), "{sql:?}");
        assert!(sql[1].starts_with("INSERT INTO RouteData"), "{sql:?}");
        assert!(sql[2].starts_with("INSERT INTO RouteChange"), "{sql:?}");
        assert_eq!(sql[3], SET_VERSION);
        assert_eq!(end, committed(1));
    }

    #[test]
    fn adding_a_host_already_there_rolls_back_without_a_version() {
        let (sql, end) = run(RouteEdit::AddHost(key(), host()), &[1]);
        assert_eq!(sql.len(), 1, "{sql:?}");
        assert_eq!(end, EditStep::Rollback);
    }

    #[test]
    fn removals_that_delete_nothing_roll_back_and_others_count_every_row() {
        let (_, end) = run(RouteEdit::RemoveHost(key(), host()), &[0]);
        assert_eq!(end, EditStep::Rollback);
        let (sql, end) = run(RouteEdit::RemoveRoute(key()), &[3, 1, 1]);
        assert!(sql[0].starts_with("DELETE FROM RouteData"), "{sql:?}");
        assert_eq!(end, committed(3));
    }

    #[test]
    fn every_statement_has_one_parameter_per_placeholder() {
        let edits = [
            RouteEdit::AddHost(key(), host()),
            RouteEdit::RemoveHost(key(), host()),
            RouteEdit::RemoveRoute(key()),
        ];
        for edit in edits {
            let mut plan = EditPlan::new(edit, 5, 0, SET_VERSION);
            let mut step = plan.start();
            while let EditStep::Query(s) | EditStep::Execute(s) = &step {
                assert_eq!(s.sql.matches('?').count(), s.params.len(), "{s:?}");
                let rows = u64::from(matches!(step, EditStep::Execute(_)));
                step = plan.next(rows);
            }
            assert!(matches!(step, EditStep::Commit(_)), "{edit:?}: {step:?}");
        }
    }
}
