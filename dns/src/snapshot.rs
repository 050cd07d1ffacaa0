//! The immutable route snapshot the service answers from: every route's `GetRouteResponse`
//! frame, encoded once when the snapshot is built, so a reply or a push to a thousand agents is a
//! reference-counted copy of the same bytes. A new snapshot replaces the old one whole
//! ([`arc_swap`]); readers never wait for a reload.
//!
//! Besides the routes loaded from the store, a snapshot may carry routes kept from the one before
//! it (held back by push-empty protection, [`crate::push_empty`]) and the keys of routes that an
//! operator's route edit removed, whose empty answer says so (`removed`), so an agent applies it.

use bytes::{Bytes, BytesMut};
use lars_store::RouteTable;
use lars_wire::MsgId;
use lars_wire::frame::encode_frame;
use lars_wire::messages::{GetRouteResponse, HostInfo};
use lars_wire::{HostAddr, RouteKey};
use std::collections::{HashMap, HashSet};

/// One consistent view of every route.
#[derive(Debug, Default)]
pub struct RouteSnapshot {
    /// The `RouteVersion` this snapshot was loaded at.
    pub version: i64,
    /// Every route with hosts: its frame and its number of hosts.
    frames: HashMap<RouteKey, (Bytes, usize)>,
    /// Keys without hosts whose removal a route edit accounts for, with their `removed` frame.
    removed: HashMap<RouteKey, Bytes>,
    /// Keys in `frames` kept from an older snapshot instead of being emptied.
    held: HashSet<RouteKey>,
    hosts: usize,
}

impl RouteSnapshot {
    /// Builds a snapshot from a loaded route table. Hosts are sorted so that two loads of the same
    /// routes give byte-identical frames. A route too large for one frame (over about 5,000
    /// hosts) is cut to what fits, and returned in the second value so the caller can log it.
    pub fn build(version: i64, routes: RouteTable) -> (RouteSnapshot, Vec<RouteKey>) {
        let mut frames = HashMap::with_capacity(routes.len());
        let mut hosts = 0;
        let mut truncated = Vec::new();
        for (key, mut list) in routes {
            list.sort_unstable_by_key(|h| (h.ip, h.port));
            list.dedup();
            if list.is_empty() {
                continue;
            }
            let mut frame = route_frame(key, &list, false);
            while frame.is_none() {
                truncated.push(key);
                list.truncate(list.len() * 9 / 10);
                frame = route_frame(key, &list, false);
            }
            hosts += list.len();
            if let Some(frame) = frame {
                frames.insert(key, (frame, list.len()));
            }
        }
        truncated.dedup();
        let snapshot = RouteSnapshot {
            version,
            frames,
            removed: HashMap::new(),
            held: HashSet::new(),
            hosts,
        };
        (snapshot, truncated)
    }

    /// The `GetRouteResponse` frame for `key`: its hosts, or an empty list for an unknown key
    /// (marked `removed` when a route edit accounts for it).
    pub fn frame(&self, key: RouteKey) -> Bytes {
        if let Some((frame, _)) = self.frames.get(&key) {
            return frame.clone();
        }
        match self.removed.get(&key) {
            Some(frame) => frame.clone(),
            None => route_frame(key, &[], false).unwrap_or_default(),
        }
    }

    /// Keys with hosts in `self` and none in `newer`, in key order.
    pub fn emptied_keys(&self, newer: &RouteSnapshot) -> Vec<RouteKey> {
        let mut emptied: Vec<RouteKey> = self
            .frames
            .keys()
            .filter(|key| !newer.frames.contains_key(key))
            .copied()
            .collect();
        emptied.sort_unstable();
        emptied
    }

    /// Serves `keys` as `older` did (their hosts kept, held back from being emptied).
    pub fn keep(&mut self, older: &RouteSnapshot, keys: &[RouteKey]) {
        for key in keys {
            if let Some(entry) = older.frames.get(key)
                && !self.frames.contains_key(key)
            {
                self.hosts += entry.1;
                self.frames.insert(*key, entry.clone());
                self.removed.remove(key);
                self.held.insert(*key);
            }
        }
    }

    /// Marks the keys among `keys` that have no hosts here as removed by a route edit: their
    /// empty answer carries `removed`, so agents apply it.
    pub fn mark_removed(&mut self, keys: impl IntoIterator<Item = RouteKey>) {
        for key in keys {
            if !self.frames.contains_key(&key)
                && let Some(frame) = route_frame(key, &[], true)
            {
                self.removed.insert(key, frame);
            }
        }
    }

    /// The keys served from an older snapshot (held back from being emptied).
    pub fn held(&self) -> &HashSet<RouteKey> {
        &self.held
    }

    /// Number of routes.
    pub fn routes(&self) -> usize {
        self.frames.len()
    }

    /// Number of hosts over all routes.
    pub fn hosts(&self) -> usize {
        self.hosts
    }

    /// Keys whose host list differs between `self` and `newer` (added, removed or changed).
    pub fn changed_keys(&self, newer: &RouteSnapshot) -> HashSet<RouteKey> {
        let mut changed: HashSet<RouteKey> = newer
            .frames
            .iter()
            .filter(|(key, frame)| self.frames.get(key) != Some(frame))
            .map(|(key, _)| *key)
            .collect();
        changed.extend(
            self.frames
                .keys()
                .filter(|key| !newer.frames.contains_key(key)),
        );
        changed
    }
}

/// Encodes one `GetRouteResponse` frame; `None` when the hosts do not fit in one frame.
fn route_frame(key: RouteKey, hosts: &[HostAddr], removed: bool) -> Option<Bytes> {
    let response = GetRouteResponse {
        modid: key.modid,
        cmdid: key.cmdid,
        host: hosts.iter().map(|&h| HostInfo::from(h)).collect(),
        removed,
    };
    let mut buf = BytesMut::new();
    encode_frame(MsgId::GetRouteResponse, &response, &mut buf).ok()?;
    Some(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lars_wire::{FrameDecoder, Message};
    use std::net::Ipv4Addr;

    fn host(last: u8, port: u16) -> HostAddr {
        HostAddr::new(Ipv4Addr::new(10, 0, 0, last), port)
    }

    fn decode(frame: Bytes) -> GetRouteResponse {
        let mut buf = BytesMut::from(&frame[..]);
        let raw = FrameDecoder::new().decode(&mut buf).unwrap().unwrap();
        match raw.decode().unwrap() {
            Message::GetRouteResponse(r) => r,
            other => panic!("not a GetRouteResponse: {other:?}"),
        }
    }

    #[test]
    fn unknown_key_answers_an_empty_host_list() {
        let (snapshot, _) = RouteSnapshot::build(1, RouteTable::new());
        let response = decode(snapshot.frame(RouteKey::new(5, 6)));
        assert_eq!((response.modid, response.cmdid), (5, 6));
        assert!(response.host.is_empty());
    }

    #[test]
    fn known_key_answers_its_hosts_sorted() {
        let key = RouteKey::new(1, 2);
        let table = RouteTable::from([(key, vec![host(2, 80), host(1, 80)])]);
        let (snapshot, _) = RouteSnapshot::build(1, table);
        let response = decode(snapshot.frame(key));
        let ips: Vec<i32> = response.host.iter().map(|h| h.ip).collect();
        assert_eq!(ips, vec![0x0A00_0001, 0x0A00_0002]);
        assert_eq!(snapshot.hosts(), 2);
    }

    #[test]
    fn changed_keys_are_added_removed_and_modified_routes_only() {
        let (a, b, c, d) = (
            RouteKey::new(1, 1),
            RouteKey::new(2, 2),
            RouteKey::new(3, 3),
            RouteKey::new(4, 4),
        );
        let old = RouteTable::from([
            (a, vec![host(1, 1)]),
            (b, vec![host(2, 2)]),
            (c, vec![host(3, 3)]),
        ]);
        let new = RouteTable::from([
            (a, vec![host(1, 1)]),
            (b, vec![host(2, 2), host(9, 9)]),
            (d, vec![host(4, 4)]),
        ]);
        let (old, _) = RouteSnapshot::build(1, old);
        let (new, _) = RouteSnapshot::build(2, new);
        assert_eq!(old.changed_keys(&new), HashSet::from([b, c, d]));
    }

    #[test]
    fn kept_routes_serve_the_older_hosts_and_removed_keys_say_so() {
        let (a, b, c) = (
            RouteKey::new(1, 1),
            RouteKey::new(2, 2),
            RouteKey::new(3, 3),
        );
        let old = RouteTable::from([(a, vec![host(1, 1)]), (b, vec![host(2, 2), host(3, 3)])]);
        let (old, _) = RouteSnapshot::build(1, old);
        let (mut new, _) = RouteSnapshot::build(2, RouteTable::new());
        assert_eq!(old.emptied_keys(&new), vec![a, b]);
        new.keep(&old, &[b]);
        new.mark_removed([a, b, c]);
        assert_eq!(new.frame(b), old.frame(b));
        assert_eq!((new.routes(), new.hosts()), (1, 2));
        assert_eq!(new.held(), &HashSet::from([b]));
        let (a_answer, c_answer) = (decode(new.frame(a)), decode(new.frame(c)));
        assert!(a_answer.host.is_empty() && a_answer.removed);
        assert!(c_answer.removed);
        assert!(
            !decode(old.frame(c)).removed,
            "unknown keys are not marked removed"
        );
        assert_eq!(old.changed_keys(&new), HashSet::from([a]));
    }

    #[test]
    fn a_route_too_large_for_one_frame_is_cut_and_reported() {
        let key = RouteKey::new(1, 1);
        let many: Vec<HostAddr> = (0..20_000u32)
            .map(|i| HostAddr::new(Ipv4Addr::from(0x0A00_0000 + i), 80))
            .collect();
        let (snapshot, truncated) = RouteSnapshot::build(1, RouteTable::from([(key, many)]));
        assert_eq!(truncated, vec![key]);
        assert!(snapshot.frame(key).len() <= lars_wire::frame::MAX_FRAME_LEN);
        assert!(snapshot.hosts() > 1000);
    }
}
