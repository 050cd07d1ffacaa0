//! One connection's subscription set: the keys an agent asked for on that connection, which are
//! the keys it gets pushes for, and among them the keys it is *owed*: those that changed while
//! its write queue had no room for the push. An owed key is remembered once however often it
//! changes, and written from the snapshot current when room comes, so a connection that falls
//! behind holds at most one mark per subscription, never one per change. The set is bounded
//! (`[dns] max_subscriptions_per_connection`): beyond it a key is answered but not subscribed
//! ([`Subscribed::Refused`]), so an agent asking for ever new keys cannot grow the dns; the
//! oldest subscriptions are kept rather than dropped, as they are the ones a well-behaved agent
//! holds longest. Owned by the
//! connection's task alone (no locks); dropping it with the connection drops every subscription
//! and owed key the connection had.

use crate::stats::DnsStats;
use lars_wire::RouteKey;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

/// What [`Subscriptions::subscribe`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscribed {
    /// The key is subscribed now.
    New,
    /// It was subscribed already.
    Already,
    /// The set is full: not subscribed (counted).
    Refused {
        /// The first refusal on this connection (log it).
        first: bool,
    },
}

/// The keys one connection is subscribed to, and those it is owed.
#[derive(Debug)]
pub struct Subscriptions {
    keys: HashSet<RouteKey>,
    /// Most keys held.
    max: usize,
    /// Keys refused because the set was full.
    refused: u64,
    /// Owed keys, each once; `owed_order` holds the same keys in the order they became owed, so
    /// the oldest debt is paid first and taking one is O(1).
    owed: HashSet<RouteKey>,
    owed_order: VecDeque<RouteKey>,
    stats: Arc<DnsStats>,
}

impl Subscriptions {
    /// An empty set of at most `max` keys that keeps the service-wide subscription and owed-key
    /// gauges up to date.
    pub fn new(stats: Arc<DnsStats>, max: usize) -> Subscriptions {
        Subscriptions {
            keys: HashSet::new(),
            max,
            refused: 0,
            owed: HashSet::new(),
            owed_order: VecDeque::new(),
            stats,
        }
    }

    /// Subscribes to `key`, unless the set is full.
    pub fn subscribe(&mut self, key: RouteKey) -> Subscribed {
        if self.keys.contains(&key) {
            return Subscribed::Already;
        }
        if self.keys.len() >= self.max {
            DnsStats::inc(&self.stats.subscriptions_refused);
            self.refused += 1;
            return Subscribed::Refused {
                first: self.refused == 1,
            };
        }
        self.keys.insert(key);
        DnsStats::inc(&self.stats.subscriptions);
        Subscribed::New
    }

    /// Whether the connection gets pushes for `key`.
    pub fn contains(&self, key: &RouteKey) -> bool {
        self.keys.contains(key)
    }

    /// The subscribed keys among `changed`, iterating whichever set is smaller.
    pub fn matching<'a>(&'a self, changed: &'a HashSet<RouteKey>) -> Vec<RouteKey> {
        if changed.len() <= self.keys.len() {
            changed
                .iter()
                .filter(|k| self.keys.contains(k))
                .copied()
                .collect()
        } else {
            self.keys
                .iter()
                .filter(|k| changed.contains(k))
                .copied()
                .collect()
        }
    }

    /// Every subscribed key.
    pub fn keys(&self) -> impl Iterator<Item = RouteKey> + '_ {
        self.keys.iter().copied()
    }

    /// Number of subscribed keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is subscribed.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Marks subscribed `key` owed; true when it was not owed yet. A key not subscribed is
    /// ignored.
    pub fn owe(&mut self, key: RouteKey) -> bool {
        if !self.keys.contains(&key) || !self.owed.insert(key) {
            return false;
        }
        self.owed_order.push_back(key);
        DnsStats::inc(&self.stats.owed_keys);
        true
    }

    /// Marks every subscribed key owed (after change batches were missed); returns how many
    /// became owed.
    pub fn owe_all(&mut self) -> usize {
        let before = self.owed.len();
        for &key in &self.keys {
            if self.owed.insert(key) {
                self.owed_order.push_back(key);
            }
        }
        let added = self.owed.len() - before;
        self.stats
            .owed_keys
            .fetch_add(added as u64, std::sync::atomic::Ordering::Relaxed);
        added
    }

    /// Whether any key is owed.
    pub fn owes_any(&self) -> bool {
        !self.owed.is_empty()
    }

    /// Number of owed keys.
    pub fn owed(&self) -> usize {
        self.owed.len()
    }

    /// Takes the key owed longest, which is no longer owed then.
    pub fn next_owed(&mut self) -> Option<RouteKey> {
        let key = self.owed_order.pop_front()?;
        self.owed.remove(&key);
        DnsStats::sub(&self.stats.owed_keys, 1);
        Some(key)
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        DnsStats::sub(&self.stats.subscriptions, self.keys.len() as u64);
        DnsStats::sub(&self.stats.owed_keys, self.owed.len() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn subscribing_twice_counts_once_and_dropping_releases_all() {
        let stats = Arc::new(DnsStats::default());
        let mut subs = Subscriptions::new(stats.clone(), usize::MAX);
        assert_eq!(subs.subscribe(RouteKey::new(1, 1)), Subscribed::New);
        assert_eq!(subs.subscribe(RouteKey::new(1, 1)), Subscribed::Already);
        assert_eq!(subs.subscribe(RouteKey::new(1, 2)), Subscribed::New);
        assert_eq!(stats.subscriptions.load(Ordering::Relaxed), 2);
        subs.owe(RouteKey::new(1, 2));
        assert_eq!(stats.owed_keys.load(Ordering::Relaxed), 1);
        drop(subs);
        assert_eq!(stats.subscriptions.load(Ordering::Relaxed), 0);
        assert_eq!(stats.owed_keys.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn matching_gives_only_subscribed_changed_keys() {
        let mut subs = Subscriptions::new(Arc::new(DnsStats::default()), usize::MAX);
        subs.subscribe(RouteKey::new(1, 1));
        subs.subscribe(RouteKey::new(2, 2));
        let changed = HashSet::from([RouteKey::new(2, 2), RouteKey::new(3, 3)]);
        assert_eq!(subs.matching(&changed), vec![RouteKey::new(2, 2)]);
    }

    #[test]
    fn a_key_changed_many_times_is_owed_once_oldest_first() {
        let stats = Arc::new(DnsStats::default());
        let mut subs = Subscriptions::new(stats.clone(), usize::MAX);
        let (a, b) = (RouteKey::new(1, 1), RouteKey::new(1, 2));
        subs.subscribe(a);
        subs.subscribe(b);
        for _ in 0..1000 {
            subs.owe(b);
            subs.owe(a);
        }
        assert_eq!(subs.owed(), 2);
        assert_eq!(stats.owed_keys.load(Ordering::Relaxed), 2);
        assert_eq!(subs.next_owed(), Some(b));
        assert_eq!(subs.next_owed(), Some(a));
        assert_eq!(subs.next_owed(), None);
        assert!(!subs.owes_any());
        assert_eq!(stats.owed_keys.load(Ordering::Relaxed), 0);
        // Paid, then changed again: owed again.
        assert!(subs.owe(a));
    }

    #[test]
    fn only_subscribed_keys_are_owed() {
        let mut subs = Subscriptions::new(Arc::new(DnsStats::default()), usize::MAX);
        assert!(!subs.owe(RouteKey::new(9, 9)));
        assert!(!subs.owes_any());
    }

    #[test]
    fn owing_all_marks_each_subscription_once() {
        let stats = Arc::new(DnsStats::default());
        let mut subs = Subscriptions::new(stats.clone(), usize::MAX);
        for cmdid in 0..100 {
            subs.subscribe(RouteKey::new(1, cmdid));
        }
        subs.owe(RouteKey::new(1, 7));
        assert_eq!(subs.owe_all(), 99);
        assert_eq!(subs.owe_all(), 0);
        assert_eq!(subs.owed(), 100);
        assert_eq!(stats.owed_keys.load(Ordering::Relaxed), 100);
        assert_eq!(subs.next_owed(), Some(RouteKey::new(1, 7)), "oldest first");
    }

    #[test]
    fn a_full_set_refuses_new_keys_and_keeps_the_old_ones() {
        let stats = Arc::new(DnsStats::default());
        let mut subs = Subscriptions::new(stats.clone(), 2);
        let [a, b, c] = [1, 2, 3].map(|cmdid| RouteKey::new(1, cmdid));
        subs.subscribe(a);
        subs.subscribe(b);
        assert_eq!(subs.subscribe(c), Subscribed::Refused { first: true });
        assert_eq!(subs.subscribe(c), Subscribed::Refused { first: false });
        assert_eq!(subs.subscribe(a), Subscribed::Already);
        assert!(subs.contains(&a) && subs.contains(&b) && !subs.contains(&c));
        assert!(!subs.owe(c), "a refused key is never owed");
        assert_eq!(stats.subscriptions.load(Ordering::Relaxed), 2);
        assert_eq!(stats.subscriptions_refused.load(Ordering::Relaxed), 2);
    }
}
