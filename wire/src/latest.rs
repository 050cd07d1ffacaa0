//! "Latest statistics per key win": [`LatestWins`], a keyed map in which a newer value of a key
//! replaces the older one in place, keys stay in the order they first arrived, and the values
//! replaced are counted.
//!
//! Lars statistics carry full window counts, not increments, so of several values of one key
//! only the latest is worth sending or storing. Three parts keep values that way: the agent's
//! report uplink (per route, until the reporter has them), the reporter's mailbox (per
//! `ServerCallStatus` key, until the database has them) and the store (per key within one
//! write). They all use this one container. Plain data: no I/O, no clock, no locks.
//!
//! It lives in lars-wire because that is the one crate the agent, the reporter and the store all
//! depend on; it knows nothing of the messages.

use std::hash::Hash;

use lru::LruCache;

/// The latest value of every key, oldest key first.
///
/// The map is an [`LruCache`] used without a capacity and without ever promoting an entry:
/// that makes it an insertion-ordered linked hash map with O(1) insert, lookup, update in place,
/// removal of any key and removal of the oldest.
pub struct LatestWins<K, V> {
    entries: LruCache<K, V>,
    replaced: u64,
}

impl<K: Hash + Eq, V> LatestWins<K, V> {
    /// An empty map.
    pub fn new() -> LatestWins<K, V> {
        LatestWins {
            entries: LruCache::unbounded(),
            replaced: 0,
        }
    }

    /// Keys (= values) held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many values [`LatestWins::put`] has replaced so far.
    pub fn replaced(&self) -> u64 {
        self.replaced
    }

    /// Puts `value` in as the latest of `key`: it replaces the value held for `key` in place
    /// (the key keeps its place; the old value is returned and counted as replaced) or `key`
    /// becomes the newest key.
    pub fn put(&mut self, key: K, value: V) -> Option<V> {
        match self.entries.peek_mut(&key) {
            Some(held) => {
                self.replaced += 1;
                Some(std::mem::replace(held, value))
            }
            None => {
                self.entries.put(key, value);
                None
            }
        }
    }

    /// The value held for `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.peek(key)
    }

    /// The value held for `key`, to change in place (not counted as a replacement, and the key
    /// keeps its place).
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries.peek_mut(key)
    }

    /// Removes `key` wherever it is.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.entries.pop(key)
    }

    /// The oldest key and its value.
    pub fn oldest(&self) -> Option<(&K, &V)> {
        self.entries.peek_lru()
    }

    /// Removes the oldest key.
    pub fn pop_oldest(&mut self) -> Option<(K, V)> {
        self.entries.pop_lru()
    }

    /// Every key and its value, oldest key first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + '_ {
        self.entries.iter().rev()
    }

    /// Removes every key, oldest first.
    pub fn drain(&mut self) -> impl Iterator<Item = (K, V)> + '_ {
        std::iter::from_fn(|| self.entries.pop_lru())
    }
}

impl<K: Hash + Eq, V> Default for LatestWins<K, V> {
    fn default() -> LatestWins<K, V> {
        LatestWins::new()
    }
}

impl<K: Hash + Eq + std::fmt::Debug, V: std::fmt::Debug> std::fmt::Debug for LatestWins<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys(map: &LatestWins<u8, u32>) -> Vec<u8> {
        map.iter().map(|(k, _)| *k).collect()
    }

    #[test]
    fn a_newer_value_replaces_the_held_one_in_place_and_is_counted() {
        let mut map = LatestWins::new();
        assert_eq!(map.put(1u8, 10u32), None);
        assert_eq!(map.put(2, 20), None);
        assert_eq!(map.put(1, 11), Some(10));
        assert_eq!(map.replaced(), 1);
        assert_eq!(map.len(), 2);
        assert_eq!(keys(&map), [1, 2], "key 1 keeps its place");
        assert_eq!(map.get(&1), Some(&11));
        assert_eq!(map.oldest(), Some((&1, &11)));
    }

    #[test]
    fn changing_a_value_in_place_neither_moves_nor_counts_it() {
        let mut map = LatestWins::new();
        map.put(1u8, 1u32);
        map.put(2, 2);
        *map.get_mut(&1).unwrap() += 5;
        assert_eq!(keys(&map), [1, 2]);
        assert_eq!(map.get(&1), Some(&6));
        assert_eq!(map.replaced(), 0);
    }

    #[test]
    fn keys_leave_from_anywhere_or_oldest_first() {
        let mut map = LatestWins::new();
        for k in 1u8..=4 {
            map.put(k, u32::from(k));
        }
        assert_eq!(map.remove(&3), Some(3));
        assert_eq!(map.remove(&3), None);
        assert_eq!(map.pop_oldest(), Some((1, 1)));
        map.put(1, 9);
        assert_eq!(map.drain().collect::<Vec<_>>(), [(2, 2), (4, 4), (1, 9)]);
        assert!(map.is_empty());
        assert_eq!(map.pop_oldest(), None);
        assert_eq!(format!("{map:?}"), "{}");
    }

    proptest! {
        /// Against a plain model: the last value of every key, keys in first-arrival order, and
        /// `puts = len + replaced`.
        #[test]
        fn it_holds_the_last_value_of_each_key_in_first_arrival_order(
            puts in proptest::collection::vec((0u8..10, any::<u32>()), 0..200),
        ) {
            let mut map = LatestWins::new();
            let mut model: Vec<(u8, u32)> = Vec::new();
            for &(k, v) in &puts {
                let old = map.put(k, v);
                match model.iter_mut().find(|(mk, _)| *mk == k) {
                    Some(entry) => {
                        prop_assert_eq!(old, Some(entry.1));
                        entry.1 = v;
                    }
                    None => {
                        prop_assert_eq!(old, None);
                        model.push((k, v));
                    }
                }
            }
            prop_assert_eq!(puts.len() as u64, map.len() as u64 + map.replaced());
            let held: Vec<(u8, u32)> = map.iter().map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(held, model);
        }
    }
}
