//! The key set a run spreads its requests over, and where each key is sent. A key is a
//! `(modid, cmdid)` from the product of two inclusive id ranges; it goes to the agent port
//! `base_port + (modid + cmdid) % shards`, computed by [`lars_wire::client::shard_of`] so the
//! generator sends every key exactly where the client library (and the original Lars clients)
//! would. Pure arithmetic: nothing is materialised, a million keys cost nothing.
//!
//! [`KeyWalk`] is the order a run takes keys in: one counter shared by every socket of every
//! thread, so that whatever the threads × sockets × requests in flight and however unevenly
//! they progress, each key is sent once before any key is sent again. It is the only state the
//! generator threads share while they run (one relaxed atomic add per request, no lock); the
//! `qps` preset does not use it (one fixed key per socket).

use lars_wire::client::shard_of;
use serde::Serialize;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::num::NonZeroU16;
use std::sync::atomic::{AtomicU64, Ordering};

/// Most keys a run may use (the product of the two ranges).
pub const MAX_KEYS: u64 = 1 << 32;

/// An inclusive range of ids, `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IdRange {
    /// The first id.
    pub first: i32,
    /// The last id (at least `first`).
    pub last: i32,
}

impl IdRange {
    /// The single id `id`.
    pub const fn one(id: i32) -> IdRange {
        IdRange {
            first: id,
            last: id,
        }
    }

    /// How many ids it holds (at least 1).
    pub fn count(&self) -> u64 {
        (i64::from(self.last) - i64::from(self.first) + 1) as u64
    }

    /// Parses `A` or `A..B` (both ends included, `A <= B`).
    pub fn parse(value: &str) -> Result<IdRange, String> {
        let id = |text: &str| {
            text.trim()
                .parse::<i32>()
                .map_err(|_| format!("`{text}` is not an id in {}..{}", i32::MIN, i32::MAX))
        };
        let range = match value.split_once("..") {
            None => IdRange::one(id(value)?),
            Some((first, last)) => IdRange {
                first: id(first)?,
                last: id(last)?,
            },
        };
        if range.first > range.last {
            return Err(format!(
                "range `{value}` is empty: its first id is above its last"
            ));
        }
        Ok(range)
    }
}

impl fmt::Display for IdRange {
    /// `A` or `A..B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}..{}", self.first, self.last)
        }
    }
}

/// Every `(modid, cmdid)` of `modid × cmdid`, numbered modid-major from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySet {
    modid: IdRange,
    cmdid: IdRange,
}

impl KeySet {
    /// The product of two ranges; at most [`MAX_KEYS`] keys.
    pub fn new(modid: IdRange, cmdid: IdRange) -> Result<KeySet, String> {
        match modid.count().checked_mul(cmdid.count()) {
            Some(n) if n <= MAX_KEYS => Ok(KeySet { modid, cmdid }),
            _ => Err(format!(
                "modid {modid} x cmdid {cmdid} is more than {MAX_KEYS} keys"
            )),
        }
    }

    /// The modid range.
    pub fn modid(&self) -> IdRange {
        self.modid
    }

    /// The cmdid range.
    pub fn cmdid(&self) -> IdRange {
        self.cmdid
    }

    /// How many keys there are (at least 1).
    pub fn len(&self) -> u64 {
        self.modid.count() * self.cmdid.count()
    }

    /// Always false: a key set holds at least one key.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Key number `index % len`.
    pub fn key(&self, index: u64) -> (i32, i32) {
        let index = index % self.len();
        let per_modid = self.cmdid.count();
        let modid = i64::from(self.modid.first) + (index / per_modid) as i64;
        let cmdid = i64::from(self.cmdid.first) + (index % per_modid) as i64;
        // Both stay within their ranges, which are i32 ranges.
        (modid as i32, cmdid as i32)
    }
}

/// The run's walk over its key set: the `n`th key taken, by any socket of any thread, is key
/// number `n % len` of the [`KeySet`]. Sockets take a key as a request goes out, so the first
/// `len` requests of a run cover the whole key set, and so does each `len` after them (give or
/// take the one key a socket holds for a request the kernel has not taken yet).
#[derive(Debug)]
pub struct KeyWalk {
    keys: KeySet,
    taken: AtomicU64,
}

impl KeyWalk {
    /// A walk from key number 0.
    pub fn new(keys: KeySet) -> KeyWalk {
        KeyWalk {
            keys,
            taken: AtomicU64::new(0),
        }
    }

    /// The key set walked.
    pub fn keys(&self) -> KeySet {
        self.keys
    }

    /// The next key of the walk. Only the count matters, not its order with other memory, so
    /// the add is relaxed; at 2^64 keys taken it wraps, which no run reaches.
    pub fn take(&self) -> (i32, i32) {
        self.keys.key(self.taken.fetch_add(1, Ordering::Relaxed))
    }
}

/// Where the agent's shard ports are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// The agent's address.
    pub ip: Ipv4Addr,
    /// The port of shard 0.
    pub base_port: u16,
    /// How many consecutive ports from `base_port`.
    pub shards: NonZeroU16,
}

impl Ports {
    /// The shard that serves `(modid, cmdid)`: `(modid + cmdid) % shards`.
    pub fn shard(&self, modid: i32, cmdid: i32) -> u16 {
        shard_of(modid, cmdid, self.shards)
    }

    /// The address requests for `(modid, cmdid)` go to: `ip:(base_port + shard)`. The options
    /// check that `base_port + shards - 1` is a port, so the sum cannot overflow.
    pub fn addr(&self, modid: i32, cmdid: i32) -> SocketAddr {
        let port = self.base_port.wrapping_add(self.shard(modid, cmdid));
        SocketAddr::V4(SocketAddrV4::new(self.ip, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(base_port: u16, shards: u16) -> Ports {
        Ports {
            ip: Ipv4Addr::LOCALHOST,
            base_port,
            shards: NonZeroU16::new(shards).unwrap(),
        }
    }

    #[test]
    fn a_key_goes_to_base_port_plus_its_sum_modulo_shards() {
        let p = ports(8888, 3);
        assert_eq!(p.addr(1, 1), "127.0.0.1:8890".parse().unwrap());
        assert_eq!(p.addr(1, 2), "127.0.0.1:8888".parse().unwrap());
        assert_eq!(p.addr(2, 2), "127.0.0.1:8889".parse().unwrap());
        for modid in 0..20 {
            for cmdid in 0..20 {
                assert_eq!(
                    p.addr(modid, cmdid).port(),
                    8888 + ((modid + cmdid) % 3) as u16
                );
            }
        }
        assert_eq!(ports(40000, 1).addr(7, 9).port(), 40000);
    }

    #[test]
    fn negative_sums_still_land_on_a_shard_port() {
        let p = ports(65533, 3);
        for (modid, cmdid) in [(-1, 0), (i32::MIN, i32::MIN), (i32::MAX, i32::MAX)] {
            let port = p.addr(modid, cmdid).port();
            assert!((65533..=65535).contains(&port), "{modid},{cmdid} -> {port}");
        }
    }

    #[test]
    fn ranges_parse_as_one_id_or_both_ends_included() {
        assert_eq!(IdRange::parse("7"), Ok(IdRange::one(7)));
        assert_eq!(IdRange::parse("1..10"), Ok(IdRange { first: 1, last: 10 }));
        assert_eq!(IdRange::parse("1..10").unwrap().count(), 10);
        assert_eq!(
            IdRange::parse("-5..-1"),
            Ok(IdRange {
                first: -5,
                last: -1
            })
        );
        assert!(IdRange::parse("10..1").unwrap_err().contains("empty"));
        assert!(IdRange::parse("x").is_err());
        assert!(IdRange::parse("1..").is_err());
        assert!(IdRange::parse("2147483648").is_err());
        let all = IdRange::parse("-2147483648..2147483647").unwrap();
        assert_eq!(all.count(), 1 << 32);
    }

    #[test]
    fn keys_are_numbered_modid_major_and_wrap() {
        let keys = KeySet::new(
            IdRange::parse("1..2").unwrap(),
            IdRange::parse("5..7").unwrap(),
        )
        .unwrap();
        assert_eq!(keys.len(), 6);
        let all: Vec<_> = (0..7).map(|i| keys.key(i)).collect();
        assert_eq!(
            all,
            [(1, 5), (1, 6), (1, 7), (2, 5), (2, 6), (2, 7), (1, 5)]
        );
    }

    #[test]
    fn a_shared_walk_takes_every_key_once_before_any_again_across_threads() {
        let keys = KeySet::new(
            IdRange::parse("1..50").unwrap(),
            IdRange::parse("1..20").unwrap(),
        )
        .unwrap();
        let walk = std::sync::Arc::new(KeyWalk::new(keys));
        let takers: Vec<_> = (0..4)
            .map(|_| {
                let walk = walk.clone();
                std::thread::spawn(move || (0..500).map(|_| walk.take()).collect::<Vec<_>>())
            })
            .collect();
        let mut times = std::collections::BTreeMap::new();
        for key in takers.into_iter().flat_map(|t| t.join().unwrap()) {
            *times.entry(key).or_insert(0) += 1;
        }
        // 2,000 takes of 1,000 keys: every key exactly twice, whichever thread took it.
        assert_eq!(times.len(), 1000);
        assert!(times.values().all(|n| *n == 2), "{times:?}");
        // And the walk goes on where the threads left it: key 0 again.
        assert_eq!(walk.take(), (1, 1));
    }

    #[test]
    fn too_many_keys_are_refused() {
        let all = IdRange::parse("-2147483648..2147483647").unwrap();
        assert!(KeySet::new(all, IdRange::one(1)).is_ok());
        assert!(KeySet::new(all, IdRange::parse("1..2").unwrap()).is_err());
        let edge = KeySet::new(all, IdRange::one(0)).unwrap();
        assert_eq!(edge.key(0), (i32::MIN, 0));
        assert_eq!(edge.key((1 << 32) - 1), (i32::MAX, 0));
    }
}
