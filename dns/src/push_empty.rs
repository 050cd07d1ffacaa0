//! Push-empty protection, the dns side: the rule that decides, for one reload, which routes that
//! lost every host are published empty and which keep serving their last hosts because nothing
//! accounts for the loss (`docs/FAIL_STATIC.md`, "Push-empty protection").
//!
//! A route emptied by a reload is *accounted for* when a `RouteChange` row written since the
//! previous snapshot names it: an operator's `lars route del` (or the removal of its last host)
//! did it. The others — a dns restarted on the wrong database, `DELETE FROM RouteData` by hand —
//! are *unaccounted*; when more of them than `push_empty_threshold` percent of the routes that
//! had hosts empty at once, every one of them is held back. Pure: the route synchroniser loads
//! the snapshots and the accounting keys and applies the verdict.

use crate::snapshot::RouteSnapshot;
use lars_wire::RouteKey;
use std::collections::HashSet;

/// The rule, with its one setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushEmptyRule {
    /// Percent of the routes with hosts that may lose every host in one reload without a route
    /// edit accounting for it; 0..=100, 100 turns the protection off.
    threshold_percent: u8,
}

/// What the rule decided for one reload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Routes that had hosts in the previous snapshot and have none in the new one, key order.
    pub emptied: Vec<RouteKey>,
    /// Those of `emptied` no route edit accounts for.
    pub unaccounted: Vec<RouteKey>,
    /// Those of `unaccounted` to keep serving from the previous snapshot (all or none).
    pub held: Vec<RouteKey>,
    /// Routes with hosts in the previous snapshot: what the threshold is a percentage of.
    pub base: usize,
}

impl PushEmptyRule {
    /// The rule holding back more than `threshold_percent` percent (at most 100).
    pub fn new(threshold_percent: u8) -> PushEmptyRule {
        PushEmptyRule {
            threshold_percent: threshold_percent.min(100),
        }
    }

    /// Judges the reload from `older` to `newer`, where `accounted` holds the keys of the
    /// `RouteChange` rows written since `older` was loaded.
    ///
    /// The comparison is strict (`unaccounted × 100 > threshold × base`), so with one route a
    /// lost route is always 100 % and held for any threshold below 100: no separate minimum
    /// count is needed for small systems.
    pub fn judge(
        &self,
        older: &RouteSnapshot,
        newer: &RouteSnapshot,
        accounted: &HashSet<RouteKey>,
    ) -> Verdict {
        let emptied = older.emptied_keys(newer);
        let unaccounted: Vec<RouteKey> = emptied
            .iter()
            .filter(|key| !accounted.contains(key))
            .copied()
            .collect();
        let base = older.routes();
        let over =
            unaccounted.len() as u128 * 100 > u128::from(self.threshold_percent) * base as u128;
        let held = if over {
            unaccounted.clone()
        } else {
            Vec::new()
        };
        Verdict {
            emptied,
            unaccounted,
            held,
            base,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lars_store::RouteTable;
    use lars_wire::HostAddr;
    use std::net::Ipv4Addr;

    fn snapshot(keys: impl IntoIterator<Item = i32>) -> RouteSnapshot {
        let host = HostAddr::new(Ipv4Addr::LOCALHOST, 80);
        let table: RouteTable = keys
            .into_iter()
            .map(|k| (RouteKey::new(k, k), vec![host]))
            .collect();
        RouteSnapshot::build(1, table).0
    }

    fn keys(ids: impl IntoIterator<Item = i32>) -> Vec<RouteKey> {
        ids.into_iter().map(|k| RouteKey::new(k, k)).collect()
    }

    fn accounted(ids: impl IntoIterator<Item = i32>) -> HashSet<RouteKey> {
        keys(ids).into_iter().collect()
    }

    #[test]
    fn an_emptied_table_is_held_whole() {
        let verdict = PushEmptyRule::new(50).judge(&snapshot(1..=6), &snapshot([]), &accounted([]));
        assert_eq!(verdict.held, keys(1..=6));
        assert_eq!(verdict.base, 6);
    }

    #[test]
    fn routes_a_route_edit_accounts_for_are_published_even_all_of_them() {
        let rule = PushEmptyRule::new(50);
        let verdict = rule.judge(&snapshot(1..=6), &snapshot([]), &accounted(1..=6));
        assert_eq!(verdict.emptied, keys(1..=6));
        assert!(verdict.unaccounted.is_empty() && verdict.held.is_empty());
        // The last route of a one-route system, deleted with `lars route del`.
        let verdict = rule.judge(&snapshot([1]), &snapshot([]), &accounted([1]));
        assert!(verdict.held.is_empty());
    }

    #[test]
    fn unaccounted_losses_up_to_the_threshold_are_published_and_one_more_holds_them_all() {
        let rule = PushEmptyRule::new(50);
        let verdict = rule.judge(&snapshot(1..=6), &snapshot(4..=6), &accounted([]));
        assert_eq!(verdict.unaccounted, keys(1..=3));
        assert!(verdict.held.is_empty(), "3 of 6 is not more than 50 %");
        let verdict = rule.judge(&snapshot(1..=6), &snapshot(5..=6), &accounted([]));
        assert_eq!(verdict.held, keys(1..=4));
        // Accounted losses do not count towards the threshold.
        let verdict = rule.judge(&snapshot(1..=6), &snapshot(5..=6), &accounted([1, 2]));
        assert!(verdict.held.is_empty());
    }

    #[test]
    fn one_route_lost_unaccounted_is_held_in_a_one_route_system() {
        let verdict = PushEmptyRule::new(99).judge(&snapshot([1]), &snapshot([]), &accounted([]));
        assert_eq!(verdict.held, keys([1]));
    }

    #[test]
    fn threshold_100_is_off_and_0_holds_any_unaccounted_loss() {
        let verdict =
            PushEmptyRule::new(100).judge(&snapshot(1..=6), &snapshot([]), &accounted([]));
        assert!(verdict.held.is_empty());
        let verdict =
            PushEmptyRule::new(0).judge(&snapshot(1..=100), &snapshot(2..=100), &accounted([]));
        assert_eq!(verdict.held, keys([1]));
    }

    #[test]
    fn nothing_emptied_holds_nothing() {
        let verdict = PushEmptyRule::new(0).judge(&snapshot([]), &snapshot(1..=3), &accounted([]));
        assert_eq!(verdict, Verdict::default());
    }
}
