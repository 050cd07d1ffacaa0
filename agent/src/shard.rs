//! One shard's request handling, without I/O: a datagram from a caller goes in, the reply's bytes
//! (written in place into the caller's buffer) and what else to do come out. Owns the shard's
//! [`RouteTable`]; runs on its worker's core only. Never allocates for `get_host` and `report`
//! on a known route, and never panics on what a caller sends: every malformed datagram is
//! dropped and counted by reason.
//!
//! The fast path's messages (route views, report batches: `docs/PROTOCOL.md`) go to the same
//! table and rules; with `[agent] fast_path = false` they are dropped unanswered and counted, so
//! callers fall back to the classic messages.

use crate::clock::Millis;
use crate::lb::{
    BatchHost, BatchOutcome, DnsAsk, HostAnswer, HostTransition, ReportOutcome, RouteTable,
    RouteView,
};
use crate::stats::{DropReason, WorkerStats};
use lars_wire::datagram::split_datagram;
use lars_wire::frame::{FrameHeader, HEADER_LEN, MAX_BODY_LEN, encode_frame_into};
use lars_wire::messages::{
    GetHostRequest, GetHostResponse, GetRouteRequest, HostInfo, ReportBatchRequest, ReportRequest,
    RouteViewRequest, RouteViewResponse, ViewHost,
};
use lars_wire::msg::decode_body;
use lars_wire::{HostAddr, MsgId, RetCode, RouteKey, WireError};
use quick_protobuf::sizeofs::sizeof_len;
use quick_protobuf::{BytesWriter, MessageWrite, Writer};

/// What the worker must do after a datagram, besides sending the reply.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Handled {
    /// Length of the reply written at the front of the reply buffer, if there is one.
    pub reply_len: Option<usize>,
    /// A route to ask dns for.
    pub ask: Option<DnsAsk>,
    /// A host that changed state, for the log (the last one, when a report batch moved several).
    pub transition: Option<(RouteKey, HostTransition)>,
}

/// One shard: its index and its routes.
pub struct Shard {
    /// Which shard this is (`(modid + cmdid) % shards`).
    pub index: u16,
    /// The shard's routes.
    pub table: RouteTable,
    /// Whether the fast path's messages are answered (`[agent] fast_path`).
    pub fast_path: bool,
}

impl Shard {
    /// Handles one datagram. `reply` must hold a full frame (64 KiB).
    pub fn handle(
        &mut self,
        datagram: &[u8],
        reply: &mut [u8],
        now: Millis,
        stats: &WorkerStats,
    ) -> Handled {
        let (msgid, body) = match split_datagram(datagram) {
            Ok(parts) => parts,
            Err(WireError::ShortDatagram { .. }) => return dropped(stats, DropReason::Short),
            Err(_) => return dropped(stats, DropReason::BadLength),
        };
        match MsgId::try_from(msgid) {
            Ok(MsgId::GetHostRequest) => match decode_body::<GetHostRequest>(msgid, body) {
                Ok(request) => self.get_host(request, reply, now, stats),
                Err(_) => dropped(stats, DropReason::BadBody),
            },
            Ok(MsgId::ReportRequest) => match decode_body::<ReportRequest>(msgid, body) {
                Ok(request) => self.report(request, now, stats),
                Err(_) => dropped(stats, DropReason::BadBody),
            },
            Ok(MsgId::ApiGetRouteRequest) => match decode_body::<GetRouteRequest>(msgid, body) {
                Ok(request) => self.get_route(request, reply, now, stats),
                Err(_) => dropped(stats, DropReason::BadBody),
            },
            Ok(MsgId::RouteViewRequest | MsgId::ReportBatchRequest) if !self.fast_path => {
                stats.fast_path_refused.inc();
                Handled::default()
            }
            Ok(MsgId::RouteViewRequest) => match decode_body::<RouteViewRequest>(msgid, body) {
                Ok(request) => self.route_view(request, reply, now, stats),
                Err(_) => malformed(stats, DropReason::BadBody),
            },
            Ok(MsgId::ReportBatchRequest) => match decode_body::<ReportBatchRequest>(msgid, body) {
                Ok(request) => self.report_batch(request, reply, now, stats),
                Err(_) => malformed(stats, DropReason::BadBody),
            },
            Ok(_) => dropped(stats, DropReason::UnexpectedMsgId),
            Err(_) => dropped(stats, DropReason::UnknownMsgId),
        }
    }

    fn get_host(
        &mut self,
        request: GetHostRequest,
        reply: &mut [u8],
        now: Millis,
        stats: &WorkerStats,
    ) -> Handled {
        stats.get_host.inc();
        let key = RouteKey::new(request.modid, request.cmdid);
        let (answer, ask) = if key.is_route() {
            self.table.get_host(key, now)
        } else {
            stats.requests_not_a_route.inc();
            (HostAnswer::NoExist, None)
        };
        if answer == HostAnswer::Refused {
            stats.routes_refused.inc();
        }
        let retcode = answer.retcode();
        stats.replies[retcode.as_i32() as usize].inc();
        let response = GetHostResponse {
            seq: request.seq,
            modid: request.modid,
            cmdid: request.cmdid,
            retcode: retcode.as_i32(),
            host: match answer {
                HostAnswer::Host(host) => Some(host.into()),
                HostAnswer::Overload | HostAnswer::NoExist | HostAnswer::Refused => None,
            },
        };
        // A GetHostResponse is at most 8 + 42 bytes: it always fits.
        let reply_len = encode_frame_into(MsgId::GetHostResponse, &response, reply).ok();
        Handled {
            reply_len,
            ask,
            transition: None,
        }
    }

    fn report(&mut self, request: ReportRequest, now: Millis, stats: &WorkerStats) -> Handled {
        stats.report.inc();
        let host = request.host.unwrap_or_default();
        let Ok(addr) = HostAddr::try_from(host) else {
            return dropped(stats, DropReason::BadHost);
        };
        let key = RouteKey::new(request.modid, request.cmdid);
        if !key.is_route() {
            stats.requests_not_a_route.inc();
            return Handled::default();
        }
        let transition = match self.table.report(key, addr, request.retcode, now) {
            ReportOutcome::Counted(Some(transition)) => {
                match transition {
                    HostTransition::Overloaded { .. } => stats.overloaded.inc(),
                    HostTransition::Recovered { .. } => stats.recovered.inc(),
                }
                Some((key, transition))
            }
            ReportOutcome::Counted(None)
            | ReportOutcome::UnknownRoute
            | ReportOutcome::UnknownHost => None,
        };
        Handled {
            reply_len: None,
            ask: None,
            transition,
        }
    }

    fn get_route(
        &mut self,
        request: GetRouteRequest,
        reply: &mut [u8],
        now: Millis,
        stats: &WorkerStats,
    ) -> Handled {
        stats.get_route.inc();
        let key = RouteKey::new(request.modid, request.cmdid);
        let held = if key.is_route() {
            self.table.get_route(key, now)
        } else {
            stats.requests_not_a_route.inc();
            None
        };
        let Some((hosts, ask)) = held else {
            if key.is_route() {
                stats.routes_refused.inc();
            }
            return Handled {
                reply_len: encode_route_reply(key, std::iter::empty(), reply),
                ask: None,
                transition: None,
            };
        };
        let reply_len = encode_route_reply(key, hosts, reply);
        Handled {
            reply_len,
            ask,
            transition: None,
        }
    }
}

fn dropped(stats: &WorkerStats, reason: DropReason) -> Handled {
    stats.dropped(reason);
    Handled::default()
}

/// A malformed fast-path datagram: counted by reason and as a fast-path one.
fn malformed(stats: &WorkerStats, reason: DropReason) -> Handled {
    stats.fast_path_malformed.inc();
    dropped(stats, reason)
}

/// One host of a checked report batch.
struct CheckedHost<'a> {
    addr: HostAddr,
    runs: &'a [u32],
}

impl BatchHost for CheckedHost<'_> {
    fn addr(&self) -> HostAddr {
        self.addr
    }

    fn runs(&self) -> impl Iterator<Item = (bool, u32)> {
        self.runs.iter().map(|&run| (run & 1 == 0, run >> 1))
    }
}

/// The fast path: route views and report batches.
impl Shard {
    fn route_view(
        &mut self,
        request: RouteViewRequest,
        reply: &mut [u8],
        now: Millis,
        stats: &WorkerStats,
    ) -> Handled {
        let key = RouteKey::new(request.modid, request.cmdid);
        let held = if key.is_route() {
            self.table.route_view(key, now)
        } else {
            stats.requests_not_a_route.inc();
            None
        };
        let Some((view, ask)) = held else {
            if key.is_route() {
                stats.routes_refused.inc();
            }
            return Handled {
                reply_len: encode_view_reply(key, None, request.version, reply, stats),
                ask: None,
                transition: None,
            };
        };
        Handled {
            reply_len: encode_view_reply(key, Some(view), request.version, reply, stats),
            ask,
            transition: None,
        }
    }

    fn report_batch(
        &mut self,
        request: ReportBatchRequest,
        reply: &mut [u8],
        now: Millis,
        stats: &WorkerStats,
    ) -> Handled {
        let mut hosts = Vec::with_capacity(request.hosts.len());
        for host in &request.hosts {
            let info = HostInfo {
                ip: host.ip,
                port: host.port,
            };
            let Ok(addr) = HostAddr::try_from(info) else {
                return malformed(stats, DropReason::BadHost);
            };
            if host.runs.iter().any(|&run| run >> 1 == 0) {
                return malformed(stats, DropReason::BadBody);
            }
            hosts.push(CheckedHost {
                addr,
                runs: &host.runs,
            });
        }
        let key = RouteKey::new(request.modid, request.cmdid);
        if !key.is_route() {
            stats.requests_not_a_route.inc();
            return Handled {
                reply_len: encode_view_reply(key, None, request.version, reply, stats),
                ask: None,
                transition: None,
            };
        }
        let mut transition = None;
        let (outcome, view) = self.table.report_batch(key, &hosts, now, |t| {
            match t {
                HostTransition::Overloaded { .. } => stats.overloaded.inc(),
                HostTransition::Recovered { .. } => stats.recovered.inc(),
            }
            transition = Some((key, t));
        });
        match outcome {
            BatchOutcome::UnknownRoute => stats.batch_unknown_route.inc(),
            BatchOutcome::Applied { results, .. } => {
                stats.batches.inc();
                stats.batch_results.add(results);
            }
        }
        Handled {
            reply_len: encode_view_reply(key, view, request.version, reply, stats),
            ask: None,
            transition,
        }
    }
}

/// Writes a `RouteViewResponse` frame for `key` without building a message (no allocation):
/// NOEXIST without a view or for a route without hosts, the short ack (`unchanged`) when the
/// caller holds `known`, else the view's hosts (cut to what fits in one datagram).
fn encode_view_reply(
    key: RouteKey,
    view: Option<RouteView<'_>>,
    known: u64,
    reply: &mut [u8],
    stats: &WorkerStats,
) -> Option<usize> {
    let mut head = RouteViewResponse {
        modid: key.modid,
        cmdid: key.cmdid,
        retcode: RetCode::NoExist.as_i32(),
        ..RouteViewResponse::default()
    };
    let view = view.filter(|v| !v.route.is_empty());
    if let Some(view) = &view {
        head.retcode = RetCode::Succ.as_i32();
        head.version = view.version;
        head.probe_num = view.route.probe_num();
        head.panic = view.route.panicking();
        head.unchanged = view.version == known;
    }
    let hosts = view
        .as_ref()
        .filter(|_| !head.unchanged)
        .map(|v| v.route.view_hosts());
    let entries = hosts
        .into_iter()
        .flatten()
        .map(|(addr, overload)| view_host(addr, overload));
    // `host` is field 8, length-delimited.
    let total = encode_list_reply(MsgId::RouteViewResponse, &head, 66, entries, reply)?;
    if head.unchanged {
        stats.views_unchanged.inc();
    } else {
        stats.views_served.inc();
    }
    Some(total)
}

fn view_host(addr: HostAddr, overload: bool) -> ViewHost {
    ViewHost {
        ip: addr.wire_ip(),
        port: addr.wire_port(),
        overload,
    }
}

/// Writes an `API_GetRouteResponse` frame listing `hosts` without building a message (no
/// allocation). A route too large for one datagram is cut to the hosts that fit.
fn encode_route_reply(
    key: RouteKey,
    hosts: impl ExactSizeIterator<Item = HostAddr> + Clone,
    reply: &mut [u8],
) -> Option<usize> {
    // GetRouteResponse's fields 1 and 2 are GetRouteRequest's: same numbers, same types.
    let head = GetRouteRequest {
        modid: key.modid,
        cmdid: key.cmdid,
    };
    // `host` is field 3, length-delimited.
    let entries = hosts.map(HostInfo::from);
    encode_list_reply(MsgId::ApiGetRouteResponse, &head, 26, entries, reply)
}

/// Writes a frame of id `msgid` whose body is `head`'s fields and then each of `entries` as a
/// nested message under `tag`, without building the message (no allocation); entries that do
/// not fit in one datagram are cut. Returns the frame's length.
fn encode_list_reply<E: MessageWrite>(
    msgid: MsgId,
    head: &impl MessageWrite,
    tag: u32,
    entries: impl Iterator<Item = E> + Clone,
    reply: &mut [u8],
) -> Option<usize> {
    let room = reply.len().min(HEADER_LEN + MAX_BODY_LEN);
    let mut body_len = head.get_size();
    let mut count = 0;
    for entry in entries.clone() {
        let len = 1 + sizeof_len(entry.get_size());
        if HEADER_LEN + body_len + len > room {
            break;
        }
        body_len += len;
        count += 1;
    }
    let header = FrameHeader {
        msgid: msgid.as_i32(),
        msglen: i32::try_from(body_len).ok()?,
    };
    let total = HEADER_LEN + body_len;
    reply
        .get_mut(..HEADER_LEN)?
        .copy_from_slice(&header.to_bytes());
    let mut writer = Writer::new(BytesWriter::new(reply.get_mut(HEADER_LEN..total)?));
    head.write_message(&mut writer).ok()?;
    for entry in entries.take(count) {
        writer
            .write_with_tag(tag, |w| w.write_message(&entry))
            .ok()?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::LbSettings;
    use lars_wire::datagram::{decode_datagram, encode_datagram};
    use lars_wire::frame::MAX_FRAME_LEN;
    use lars_wire::messages::GetRouteResponse;
    use lars_wire::{Message, RetCode};
    use std::net::Ipv4Addr;

    fn shard() -> Shard {
        Shard {
            index: 0,
            table: RouteTable::new(LbSettings::default()),
            fast_path: true,
        }
    }

    fn datagram(msg: &Message) -> Vec<u8> {
        let mut buf = vec![0u8; 1024];
        let len = encode_datagram(msg, &mut buf).unwrap();
        buf.truncate(len);
        buf
    }

    fn get_host(seq: u32, modid: i32, cmdid: i32) -> Vec<u8> {
        datagram(&Message::GetHostRequest(GetHostRequest {
            seq,
            modid,
            cmdid,
        }))
    }

    #[test]
    fn unknown_key_answers_noexist_and_asks_dns() {
        let (mut shard, stats) = (shard(), WorkerStats::default());
        let mut reply = vec![0u8; 65536];
        let handled = shard.handle(&get_host(7, 1, 2), &mut reply, Millis(0), &stats);
        assert_eq!(
            handled.ask,
            Some(DnsAsk {
                key: RouteKey::new(1, 2)
            })
        );
        let len = handled.reply_len.unwrap();
        let Message::GetHostResponse(r) = decode_datagram(&reply[..len]).unwrap() else {
            panic!("not a GetHostResponse")
        };
        assert_eq!(
            (r.seq, r.modid, r.cmdid, r.retcode),
            (7, 1, 2, RetCode::NoExist.as_i32())
        );
        assert_eq!(stats.replies[3].get(), 1);
    }

    #[test]
    fn a_negative_id_answers_noexist_without_holding_the_key_or_asking_dns() {
        let (mut shard, stats) = (shard(), WorkerStats::default());
        let mut reply = vec![0u8; 65536];
        for (modid, cmdid) in [(-1, 2), (1, -2), (i32::MIN, 0)] {
            let handled = shard.handle(&get_host(9, modid, cmdid), &mut reply, Millis(0), &stats);
            assert_eq!(handled.ask, None);
            let len = handled.reply_len.unwrap();
            let Message::GetHostResponse(r) = decode_datagram(&reply[..len]).unwrap() else {
                panic!("not a GetHostResponse")
            };
            assert_eq!(
                (r.seq, r.modid, r.cmdid, r.retcode),
                (9, modid, cmdid, RetCode::NoExist.as_i32())
            );

            let route = datagram(&Message::ApiGetRouteRequest(GetRouteRequest {
                modid,
                cmdid,
            }));
            let handled = shard.handle(&route, &mut reply, Millis(0), &stats);
            assert_eq!(handled.ask, None);
            let len = handled.reply_len.unwrap();
            let Message::ApiGetRouteResponse(r) = decode_datagram(&reply[..len]).unwrap() else {
                panic!("not an ApiGetRouteResponse")
            };
            assert!(r.host.is_empty());

            let report = datagram(&Message::ReportRequest(ReportRequest {
                modid,
                cmdid,
                host: Some(HostAddr::new(Ipv4Addr::new(10, 0, 0, 1), 80).into()),
                retcode: 1,
            }));
            assert_eq!(
                shard.handle(&report, &mut reply, Millis(0), &stats),
                Handled::default()
            );

            // The fast path's view and batch follow the same rule.
            let view = datagram(&Message::RouteViewRequest(RouteViewRequest {
                modid,
                cmdid,
                version: 0,
            }));
            let batch = datagram(&Message::ReportBatchRequest(ReportBatchRequest {
                modid,
                cmdid,
                version: 0,
                hosts: vec![lars_wire::messages::HostResults {
                    ip: 0x0A00_0001,
                    port: 80,
                    runs: vec![5 << 1],
                }],
            }));
            for request in [view, batch] {
                let handled = shard.handle(&request, &mut reply, Millis(0), &stats);
                assert_eq!(handled.ask, None);
                let r = view_of(&reply[..handled.reply_len.unwrap()]);
                assert_eq!(r.retcode, RetCode::NoExist.as_i32());
            }
        }
        assert_eq!(stats.requests_not_a_route.get(), 15);
        assert_eq!(stats.routes_refused.get(), 0);
        assert_eq!(shard.table.route_count(), 0, "nothing is held");
    }

    #[test]
    fn known_route_answers_a_host_and_lists_its_hosts() {
        let (mut shard, stats) = (shard(), WorkerStats::default());
        let key = RouteKey::new(1, 2);
        shard.table.get_host(key, Millis(0));
        let hosts = [
            HostAddr::new(Ipv4Addr::new(192, 168, 0, 1), 80),
            HostAddr::new(Ipv4Addr::new(10, 0, 0, 1), 81),
        ];
        shard.table.apply_dns_update(key, &hosts, false, Millis(1));
        let mut reply = vec![0u8; 65536];
        let handled = shard.handle(&get_host(8, 1, 2), &mut reply, Millis(2), &stats);
        let len = handled.reply_len.unwrap();
        let Message::GetHostResponse(r) = decode_datagram(&reply[..len]).unwrap() else {
            panic!("not a GetHostResponse")
        };
        assert_eq!(r.retcode, 0);
        assert_eq!(r.host, Some(hosts[0].into()));

        let request = datagram(&Message::ApiGetRouteRequest(GetRouteRequest {
            modid: 1,
            cmdid: 2,
        }));
        let handled = shard.handle(&request, &mut reply, Millis(3), &stats);
        let len = handled.reply_len.unwrap();
        let Message::ApiGetRouteResponse(r) = decode_datagram(&reply[..len]).unwrap() else {
            panic!("not an API_GetRouteResponse")
        };
        assert_eq!(
            r,
            GetRouteResponse {
                modid: 1,
                cmdid: 2,
                host: hosts.iter().map(|&h| h.into()).collect(),
                removed: false,
            }
        );
    }

    #[test]
    fn malformed_datagrams_are_dropped_by_reason() {
        let (mut shard, stats) = (shard(), WorkerStats::default());
        let mut reply = vec![0u8; 65536];
        let mut wrong_length = get_host(1, 1, 1);
        wrong_length.push(0);
        let unknown = [&99i32.to_le_bytes()[..], &0i32.to_le_bytes()[..]].concat();
        let unexpected = [&5i32.to_le_bytes()[..], &0i32.to_le_bytes()[..]].concat();
        let bad_body = [
            &4i32.to_le_bytes()[..],
            &1i32.to_le_bytes()[..],
            &[0x80][..],
        ]
        .concat();
        let bad_port = datagram(&Message::ReportRequest(ReportRequest {
            modid: 1,
            cmdid: 1,
            host: Some(HostInfo { ip: 1, port: 70000 }),
            retcode: 0,
        }));
        let cases: [(&[u8], DropReason); 7] = [
            (&[], DropReason::Short),
            (&[0; 7], DropReason::Short),
            (&wrong_length, DropReason::BadLength),
            (&unknown, DropReason::UnknownMsgId),
            (&unexpected, DropReason::UnexpectedMsgId),
            (&bad_body, DropReason::BadBody),
            (&bad_port, DropReason::BadHost),
        ];
        for (bytes, reason) in cases {
            let before = stats.drops_for(reason);
            let handled = shard.handle(bytes, &mut reply, Millis(0), &stats);
            assert_eq!(handled, Handled::default(), "{reason:?}");
            assert_eq!(stats.drops_for(reason), before + 1, "{reason:?}");
        }
        let huge = vec![0xffu8; 65536];
        assert_eq!(
            shard.handle(&huge, &mut reply, Millis(0), &stats),
            Handled::default()
        );
    }

    #[test]
    fn a_route_larger_than_one_datagram_is_cut_to_what_fits() {
        let (mut shard, stats) = (shard(), WorkerStats::default());
        let key = RouteKey::new(3, 3);
        shard.table.get_route(key, Millis(0));
        let hosts: Vec<HostAddr> = (0..8000u32)
            .map(|i| HostAddr::new(Ipv4Addr::from(0xC000_0000 + i), 80))
            .collect();
        shard.table.apply_dns_update(key, &hosts, false, Millis(1));
        let mut reply = vec![0u8; 65536];
        let request = datagram(&Message::ApiGetRouteRequest(GetRouteRequest {
            modid: 3,
            cmdid: 3,
        }));
        let len = shard
            .handle(&request, &mut reply, Millis(2), &stats)
            .reply_len
            .unwrap();
        assert!(len <= 65535);
        let Message::ApiGetRouteResponse(r) = decode_datagram(&reply[..len]).unwrap() else {
            panic!("not an API_GetRouteResponse")
        };
        // The frame's room, less the header and `modid: 3, cmdid: 3` (two 1-byte fields with
        // their tags), in whole hosts of 15 bytes: the tag and length of the entry (2), the
        // address from 192.0.0.0 up, negative, a 10-byte varint with its tag (11), port 80 with
        // its tag (2).
        let fit = (MAX_FRAME_LEN - HEADER_LEN - 4) / 15;
        assert_eq!(fit, 4368);
        assert_eq!(r.host.len(), fit);
        assert_eq!(len, HEADER_LEN + 4 + fit * 15);
        let first = HostAddr::try_from(&r.host[0]).unwrap();
        assert_eq!(first, hosts[0]);
    }

    fn view_of(reply: &[u8]) -> RouteViewResponse {
        match decode_datagram(reply).unwrap() {
            Message::RouteViewResponse(r) => r,
            other => panic!("not a RouteViewResponse: {other:?}"),
        }
    }

    fn batch(version: u64, host: HostAddr, runs: Vec<u32>) -> Vec<u8> {
        datagram(&Message::ReportBatchRequest(ReportBatchRequest {
            modid: 1,
            cmdid: 2,
            version,
            hosts: vec![lars_wire::messages::HostResults {
                ip: host.wire_ip(),
                port: host.wire_port(),
                runs,
            }],
        }))
    }

    #[test]
    fn a_report_batch_moves_the_view_and_an_unmoved_one_is_a_short_ack() {
        let (mut shard, stats) = (shard(), WorkerStats::default());
        let key = RouteKey::new(1, 2);
        let view_request = |version| {
            datagram(&Message::RouteViewRequest(RouteViewRequest {
                modid: 1,
                cmdid: 2,
                version,
            }))
        };
        let mut reply = vec![0u8; 65536];
        let first = shard.handle(&view_request(0), &mut reply, Millis(0), &stats);
        assert_eq!(
            first.ask,
            Some(DnsAsk { key }),
            "an unknown route is pulled"
        );
        let noexist = view_of(&reply[..first.reply_len.unwrap()]);
        assert_eq!(noexist.retcode, RetCode::NoExist.as_i32());

        let hosts = [
            HostAddr::new(Ipv4Addr::new(10, 0, 0, 1), 80),
            HostAddr::new(Ipv4Addr::new(10, 0, 0, 2), 80),
        ];
        shard.table.apply_dns_update(key, &hosts, false, Millis(1));
        let len = shard
            .handle(&view_request(0), &mut reply, Millis(2), &stats)
            .reply_len
            .unwrap();
        let view = view_of(&reply[..len]);
        assert_eq!(
            (view.retcode, view.probe_num, view.unchanged),
            (0, 10, false)
        );
        assert_eq!(view.host.len(), 2);
        assert!(view.host.iter().all(|h| !h.overload));

        // 15 failures in a row (one run) overload host 1: the answer is the new view.
        let handled = shard.handle(
            &batch(view.version, hosts[0], vec![15 << 1 | 1]),
            &mut reply,
            Millis(3),
            &stats,
        );
        assert!(matches!(
            handled.transition,
            Some((_, HostTransition::Overloaded { .. }))
        ));
        let moved = view_of(&reply[..handled.reply_len.unwrap()]);
        assert_ne!(moved.version, view.version);
        assert_eq!(
            moved
                .host
                .iter()
                .map(|h| (h.ip, h.overload))
                .collect::<Vec<_>>(),
            [(hosts[1].wire_ip(), false), (hosts[0].wire_ip(), true)],
            "idle list first, then the overload list"
        );
        // Successes on the idle host move nothing: the short ack.
        let len = shard
            .handle(
                &batch(moved.version, hosts[1], vec![100 << 1]),
                &mut reply,
                Millis(4),
                &stats,
            )
            .reply_len
            .unwrap();
        let ack = view_of(&reply[..len]);
        assert!(ack.unchanged && ack.host.is_empty());
        assert_eq!(ack.version, moved.version);
        assert_eq!((stats.batches.get(), stats.batch_results.get()), (2, 115));
        assert_eq!(stats.overloaded.get(), 1);

        // A run of zero results is malformed: dropped, counted, nothing applied.
        let handled = shard.handle(
            &batch(ack.version, hosts[1], vec![0]),
            &mut reply,
            Millis(5),
            &stats,
        );
        assert_eq!(handled, Handled::default());
        assert_eq!(stats.fast_path_malformed.get(), 1);
        assert_eq!(stats.batches.get(), 2);

        // With the fast path off nothing is answered, and it is counted.
        shard.fast_path = false;
        let handled = shard.handle(&view_request(0), &mut reply, Millis(6), &stats);
        assert_eq!(handled, Handled::default());
        assert_eq!(stats.fast_path_refused.get(), 1);
    }
}
