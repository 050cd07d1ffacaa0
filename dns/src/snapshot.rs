//! The immutable route snapshot the service answers from: every route's `GetRouteResponse`
//! frame, encoded once when the snapshot is built, so a reply or a push to a thousand agents is a
//! reference-counted copy of the same bytes. A new snapshot replaces the old one whole
//! ([`arc_swap`]); readers never wait for a reload.

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
    frames: HashMap<RouteKey, Bytes>,
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
            let mut frame = route_frame(key, &list);
            while frame.is_none() {
                truncated.push(key);
                list.truncate(list.len() * 9 / 10);
                frame = route_frame(key, &list);
            }
            hosts += list.len();
            if let Some(frame) = frame {
                frames.insert(key, frame);
            }
        }
        truncated.dedup();
        let snapshot = RouteSnapshot {
            version,
            frames,
            hosts,
        };
        (snapshot, truncated)
    }

    /// The `GetRouteResponse` frame for `key`: its hosts, or an empty list for an unknown key.
    pub fn frame(&self, key: RouteKey) -> Bytes {
        match self.frames.get(&key) {
            Some(frame) => frame.clone(),
            None => route_frame(key, &[]).unwrap_or_default(),
        }
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
fn route_frame(key: RouteKey, hosts: &[HostAddr]) -> Option<Bytes> {
    let response = GetRouteResponse {
        modid: key.modid,
        cmdid: key.cmdid,
        host: hosts.iter().map(|&h| HostInfo::from(h)).collect(),
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
