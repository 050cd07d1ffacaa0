//! One connection's subscription set: the keys an agent asked for on that connection, which are
//! the keys it gets pushes for. Owned by the connection's task alone (no locks); dropping it
//! with the connection drops every subscription the connection had.

use crate::stats::DnsStats;
use lars_wire::RouteKey;
use std::collections::HashSet;
use std::sync::Arc;

/// The keys one connection is subscribed to.
#[derive(Debug)]
pub struct Subscriptions {
    keys: HashSet<RouteKey>,
    stats: Arc<DnsStats>,
}

impl Subscriptions {
    /// An empty set that keeps the service-wide subscription gauge up to date.
    pub fn new(stats: Arc<DnsStats>) -> Subscriptions {
        Subscriptions {
            keys: HashSet::new(),
            stats,
        }
    }

    /// Subscribes to `key`; true when it was not subscribed yet.
    pub fn subscribe(&mut self, key: RouteKey) -> bool {
        let new = self.keys.insert(key);
        if new {
            DnsStats::inc(&self.stats.subscriptions);
        }
        new
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
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        DnsStats::sub(&self.stats.subscriptions, self.keys.len() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn subscribing_twice_counts_once_and_dropping_releases_all() {
        let stats = Arc::new(DnsStats::default());
        let mut subs = Subscriptions::new(stats.clone());
        assert!(subs.subscribe(RouteKey::new(1, 1)));
        assert!(!subs.subscribe(RouteKey::new(1, 1)));
        assert!(subs.subscribe(RouteKey::new(1, 2)));
        assert_eq!(stats.subscriptions.load(Ordering::Relaxed), 2);
        drop(subs);
        assert_eq!(stats.subscriptions.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn matching_gives_only_subscribed_changed_keys() {
        let mut subs = Subscriptions::new(Arc::new(DnsStats::default()));
        subs.subscribe(RouteKey::new(1, 1));
        subs.subscribe(RouteKey::new(2, 2));
        let changed = HashSet::from([RouteKey::new(2, 2), RouteKey::new(3, 3)]);
        assert_eq!(subs.matching(&changed), vec![RouteKey::new(2, 2)]);
    }
}
