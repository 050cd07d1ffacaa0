//! One socket's traffic, without the socket: which request goes out next and when, which
//! request an answer belongs to, and which requests have waited too long. The engine
//! ([`crate::perf::load`]) owns the socket and the clock and calls in with each datagram and the
//! current time; everything that decides is here and tested with made-up times.
//!
//! A flow has `outstanding` slots, each holding at most one request in flight, its datagram
//! (encoded in place, 64 bytes, so nothing is allocated per request) and its `seq`. Slot `s`
//! only ever uses sequence numbers `≡ s (mod outstanding)`, so a `GetHostResponse` (or an echoed
//! `GetHostRequest`) finds its slot by `seq % outstanding` in O(1). `API_GetRouteResponse`s
//! carry no `seq`: one answers the oldest `get_route` in flight for its key. Reports are never
//! answered and take no slot.
//!
//! Each new request goes to the next key of the run's [`KeyWalk`], shared with every other
//! socket, so together they cover the key set before any key repeats (`qps`: the socket's own
//! key, always). The key is taken when a request has a slot to go out in, and kept until it went
//! out: an offer the socket could not take comes back with the same key.
//!
//! Closed loop: a free slot is filled at once, and latency runs from that moment. Open loop: a
//! request goes out when its [`Schedule`] time has come and a slot is free, and latency runs
//! from the scheduled time however late it went out. A request unanswered `timeout` after it was
//! sent is a timeout and frees its slot; an answer that comes later is a stray. At the end of
//! the run no new request is started, and the flow is finished once its last requests are
//! answered or timed out.

use crate::perf::keys::{KeyWalk, Ports};
use crate::perf::schedule::Schedule;
use crate::perf::tally::Tally;
use crate::perf::workload::{Kind, Load, MixCycle};
use lars_wire::datagram::split_datagram;
use lars_wire::frame::encode_frame_into;
use lars_wire::messages::{GetHostRequest, GetHostResponse, GetRouteRequest, ReportRequest};
use lars_wire::msg::decode_body;
use lars_wire::{HostAddr, MsgId};
use quick_protobuf::{BytesReader, MessageRead};
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Room for one request datagram: the largest the generator sends is a `ReportRequest` with
/// negative ids and an address from 128.0.0.0 up, 47 bytes.
pub const DATAGRAM_ROOM: usize = 64;

/// The host a report names when no `get_host` of its socket has picked one yet: 127.0.0.1:9.
pub const PLACEHOLDER_HOST: HostAddr = HostAddr::new(Ipv4Addr::LOCALHOST, 9);

/// What a flow is started with.
#[derive(Debug, Clone)]
pub struct FlowSetup {
    /// What is sent.
    pub load: Load,
    /// The run's walk over the key set, shared by all its sockets (`qps`: the key set the
    /// socket's one key is from).
    pub keys: Arc<KeyWalk>,
    /// Where keys are sent.
    pub ports: Ports,
    /// Slots.
    pub outstanding: usize,
    /// How long an answer is waited for after sending.
    pub timeout: Duration,
    /// The socket's number among all sockets of the run: where it starts in the mix cycle
    /// (`qps`: which key is its own).
    pub socket: usize,
    /// Open loop: the socket's send times; closed loop when `None`.
    pub schedule: Option<Schedule>,
    /// Requests meant to go out before this are warm-up.
    pub measure_start: Instant,
    /// No request is started from this time on.
    pub end: Instant,
}

/// A request in flight.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    kind: Kind,
    modid: i32,
    cmdid: i32,
    /// When it was meant to go out: latency runs from here.
    intended: Instant,
    /// When it times out.
    deadline: Instant,
    measured: bool,
    /// Send order on this socket, to answer `get_route`s oldest first.
    order: u64,
}

/// One slot: a request in flight or nothing, and its datagram.
#[derive(Debug)]
struct Slot {
    seq: u32,
    request: Option<InFlight>,
    datagram: [u8; DATAGRAM_ROOM],
    len: usize,
}

/// A report that follows a qps `get_host` answer.
#[derive(Debug, Clone, Copy)]
struct FollowUp {
    modid: i32,
    cmdid: i32,
    host: HostAddr,
    measured: bool,
}

/// Where an outgoing datagram's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Slot(usize),
    Scratch,
}

/// A datagram ready to go out; hand it back to [`Flow::commit`] once the socket took it (or
/// refused it), or drop it if the socket would block (the flow offers it again).
#[derive(Debug, Clone, Copy)]
pub struct Outgoing {
    /// Where it goes.
    pub to: SocketAddr,
    /// What it is.
    pub kind: Kind,
    source: Source,
    len: usize,
    modid: i32,
    cmdid: i32,
    intended: Instant,
    measured: bool,
    follow_up: bool,
    names_last_pick: bool,
}

/// One socket's requests and answers.
#[derive(Debug)]
pub struct Flow {
    echo: bool,
    qps: bool,
    keys: Arc<KeyWalk>,
    ports: Ports,
    /// The key of the next request, once taken from the walk and until a request went out
    /// with it (`qps`: the socket's key, for good).
    next_key: Option<(i32, i32)>,
    mix: MixCycle,
    slots: Vec<Slot>,
    /// Free slots; the next request takes the last.
    free: Vec<usize>,
    in_flight: usize,
    order: u64,
    follow_ups: VecDeque<FollowUp>,
    /// The last host a `get_host` picked on this socket, with its key: what mix reports name.
    last_pick: Option<(i32, i32, HostAddr)>,
    schedule: Option<Schedule>,
    timeout: Duration,
    measure_start: Instant,
    end: Instant,
    closed: bool,
    /// No request in flight times out before this (it may be early, never late).
    next_expiry: Option<Instant>,
    scratch: [u8; DATAGRAM_ROOM],
}

impl Flow {
    /// A flow with every slot free.
    pub fn new(setup: FlowSetup) -> Flow {
        let outstanding = setup.outstanding.max(1);
        let slots = (0..outstanding)
            .map(|s| Slot {
                seq: s as u32,
                request: None,
                datagram: [0; DATAGRAM_ROOM],
                len: 0,
            })
            .collect();
        let qps = setup.load == Load::Qps;
        Flow {
            echo: setup.load == Load::Echo,
            qps,
            next_key: qps.then(|| setup.keys.keys().key(setup.socket as u64)),
            keys: setup.keys,
            ports: setup.ports,
            mix: MixCycle::new(&setup.load, setup.socket),
            slots,
            free: (0..outstanding).rev().collect(),
            in_flight: 0,
            order: 0,
            follow_ups: VecDeque::with_capacity(outstanding),
            last_pick: None,
            schedule: setup.schedule,
            timeout: setup.timeout,
            measure_start: setup.measure_start,
            end: setup.end,
            closed: false,
            next_expiry: None,
            scratch: [0; DATAGRAM_ROOM],
        }
    }

    /// Requests waiting for an answer.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether the run is over for this socket: no request will be started, none is in flight
    /// and no report is waiting to go out.
    pub fn is_finished(&self) -> bool {
        self.closed && self.in_flight == 0 && self.follow_ups.is_empty()
    }

    /// Lets time pass: at the end of the run stop starting requests, and time out every request
    /// whose deadline has passed. An open loop first sends what was meant to go out before the
    /// end and can still have a slot, then counts the rest as never sent.
    pub fn on_time(&mut self, now: Instant, tally: &mut Tally) {
        let still_due = |flow: &Flow| match &flow.schedule {
            Some(schedule) => {
                schedule.next_at() < flow.end
                    && (!flow.free.is_empty() || !flow.mix.peek().is_answered())
            }
            None => false,
        };
        if !self.closed && now >= self.end && !still_due(self) {
            self.closed = true;
            if let Some(schedule) = &self.schedule {
                let due = schedule.count_before(self.end);
                let first_measured = schedule.count_before(self.measure_start);
                tally.unsent(due.saturating_sub(schedule.issued().max(first_measured)));
            }
        }
        let Some(expiry) = self.next_expiry else {
            return;
        };
        if now < expiry {
            return;
        }
        let mut next = None;
        for slot in 0..self.slots.len() {
            let Some(request) = self.slots[slot].request else {
                continue;
            };
            if request.deadline <= now {
                self.release(slot);
                tally.timed_out(request.kind, request.measured);
            } else {
                next = Some(next.map_or(request.deadline, |n: Instant| n.min(request.deadline)));
            }
        }
        self.next_expiry = next;
    }

    /// When the flow next needs [`Flow::on_time`] or [`Flow::poll_send`] if no datagram arrives
    /// before: the end of the run, the next scheduled send (open loop, when it could go out) or
    /// the earliest deadline in flight. `None` when only an answer can move it on (or it is
    /// finished).
    pub fn next_wake(&self) -> Option<Instant> {
        let mut wake = self.next_expiry;
        let mut consider = |at: Instant| wake = Some(wake.map_or(at, |w| w.min(at)));
        if !self.closed {
            consider(self.end);
            if let Some(schedule) = &self.schedule
                && (!self.free.is_empty() || !self.mix.peek().is_answered())
            {
                consider(schedule.next_at());
            }
        }
        wake
    }

    /// The next datagram to send at `now`, if any: a report that follows a qps answer first,
    /// then a new request if its time has come (closed loop: before the end; open loop: meant
    /// for before the end) and it has a slot.
    pub fn poll_send(&mut self, now: Instant) -> Option<Outgoing> {
        if let Some(follow) = self.follow_ups.front().copied() {
            let report = ReportRequest {
                modid: follow.modid,
                cmdid: follow.cmdid,
                host: Some(follow.host.into()),
                retcode: 0,
            };
            let len = encode(MsgId::ReportRequest, &report, &mut self.scratch);
            return Some(Outgoing {
                to: self.ports.addr(follow.modid, follow.cmdid),
                kind: Kind::Report,
                source: Source::Scratch,
                len,
                modid: follow.modid,
                cmdid: follow.cmdid,
                intended: now,
                measured: follow.measured,
                follow_up: true,
                names_last_pick: false,
            });
        }
        if self.closed {
            return None;
        }
        let intended = match &self.schedule {
            None if now >= self.end => return None,
            None => now,
            Some(schedule) if schedule.is_due(now) && schedule.next_at() < self.end => {
                schedule.next_at()
            }
            Some(_) => return None,
        };
        let measured = intended >= self.measure_start;
        let kind = self.mix.peek();
        if kind == Kind::Report {
            let (modid, cmdid, host, names_last_pick) = match self.last_pick {
                Some((modid, cmdid, host)) => (modid, cmdid, host, true),
                None => {
                    let (modid, cmdid) = self.next_key();
                    (modid, cmdid, PLACEHOLDER_HOST, false)
                }
            };
            let report = ReportRequest {
                modid,
                cmdid,
                host: Some(host.into()),
                retcode: 0,
            };
            let len = encode(MsgId::ReportRequest, &report, &mut self.scratch);
            return Some(Outgoing {
                to: self.ports.addr(modid, cmdid),
                kind,
                source: Source::Scratch,
                len,
                modid,
                cmdid,
                intended,
                measured,
                follow_up: false,
                names_last_pick,
            });
        }
        let slot = *self.free.last()?;
        let (modid, cmdid) = self.next_key();
        let entry = &mut self.slots[slot];
        entry.len = match kind {
            Kind::GetRoute => encode(
                MsgId::ApiGetRouteRequest,
                &GetRouteRequest { modid, cmdid },
                &mut entry.datagram,
            ),
            // (Reports never take a slot: they went out above.)
            Kind::GetHost | Kind::Echo | Kind::Report => encode(
                MsgId::GetHostRequest,
                &GetHostRequest {
                    seq: entry.seq,
                    modid,
                    cmdid,
                },
                &mut entry.datagram,
            ),
        };
        Some(Outgoing {
            to: self.ports.addr(modid, cmdid),
            kind,
            source: Source::Slot(slot),
            len: entry.len,
            modid,
            cmdid,
            intended,
            measured,
            follow_up: false,
            names_last_pick: false,
        })
    }

    /// The key of the next request: the one already taken, or the next of the walk.
    fn next_key(&mut self) -> (i32, i32) {
        *self.next_key.get_or_insert_with(|| self.keys.take())
    }

    /// The bytes of `out`.
    pub fn datagram(&self, out: &Outgoing) -> &[u8] {
        match out.source {
            Source::Slot(slot) => &self.slots[slot].datagram[..out.len],
            Source::Scratch => &self.scratch[..out.len],
        }
    }

    /// `out` was handed to the socket at `now` (`sent`), or the socket refused it: a refused
    /// request is a send error and is not retried.
    pub fn commit(&mut self, out: Outgoing, sent: bool, now: Instant, tally: &mut Tally) {
        if out.follow_up {
            self.follow_ups.pop_front();
            if sent {
                tally.sent(Kind::Report, out.measured);
            } else {
                tally.send_failed(Kind::Report, out.measured);
            }
            return;
        }
        self.mix.advance();
        if let Some(schedule) = &mut self.schedule {
            schedule.advance();
            tally.send_lag(out.measured, now.saturating_duration_since(out.intended));
        }
        if !out.names_last_pick && !self.qps {
            self.next_key = None;
        }
        if !sent {
            tally.send_failed(out.kind, out.measured);
            return;
        }
        tally.sent(out.kind, out.measured);
        let Source::Slot(slot) = out.source else {
            // A report of its own: done once sent.
            tally.completed(out.measured);
            return;
        };
        if let Some(position) = self.free.iter().rposition(|s| *s == slot) {
            self.free.swap_remove(position);
        }
        let deadline = now + self.timeout;
        self.slots[slot].request = Some(InFlight {
            kind: out.kind,
            modid: out.modid,
            cmdid: out.cmdid,
            intended: out.intended,
            deadline,
            measured: out.measured,
            order: self.order,
        });
        self.order += 1;
        self.in_flight += 1;
        self.next_expiry.get_or_insert(deadline);
    }

    /// A datagram arrived at `now`.
    pub fn on_datagram(&mut self, datagram: &[u8], now: Instant, tally: &mut Tally) {
        let Ok((msgid, body)) = split_datagram(datagram) else {
            tally.bad(now);
            return;
        };
        match (self.echo, MsgId::try_from(msgid)) {
            (true, Ok(MsgId::GetHostRequest)) => {
                let Ok(echoed) = decode_body::<GetHostRequest>(msgid, body) else {
                    tally.bad(now);
                    return;
                };
                let slot = self.slot_of(echoed.seq);
                let entry = &self.slots[slot];
                match entry.request {
                    Some(_) if entry.seq == echoed.seq => {
                        if datagram == &entry.datagram[..entry.len] {
                            self.answer(slot, now, tally);
                        } else {
                            tally.bad(now);
                        }
                    }
                    _ => tally.stray(now),
                }
            }
            (false, Ok(MsgId::GetHostResponse)) => {
                let Ok(answer) = decode_body::<GetHostResponse>(msgid, body) else {
                    tally.bad(now);
                    return;
                };
                let slot = self.slot_of(answer.seq);
                let entry = &self.slots[slot];
                let Some(request) = entry
                    .request
                    .filter(|r| entry.seq == answer.seq && r.kind == Kind::GetHost)
                else {
                    tally.stray(now);
                    return;
                };
                if (request.modid, request.cmdid) != (answer.modid, answer.cmdid) {
                    tally.bad(now);
                    return;
                }
                self.answer(slot, now, tally);
                tally.retcode(answer.retcode, request.measured);
                // A host whose port is no port is not one to report on: the next report names
                // the last good pick (or the placeholder).
                if answer.retcode == 0
                    && let Some(Ok(host)) = answer.host.as_ref().map(HostAddr::try_from)
                {
                    self.last_pick = Some((answer.modid, answer.cmdid, host));
                    if self.qps && self.follow_ups.len() < self.slots.len() {
                        self.follow_ups.push_back(FollowUp {
                            modid: answer.modid,
                            cmdid: answer.cmdid,
                            host,
                            measured: request.measured,
                        });
                    }
                }
            }
            (false, Ok(MsgId::ApiGetRouteResponse)) => {
                let Ok(answer) = decode_body::<RouteAnswerHead>(msgid, body) else {
                    tally.bad(now);
                    return;
                };
                let oldest = (0..self.slots.len())
                    .filter_map(|s| self.slots[s].request.map(|r| (s, r)))
                    .filter(|(_, r)| {
                        r.kind == Kind::GetRoute
                            && (r.modid, r.cmdid) == (answer.modid, answer.cmdid)
                    })
                    .min_by_key(|(_, r)| r.order);
                let Some((slot, request)) = oldest else {
                    tally.stray(now);
                    return;
                };
                self.answer(slot, now, tally);
                if answer.hosts == 0 {
                    tally.route_empty(request.measured);
                }
            }
            _ => tally.bad(now),
        }
    }

    fn slot_of(&self, seq: u32) -> usize {
        seq as usize % self.slots.len()
    }

    /// The request in `slot` was answered at `now`.
    fn answer(&mut self, slot: usize, now: Instant, tally: &mut Tally) {
        if let Some(request) = self.slots[slot].request {
            self.release(slot);
            tally.answered(
                request.kind,
                request.measured,
                now.saturating_duration_since(request.intended),
            );
        }
    }

    /// Frees `slot` and moves it to its next sequence number.
    fn release(&mut self, slot: usize) {
        // At most MAX_PER_LEVEL slots, so the count fits.
        let step = self.slots.len() as u32;
        let entry = &mut self.slots[slot];
        entry.request = None;
        entry.seq = entry.seq.checked_add(step).unwrap_or(slot as u32);
        self.free.push(slot);
        self.in_flight -= 1;
    }
}

/// Encodes a request into a datagram buffer of [`DATAGRAM_ROOM`] bytes.
fn encode<M: quick_protobuf::MessageWrite>(
    msgid: MsgId,
    message: &M,
    buf: &mut [u8; DATAGRAM_ROOM],
) -> usize {
    // The generator's requests are at most 47 bytes (see DATAGRAM_ROOM and the test
    // `the_largest_requests_fit_in_a_slot`), so this cannot fail.
    encode_frame_into(msgid, message, buf).expect("a Lars request fits in DATAGRAM_ROOM")
}

/// What the generator needs of an `API_GetRouteResponse`: its key and how many hosts it lists,
/// read without collecting the hosts (no allocation per answer).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct RouteAnswerHead {
    modid: i32,
    cmdid: i32,
    hosts: u32,
}

impl<'a> MessageRead<'a> for RouteAnswerHead {
    fn from_reader(r: &mut BytesReader, bytes: &'a [u8]) -> quick_protobuf::Result<Self> {
        let mut head = RouteAnswerHead::default();
        while !r.is_eof() {
            match r.next_tag(bytes) {
                Ok(8) => head.modid = r.read_int32(bytes)?,
                Ok(16) => head.cmdid = r.read_int32(bytes)?,
                Ok(26) => {
                    r.read_unknown(bytes, 26)?;
                    head.hosts += 1;
                }
                Ok(tag) => r.read_unknown(bytes, tag)?,
                Err(e) => return Err(e),
            }
        }
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perf::keys::{IdRange, KeySet};
    use crate::perf::workload::Mix;
    use lars_wire::Message;
    use lars_wire::datagram::{decode_datagram, encode_datagram};
    use lars_wire::messages::GetRouteResponse;
    use lars_wire::messages::HostInfo;
    use std::net::Ipv4Addr;
    use std::num::NonZeroU16;

    const TIMEOUT: Duration = Duration::from_millis(100);

    /// A fresh walk over `(1, 1..=keys)`.
    fn walk(keys: u32) -> Arc<KeyWalk> {
        let set = KeySet::new(
            IdRange::one(1),
            IdRange {
                first: 1,
                last: keys as i32,
            },
        )
        .unwrap();
        Arc::new(KeyWalk::new(set))
    }

    struct Rig {
        t0: Instant,
        flow: Flow,
        tally: Tally,
    }

    fn rig(load: Load, outstanding: usize, keys: u32, schedule: Option<f64>) -> Rig {
        let t0 = Instant::now();
        let setup = FlowSetup {
            load,
            keys: walk(keys),
            ports: Ports {
                ip: Ipv4Addr::LOCALHOST,
                base_port: 8888,
                shards: NonZeroU16::new(3).unwrap(),
            },
            outstanding,
            timeout: TIMEOUT,
            socket: 0,
            schedule: schedule.map(|rate| Schedule::new(t0, rate)),
            measure_start: t0,
            end: t0 + Duration::from_secs(10),
        };
        Rig {
            t0,
            flow: Flow::new(setup),
            tally: Tally::new(t0),
        }
    }

    impl Rig {
        fn at(&self, micros: u64) -> Instant {
            self.t0 + Duration::from_micros(micros)
        }

        /// Sends everything the flow offers at `now`; returns what went out, decoded.
        fn send_all(&mut self, now: Instant) -> Vec<(SocketAddr, Message)> {
            let mut out = Vec::new();
            while let Some(outgoing) = self.flow.poll_send(now) {
                let message = decode_datagram(self.flow.datagram(&outgoing)).unwrap();
                out.push((outgoing.to, message));
                self.flow.commit(outgoing, true, now, &mut self.tally);
                assert!(out.len() < 1000, "the flow never stops offering");
            }
            out
        }

        fn receive(&mut self, message: &Message, now: Instant) {
            let mut buf = [0u8; 1024];
            let len = encode_datagram(message, &mut buf).unwrap();
            self.flow.on_datagram(&buf[..len], now, &mut self.tally);
        }
    }

    fn host_reply(
        seq: u32,
        modid: i32,
        cmdid: i32,
        retcode: i32,
        host: Option<HostInfo>,
    ) -> Message {
        Message::GetHostResponse(GetHostResponse {
            seq,
            modid,
            cmdid,
            retcode,
            host,
        })
    }

    fn seq_of(message: &Message) -> u32 {
        match message {
            Message::GetHostRequest(r) => r.seq,
            other => panic!("not a get_host: {other:?}"),
        }
    }

    #[test]
    fn a_closed_loop_fills_every_slot_and_refills_one_per_answer() {
        let mut r = rig(Load::Mix(Mix::only(Kind::GetHost)), 4, 3, None);
        let sent = r.send_all(r.at(0));
        assert_eq!(sent.len(), 4);
        assert_eq!(r.flow.in_flight(), 4);
        // Keys cycle from the socket's start, each to its shard's port.
        let keys: Vec<(i32, i32, u16)> = sent
            .iter()
            .map(|(to, m)| match m {
                Message::GetHostRequest(g) => (g.modid, g.cmdid, to.port()),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            keys,
            [(1, 1, 8890), (1, 2, 8888), (1, 3, 8889), (1, 1, 8890)]
        );
        // Sequence numbers are distinct modulo the slots.
        let mut slots: Vec<u32> = sent.iter().map(|(_, m)| seq_of(m) % 4).collect();
        slots.sort();
        assert_eq!(slots, [0, 1, 2, 3]);

        let first = seq_of(&sent[0].1);
        r.receive(&host_reply(first, 1, 1, 3, None), r.at(40));
        assert_eq!(r.flow.in_flight(), 3);
        let again = r.send_all(r.at(41));
        assert_eq!(again.len(), 1);
        // The freed slot's next request has a new seq in the same residue class.
        let next = seq_of(&again[0].1);
        assert_ne!(next, first);
        assert_eq!(next % 4, first % 4);

        let counts = *r.tally.counts();
        assert_eq!(counts.sent[Kind::GetHost.index()], 5);
        assert_eq!(counts.answers[Kind::GetHost.index()], 1);
        assert_eq!(counts.retcodes, [0, 0, 0, 1, 0]);
        let (_, stats) = r.tally.take();
        assert_eq!(stats.latency.max(), 40);
    }

    #[test]
    fn answers_that_match_nothing_are_strays_and_wrong_keys_are_bad() {
        let mut r = rig(Load::Mix(Mix::only(Kind::GetHost)), 2, 1, None);
        let sent = r.send_all(r.at(0));
        let seq = seq_of(&sent[0].1);
        r.receive(&host_reply(seq, 1, 2, 0, None), r.at(5));
        assert_eq!(r.tally.counts().bad, 1);
        r.receive(&host_reply(seq, 1, 1, 0, None), r.at(6));
        r.receive(&host_reply(seq, 1, 1, 0, None), r.at(7));
        r.receive(&host_reply(seq + 1000, 1, 1, 0, None), r.at(8));
        assert_eq!(r.tally.counts().answers(), 1);
        assert_eq!(r.tally.counts().stray, 2);
        r.flow.on_datagram(&[1, 2, 3], r.at(9), &mut r.tally);
        r.receive(&Message::GetHostRequest(GetHostRequest::default()), r.at(9));
        assert_eq!(r.tally.counts().bad, 3);
    }

    #[test]
    fn unanswered_requests_time_out_free_their_slot_and_late_answers_are_strays() {
        let mut r = rig(Load::Mix(Mix::only(Kind::GetHost)), 2, 1, None);
        let sent = r.send_all(r.at(0));
        assert_eq!(sent.len(), 2);
        assert_eq!(r.flow.next_wake(), Some(r.t0 + TIMEOUT));
        r.flow
            .on_time(r.t0 + TIMEOUT - Duration::from_micros(1), &mut r.tally);
        assert_eq!(r.flow.in_flight(), 2);
        r.flow.on_time(r.t0 + TIMEOUT, &mut r.tally);
        assert_eq!(r.flow.in_flight(), 0);
        assert_eq!(r.tally.counts().timeouts[Kind::GetHost.index()], 2);
        r.receive(
            &host_reply(seq_of(&sent[0].1), 1, 1, 0, None),
            r.t0 + TIMEOUT,
        );
        assert_eq!(r.tally.counts().stray, 1);
        assert_eq!(r.tally.counts().answers(), 0);
        // The freed slots go out again.
        assert_eq!(r.send_all(r.t0 + TIMEOUT).len(), 2);
    }

    #[test]
    fn an_open_loop_measures_latency_from_the_intended_send_time() {
        // 1000/s: one request per ms, one slot.
        let mut r = rig(Load::Mix(Mix::only(Kind::GetHost)), 1, 1, Some(1000.0));
        let sent = r.send_all(r.at(0));
        assert_eq!(sent.len(), 1);
        assert_eq!(
            r.flow.next_wake(),
            Some(r.t0 + TIMEOUT),
            "no slot, so only the timeout"
        );
        // The agent stalls for 5 ms: requests 1..=4 come due while the slot is busy.
        r.receive(&host_reply(seq_of(&sent[0].1), 1, 1, 3, None), r.at(5_000));
        let late = r.send_all(r.at(5_000));
        assert_eq!(late.len(), 1, "one slot, one request");
        r.receive(&host_reply(seq_of(&late[0].1), 1, 1, 3, None), r.at(5_010));
        let (_, stats) = r.tally.take();
        // Request 1 was meant for 1 ms and answered at 5.01 ms: 4.01 ms, not 10 µs.
        assert_eq!(stats.latency.len(), 2);
        // (3 significant digits: values are kept to within 0.1%.)
        assert!(stats.latency.equivalent(stats.latency.min(), 4_010));
        assert!(stats.latency.equivalent(stats.latency.max(), 5_000));
        // How late each went out is kept apart too: on time, then 4 ms behind.
        assert_eq!(stats.send_lag.len(), 2);
        assert!(stats.send_lag.equivalent(stats.send_lag.max(), 4_000));
        // The backlog drains as fast as slots free.
        assert_eq!(r.send_all(r.at(5_010)).len(), 1);
    }

    #[test]
    fn an_open_loop_waits_for_the_schedule_and_counts_what_it_never_sent() {
        let mut r = rig(Load::Mix(Mix::only(Kind::GetHost)), 8, 1, Some(1000.0));
        assert_eq!(r.send_all(r.at(0)).len(), 1);
        assert_eq!(r.send_all(r.at(999)).len(), 0);
        assert_eq!(r.flow.next_wake(), Some(r.at(1_000)));
        assert_eq!(r.send_all(r.at(2_500)).len(), 2, "requests 1 and 2 are due");
        // Nothing more is answered; at the end, everything due in 10 s beyond the 8 slots'
        // worth is unsent.
        let end = r.t0 + Duration::from_secs(10);
        r.send_all(end - Duration::from_micros(1));
        assert_eq!(r.flow.in_flight(), 8);
        r.flow.on_time(end, &mut r.tally);
        assert_eq!(r.tally.counts().unsent, 10_000 - 8);
        assert!(r.flow.poll_send(end).is_none());
    }

    #[test]
    fn an_open_loop_woken_after_the_end_still_sends_what_was_due_before_it() {
        let mut r = rig(Load::Mix(Mix::only(Kind::GetHost)), 4, 1, Some(1000.0));
        let end = r.t0 + Duration::from_secs(10);
        // Up to date until 2 ms before the end, with every answer in.
        let mut now = r.t0;
        while now < end - Duration::from_millis(2) {
            r.flow.on_time(now, &mut r.tally);
            for (_, m) in r.send_all(now) {
                r.receive(&host_reply(seq_of(&m), 1, 1, 3, None), now);
            }
            now += Duration::from_micros(500);
        }
        // The thread oversleeps the end: the two requests meant for its last 2 ms still go.
        let late = end + Duration::from_micros(300);
        r.flow.on_time(late, &mut r.tally);
        assert_eq!(r.send_all(late).len(), 2);
        r.flow.on_time(late, &mut r.tally);
        assert!(r.send_all(late).is_empty());
        assert_eq!(r.tally.counts().unsent, 0);
        assert_eq!(r.tally.counts().sent[Kind::GetHost.index()], 10_000);
    }

    #[test]
    fn after_the_end_nothing_starts_and_the_flow_finishes_when_the_last_answer_is_in() {
        let mut r = rig(Load::Mix(Mix::only(Kind::GetHost)), 2, 1, None);
        let end = r.t0 + Duration::from_secs(10);
        let sent = r.send_all(end - TIMEOUT / 2);
        assert_eq!(sent.len(), 2);
        r.flow.on_time(end, &mut r.tally);
        assert!(!r.flow.is_finished());
        r.receive(&host_reply(seq_of(&sent[0].1), 1, 1, 0, None), end);
        assert!(r.send_all(end).is_empty());
        assert_eq!(r.flow.next_wake(), Some(end + TIMEOUT / 2));
        r.flow.on_time(end + TIMEOUT / 2, &mut r.tally);
        assert!(r.flow.is_finished());
        assert_eq!(r.flow.next_wake(), None);
        assert_eq!(r.tally.counts().answers(), 1);
        assert_eq!(r.tally.counts().timeouts(), 1);
    }

    #[test]
    fn qps_reports_the_picked_host_with_succ_before_the_next_get_host() {
        let mut r = rig(Load::Qps, 1, 1, None);
        let sent = r.send_all(r.at(0));
        assert_eq!(sent.len(), 1);
        let host = HostInfo {
            ip: -1062731510, // 192.168.1.10
            port: 8080,
        };
        r.receive(
            &host_reply(seq_of(&sent[0].1), 1, 1, 0, Some(host.clone())),
            r.at(30),
        );
        let next = r.send_all(r.at(31));
        assert_eq!(next.len(), 2);
        match &next[0].1 {
            Message::ReportRequest(report) => {
                assert_eq!((report.modid, report.cmdid), (1, 1));
                assert_eq!(report.host, Some(host.clone()));
                assert_eq!(report.retcode, 0);
            }
            other => panic!("expected the report first, got {other:?}"),
        }
        assert_eq!(next[0].0.port(), 8890);
        assert!(matches!(next[1].1, Message::GetHostRequest(_)));
        // An answer without a host (NOEXIST) ends the iteration without a report.
        r.receive(&host_reply(seq_of(&next[1].1), 1, 1, 3, None), r.at(60));
        let after = r.send_all(r.at(61));
        assert_eq!(after.len(), 1);
        assert!(matches!(after[0].1, Message::GetHostRequest(_)));
        let counts = *r.tally.counts();
        assert_eq!(counts.completed, 2, "iterations");
        assert_eq!(counts.sent[Kind::Report.index()], 1);
        assert_eq!(counts.sent[Kind::GetHost.index()], 3);
    }

    #[test]
    fn qps_keeps_one_key_per_socket() {
        let t0 = Instant::now();
        let mut flow = Flow::new(FlowSetup {
            load: Load::Qps,
            keys: walk(10),
            ports: Ports {
                ip: Ipv4Addr::LOCALHOST,
                base_port: 8888,
                shards: NonZeroU16::new(3).unwrap(),
            },
            outstanding: 1,
            timeout: TIMEOUT,
            socket: 3,
            schedule: None,
            measure_start: t0,
            end: t0 + Duration::from_secs(1),
        });
        let mut tally = Tally::new(t0);
        for i in 0..3 {
            let now = t0 + TIMEOUT * i;
            flow.on_time(now, &mut tally);
            let out = flow.poll_send(now).unwrap();
            match decode_datagram(flow.datagram(&out)).unwrap() {
                Message::GetHostRequest(g) => assert_eq!((g.modid, g.cmdid), (1, 4)),
                other => panic!("{other:?}"),
            }
            flow.commit(out, true, now, &mut tally);
        }
    }

    #[test]
    fn all_sockets_together_send_every_key_once_before_any_key_again() {
        // 3 threads x 2 sockets x 4 slots on 100 keys. The sockets are answered at different
        // paces, as on a machine where some threads get less CPU than others, and everything
        // sent in a round is answered in the next.
        let t0 = Instant::now();
        let keys = walk(100);
        let mut flows: Vec<Flow> = (0..6)
            .map(|socket| {
                Flow::new(FlowSetup {
                    load: Load::Mix(Mix::only(Kind::GetHost)),
                    keys: keys.clone(),
                    ports: Ports {
                        ip: Ipv4Addr::LOCALHOST,
                        base_port: 8888,
                        shards: NonZeroU16::new(3).unwrap(),
                    },
                    outstanding: 4,
                    timeout: TIMEOUT,
                    socket,
                    schedule: None,
                    measure_start: t0,
                    end: t0 + Duration::from_secs(10),
                })
            })
            .collect();
        let mut tally = Tally::new(t0);
        let mut waiting: Vec<Vec<(u32, i32, i32)>> = vec![Vec::new(); flows.len()];
        let mut sent = Vec::new();
        for round in 0..200 {
            let now = t0 + Duration::from_micros(round);
            for (socket, flow) in flows.iter_mut().enumerate() {
                if round % (socket as u64 + 1) != 0 {
                    continue;
                }
                for (seq, modid, cmdid) in waiting[socket].drain(..) {
                    let mut buf = [0u8; 64];
                    let reply = host_reply(seq, modid, cmdid, 3, None);
                    let len = encode_datagram(&reply, &mut buf).unwrap();
                    flow.on_datagram(&buf[..len], now, &mut tally);
                }
                while let Some(out) = flow.poll_send(now) {
                    let Message::GetHostRequest(g) = decode_datagram(flow.datagram(&out)).unwrap()
                    else {
                        unreachable!()
                    };
                    waiting[socket].push((g.seq, g.modid, g.cmdid));
                    sent.push((socket, g.cmdid));
                    flow.commit(out, true, now, &mut tally);
                }
            }
        }
        assert!(sent.len() >= 500, "{} sent", sent.len());
        let fast = sent.iter().filter(|(socket, _)| *socket == 0).count();
        let slow = sent.iter().filter(|(socket, _)| *socket == 5).count();
        assert!(
            fast >= 4 * slow,
            "the sockets ran at different paces: {fast} vs {slow}"
        );
        // Whichever socket sent it: each run of 100 requests is the 100 keys, in order.
        for (n, (_, cmdid)) in sent.iter().enumerate() {
            assert_eq!(*cmdid, (n % 100) as i32 + 1, "request {n}: {sent:?}");
        }
        assert_eq!(tally.counts().stray + tally.counts().bad, 0);
    }

    #[test]
    fn get_route_answers_go_to_the_oldest_request_for_their_key() {
        let mut r = rig(Load::Mix(Mix::only(Kind::GetRoute)), 3, 2, None);
        let sent = r.send_all(r.at(0));
        let keys: Vec<(i32, i32)> = sent
            .iter()
            .map(|(_, m)| match m {
                Message::ApiGetRouteRequest(g) => (g.modid, g.cmdid),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(keys, [(1, 1), (1, 2), (1, 1)]);
        let answer = |cmdid, hosts: usize| {
            Message::ApiGetRouteResponse(GetRouteResponse {
                modid: 1,
                cmdid,
                host: vec![HostInfo { ip: 1, port: 2 }; hosts],
                removed: false,
            })
        };
        r.receive(&answer(1, 0), r.at(10));
        r.receive(&answer(1, 2), r.at(20));
        r.receive(&answer(1, 0), r.at(30));
        let counts = *r.tally.counts();
        assert_eq!(counts.answers[Kind::GetRoute.index()], 2);
        assert_eq!(counts.route_empty, 1);
        assert_eq!(counts.stray, 1);
        assert_eq!(r.flow.in_flight(), 1, "(1, 2) is still waiting");
        let (_, stats) = r.tally.take();
        assert_eq!((stats.latency.min(), stats.latency.max()), (10, 20));
    }

    #[test]
    fn reports_in_a_mix_take_no_slot_and_name_the_last_picked_host() {
        let mix = Mix::parse("get_host=1,report=1").unwrap();
        let mut r = rig(Load::Mix(mix), 1, 1, None);
        let first = r.send_all(r.at(0));
        // get_host takes the only slot; the report after it goes out anyway, naming the
        // placeholder; then the next get_host has no slot.
        assert_eq!(first.len(), 2);
        match &first[1].1 {
            Message::ReportRequest(report) => {
                assert_eq!(report.host, Some(PLACEHOLDER_HOST.into()))
            }
            other => panic!("{other:?}"),
        }
        let host = HostInfo { ip: 10, port: 80 };
        r.receive(
            &host_reply(seq_of(&first[0].1), 1, 1, 0, Some(host.clone())),
            r.at(10),
        );
        let next = r.send_all(r.at(10));
        assert_eq!(next.len(), 2);
        match &next[1].1 {
            Message::ReportRequest(report) => assert_eq!(report.host, Some(host.clone())),
            other => panic!("{other:?}"),
        }
        let counts = *r.tally.counts();
        assert_eq!(counts.completed, 3, "one answer and two reports");
    }

    #[test]
    fn echoes_must_come_back_byte_for_byte() {
        let mut r = rig(Load::Echo, 2, 1, None);
        let mut sent_bytes = Vec::new();
        while let Some(out) = r.flow.poll_send(r.at(0)) {
            sent_bytes.push(r.flow.datagram(&out).to_vec());
            r.flow.commit(out, true, r.at(0), &mut r.tally);
        }
        assert_eq!(sent_bytes.len(), 2);
        // The same bytes: an answer.
        r.flow.on_datagram(&sent_bytes[0], r.at(15), &mut r.tally);
        assert_eq!(r.tally.counts().answers[Kind::Echo.index()], 1);
        // Same seq, other key: not an echo of what was sent.
        let Message::GetHostRequest(mut changed) = decode_datagram(&sent_bytes[1]).unwrap() else {
            unreachable!()
        };
        changed.cmdid += 1;
        r.receive(&Message::GetHostRequest(changed), r.at(16));
        assert_eq!(r.tally.counts().bad, 1);
        // A GetHostResponse is not an echo.
        r.receive(&host_reply(0, 1, 1, 0, None), r.at(17));
        assert_eq!(r.tally.counts().bad, 2);
        r.flow.on_datagram(&sent_bytes[1], r.at(18), &mut r.tally);
        assert_eq!(r.tally.counts().answers(), 2);
    }

    #[test]
    fn a_refused_send_is_a_send_error_and_keeps_the_slot_free() {
        let mut r = rig(Load::Mix(Mix::only(Kind::GetHost)), 1, 1, None);
        let out = r.flow.poll_send(r.at(0)).unwrap();
        r.flow.commit(out, false, r.at(0), &mut r.tally);
        assert_eq!(r.flow.in_flight(), 0);
        assert_eq!(r.tally.counts().send_errors[Kind::GetHost.index()], 1);
        assert!(r.flow.poll_send(r.at(1)).is_some());
    }

    #[test]
    fn an_offer_not_taken_is_offered_again_unchanged() {
        let mut r = rig(Load::Mix(Mix::only(Kind::GetHost)), 2, 5, None);
        let a = r.flow.poll_send(r.at(0)).unwrap();
        let bytes = r.flow.datagram(&a).to_vec();
        let b = r.flow.poll_send(r.at(1)).unwrap();
        assert_eq!(r.flow.datagram(&b), &bytes[..]);
        assert_eq!(a.to, b.to);
    }

    #[test]
    fn sequence_numbers_stay_in_their_slot_class_across_the_u32_wrap() {
        let mut r = rig(Load::Mix(Mix::only(Kind::GetHost)), 3, 1, None);
        // u32::MAX is a multiple of 3: these are the last seqs of slots 1 and 2.
        r.flow.slots[1].seq = u32::MAX - 2;
        r.flow.slots[2].seq = u32::MAX - 1;
        let sent = r.send_all(r.at(0));
        for (_, m) in &sent {
            r.receive(&host_reply(seq_of(m), 1, 1, 0, None), r.at(1));
        }
        assert_eq!(r.tally.counts().answers(), 3);
        assert_eq!(r.flow.slots[1].seq % 3, 1);
        assert_eq!(r.flow.slots[2].seq % 3, 2);
        assert!(
            r.flow.slots[1].seq < 3 && r.flow.slots[2].seq < 3,
            "wrapped to the slot"
        );
    }

    #[test]
    fn the_largest_requests_fit_in_a_slot() {
        let mut buf = [0u8; DATAGRAM_ROOM];
        let report = ReportRequest {
            modid: i32::MIN,
            cmdid: i32::MIN,
            host: Some(HostInfo {
                ip: i32::MIN,
                port: 65535,
            }),
            retcode: 0,
        };
        assert_eq!(encode(MsgId::ReportRequest, &report, &mut buf), 47);
        let get_host = GetHostRequest {
            seq: u32::MAX,
            modid: i32::MIN,
            cmdid: i32::MIN,
        };
        assert!(encode(MsgId::GetHostRequest, &get_host, &mut buf) <= DATAGRAM_ROOM);
    }

    #[test]
    fn route_answer_heads_count_hosts_without_collecting_them() {
        let answer = GetRouteResponse {
            modid: -3,
            cmdid: 9,
            host: vec![HostInfo { ip: -5, port: 1 }; 3],
            removed: false,
        };
        let mut buf = [0u8; 256];
        let len = encode_datagram(&Message::ApiGetRouteResponse(answer), &mut buf).unwrap();
        let (msgid, body) = split_datagram(&buf[..len]).unwrap();
        let head = decode_body::<RouteAnswerHead>(msgid, body).unwrap();
        assert_eq!(
            head,
            RouteAnswerHead {
                modid: -3,
                cmdid: 9,
                hosts: 3
            }
        );
    }
}
