//! Who gets a connection slot and who loses it: the accept-side rules that keep peers which
//! never finish a frame from holding a service's slots or memory, shared by lars-dns and
//! lars-reporter. Owns the sans-I/O table of open connections ([`Admission`]: their peer, when
//! each last sent a complete frame, how many bytes of an unfinished frame each holds), the
//! per-connection read deadlines ([`ReadTimer`]), and the thin thread-safe layer the services use
//! ([`Gate`], [`Ticket`]). Never touches a socket: a service asks the gate whether to keep a new
//! connection and closes the ones it is told to.
//!
//! The rules, in order:
//!
//! - a peer IP holds at most `max_conn_per_peer` connections and the service at most `maxConn`.
//! - at either limit a new connection is still accepted when an open one can be *evicted* (from
//!   that peer's connections at the peer limit, from all of them at `maxConn`), else it is
//!   refused. Evictable are connections that have never sent a complete frame, and those whose
//!   last complete frame is at least `frame_timeout` old; connections that never sent one go
//!   first, then the one whose last frame is oldest. So a peer sending valid frames is served
//!   ahead of idle ones, and a flood of silent connections evicts its own oldest members, not a
//!   working agent, nor the newest arrival (which is evicted last).
//! - the bytes of unfinished frames held over all connections stay at most `max_pending_bytes`:
//!   beyond it, the connection holding the largest unfinished frame is closed.
//! - a connection whose unfinished frame is older than `frame_timeout`, or that has sent no
//!   complete frame for `idle_timeout`, is closed by its own [`ReadTimer`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

/// Closes and refusals of one kind logged one by one at info (or warn); after that one line per
/// this many (every one is logged at debug).
pub const LOGGED_EVERY: u64 = 1000;

/// Whether the `n`-th (from 0) event of a kind is logged above debug.
fn worth_logging(n: u64) -> bool {
    n < 10 || n.is_multiple_of(LOGGED_EVERY)
}

/// The limits the rules apply (from `[reactor]`, see [`crate::ReactorConfig::limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most connections open at once.
    pub max_conn: usize,
    /// Most connections open at once from one peer IP.
    pub max_conn_per_peer: usize,
    /// Most bytes of unfinished frames held over all connections.
    pub max_pending_bytes: usize,
    /// Longest a frame may take to arrive; also how long a connection that sent a complete frame
    /// is safe from eviction.
    pub frame_timeout: Duration,
    /// Longest a connection may go without sending a complete frame.
    pub idle_timeout: Duration,
}

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `maxConn` connections are open and none can be evicted.
    Full,
    /// Its peer holds `max_conn_per_peer` connections and none of them can be evicted.
    PeerFull,
}

/// Why the rules closed an open connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Evicted to make room for a new connection.
    ForNewcomer,
    /// It held the largest unfinished frame when `max_pending_bytes` was exceeded.
    PendingBytes,
}

/// Identifies one admitted connection in an [`Admission`] table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(u64);

#[derive(Debug)]
struct Entry<T> {
    peer: IpAddr,
    /// When it last sent a complete frame, or was accepted if it never did.
    last_frame: Instant,
    framed: bool,
    /// Bytes of its unfinished frame.
    pending: usize,
    payload: T,
}

/// The table of open connections and the rules over it; `T` is what the caller keeps with each
/// connection (how to close it) and gets back when one is evicted.
#[derive(Debug)]
pub struct Admission<T> {
    limits: Limits,
    next: u64,
    conns: HashMap<ConnId, Entry<T>>,
    per_peer: HashMap<IpAddr, usize>,
    pending: usize,
}

impl<T> Admission<T> {
    /// An empty table under `limits`.
    pub fn new(limits: Limits) -> Admission<T> {
        Admission {
            limits,
            next: 0,
            conns: HashMap::new(),
            per_peer: HashMap::new(),
            pending: 0,
        }
    }

    /// Connections open.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Bytes of unfinished frames held over all connections.
    pub fn pending_bytes(&self) -> usize {
        self.pending
    }

    /// Admits a connection from `peer` at `now`, evicting one when a limit is reached and one can
    /// be: its payload is returned with the new id, and it is no longer in the table.
    pub fn admit(
        &mut self,
        peer: IpAddr,
        now: Instant,
        payload: T,
    ) -> Result<(ConnId, Option<T>), Refusal> {
        let from_peer = self.per_peer.get(&peer).copied().unwrap_or(0);
        let evicted = if from_peer >= self.limits.max_conn_per_peer {
            let victim = self.candidate(now, Some(peer)).ok_or(Refusal::PeerFull)?;
            Some(self.remove(victim).expect("the candidate is in the table"))
        } else if self.conns.len() >= self.limits.max_conn {
            let victim = self.candidate(now, None).ok_or(Refusal::Full)?;
            Some(self.remove(victim).expect("the candidate is in the table"))
        } else {
            None
        };
        let id = ConnId(self.next);
        self.next += 1;
        let entry = Entry {
            peer,
            last_frame: now,
            framed: false,
            pending: 0,
            payload,
        };
        self.conns.insert(id, entry);
        *self.per_peer.entry(peer).or_default() += 1;
        Ok((id, evicted))
    }

    /// The connection to evict at `now` (among `peer`'s only, if given), if any may be.
    fn candidate(&self, now: Instant, peer: Option<IpAddr>) -> Option<ConnId> {
        let protect = self.limits.frame_timeout;
        self.conns
            .iter()
            .filter(|(_, e)| peer.is_none_or(|p| e.peer == p))
            .filter(|(_, e)| !e.framed || now.saturating_duration_since(e.last_frame) >= protect)
            .min_by_key(|(_, e)| (e.framed, e.last_frame))
            .map(|(id, _)| *id)
    }

    /// Notes that `id` sent a complete frame at `now`.
    pub fn framed(&mut self, id: ConnId, now: Instant) {
        if let Some(e) = self.conns.get_mut(&id) {
            e.framed = true;
            e.last_frame = now;
        }
    }

    /// Notes that `id` now holds `bytes` of an unfinished frame. Past `max_pending_bytes` in
    /// total, the connection with the largest unfinished frame (possibly `id`) is taken out of
    /// the table and its payload returned, to be closed.
    pub fn pending(&mut self, id: ConnId, bytes: usize) -> Option<T> {
        let e = self.conns.get_mut(&id)?;
        self.pending = self.pending - e.pending + bytes;
        e.pending = bytes;
        if self.pending <= self.limits.max_pending_bytes {
            return None;
        }
        let (&largest, _) = self.conns.iter().max_by_key(|(_, e)| e.pending)?;
        self.remove(largest)
    }

    /// Takes `id` out of the table (a no-op when it was evicted already).
    pub fn release(&mut self, id: ConnId) -> Option<T> {
        self.remove(id)
    }

    fn remove(&mut self, id: ConnId) -> Option<T> {
        let e = self.conns.remove(&id)?;
        self.pending -= e.pending;
        if let Some(n) = self.per_peer.get_mut(&e.peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&e.peer);
            }
        }
        Some(e.payload)
    }
}

/// Why a connection's [`ReadTimer`] ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimedOut {
    /// No complete frame for `idle_timeout`.
    Idle,
    /// A frame begun more than `frame_timeout` ago is still unfinished.
    Frame,
}

/// One connection's read deadlines: `idle_timeout` after its last complete frame (or its
/// accept), and `frame_timeout` after the first byte of a frame that has not been finished.
#[derive(Debug, Clone)]
pub struct ReadTimer {
    frame_timeout: Duration,
    idle_timeout: Duration,
    last_frame: Instant,
    partial_since: Option<Instant>,
}

impl ReadTimer {
    /// The timer of a connection accepted at `now`.
    pub fn new(limits: &Limits, now: Instant) -> ReadTimer {
        ReadTimer {
            frame_timeout: limits.frame_timeout,
            idle_timeout: limits.idle_timeout,
            last_frame: now,
            partial_since: None,
        }
    }

    /// After a read at `now` that completed `frames` frames and left `partial` bytes of an
    /// unfinished one.
    pub fn read(&mut self, now: Instant, frames: usize, partial: usize) {
        if frames > 0 {
            self.last_frame = now;
            self.partial_since = None;
        }
        self.partial_since = match partial {
            0 => None,
            _ => self.partial_since.or(Some(now)),
        };
    }

    /// When the connection is to be closed if nothing changes, and why.
    pub fn deadline(&self) -> (Instant, TimedOut) {
        let idle = (self.last_frame + self.idle_timeout, TimedOut::Idle);
        match self.partial_since {
            Some(since) if since + self.frame_timeout < idle.0 => {
                (since + self.frame_timeout, TimedOut::Frame)
            }
            _ => idle,
        }
    }
}

/// Why the hygiene rules closed a connection: the reasons a service counts and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HygieneClose {
    /// No complete frame for `idle_timeout`.
    Idle,
    /// A frame unfinished for `frame_timeout`.
    FrameTimeout,
    /// Evicted for a new connection at a connection limit.
    Evicted,
    /// The largest unfinished frame when `max_pending_bytes` was exceeded.
    PendingBytes,
}

impl From<TimedOut> for HygieneClose {
    fn from(t: TimedOut) -> HygieneClose {
        match t {
            TimedOut::Idle => HygieneClose::Idle,
            TimedOut::Frame => HygieneClose::FrameTimeout,
        }
    }
}

impl From<Eviction> for HygieneClose {
    fn from(e: Eviction) -> HygieneClose {
        match e {
            Eviction::ForNewcomer => HygieneClose::Evicted,
            Eviction::PendingBytes => HygieneClose::PendingBytes,
        }
    }
}

/// The counters of the hygiene rules a service exposes (refusals at `maxConn` stay with the
/// service's own connection counters).
#[derive(Debug, Default)]
pub struct HygieneCounters {
    /// Connections refused because their peer IP held `max_conn_per_peer` that could not be
    /// evicted.
    pub peer_refused: AtomicU64,
    /// Connections closed for sending no complete frame for `idle_timeout`.
    pub idle: AtomicU64,
    /// Connections closed for leaving a frame unfinished for `frame_timeout`.
    pub frame_timeout: AtomicU64,
    /// Idle connections closed to make room for a new one at a connection limit.
    pub evicted: AtomicU64,
    /// Connections closed for holding the largest unfinished frame past `max_pending_bytes`.
    pub pending_bytes: AtomicU64,
}

impl HygieneCounters {
    /// Counts a close for `why` and logs it with the peer: at debug, and at info for the first
    /// few of each reason and then one in [`LOGGED_EVERY`].
    pub fn record(&self, why: HygieneClose, peer: SocketAddr) {
        let (counter, what) = match why {
            HygieneClose::Idle => (&self.idle, "sent no complete frame for the idle timeout"),
            HygieneClose::FrameTimeout => (
                &self.frame_timeout,
                "left a frame unfinished for the frame timeout",
            ),
            HygieneClose::Evicted => (
                &self.evicted,
                "idle connection evicted to make room for a new one",
            ),
            HygieneClose::PendingBytes => (
                &self.pending_bytes,
                "held the largest unfinished frame past max_pending_bytes",
            ),
        };
        let n = counter.fetch_add(1, Ordering::Relaxed);
        if worth_logging(n) {
            info!(%peer, closed = n + 1, "{what}; closing connection");
        } else {
            debug!(%peer, closed = n + 1, "{what}; closing connection");
        }
    }
}

/// How the gate tells a connection's task to close.
#[derive(Debug, Default)]
struct Closer {
    /// 0 while open, else 1 + the [`Eviction`] index.
    reason: AtomicU8,
    notify: Notify,
}

impl Closer {
    fn close(&self, why: Eviction) {
        let code = match why {
            Eviction::ForNewcomer => 1,
            Eviction::PendingBytes => 2,
        };
        let _ = self
            .reason
            .compare_exchange(0, code, Ordering::Relaxed, Ordering::Relaxed);
        self.notify.notify_one();
    }

    fn reason(&self) -> Option<Eviction> {
        match self.reason.load(Ordering::Relaxed) {
            1 => Some(Eviction::ForNewcomer),
            2 => Some(Eviction::PendingBytes),
            _ => None,
        }
    }
}

/// The [`Admission`] rules of one service, shared by its accept loop and its connections.
#[derive(Debug)]
pub struct Gate {
    limits: Limits,
    table: Mutex<Admission<Arc<Closer>>>,
}

impl Gate {
    /// A gate under `limits` with no connection open.
    pub fn new(limits: Limits) -> Arc<Gate> {
        Arc::new(Gate {
            limits,
            table: Mutex::new(Admission::new(limits)),
        })
    }

    /// The limits it applies.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn table(&self) -> MutexGuard<'_, Admission<Arc<Closer>>> {
        // The table stays consistent whatever panicked while holding it: every change is whole.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Admits a connection from `peer` (telling an evicted one to close), or says why not.
    /// Returns whether one was evicted for it along with its ticket.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<(Ticket, bool), Refusal> {
        let closer = Arc::new(Closer::default());
        let (id, evicted) = self.table().admit(peer, Instant::now(), closer.clone())?;
        let evicted = evicted.map(|victim| victim.close(Eviction::ForNewcomer));
        let ticket = Ticket {
            gate: self.clone(),
            id,
            closer,
            pending: 0,
        };
        Ok((ticket, evicted.is_some()))
    }
}

impl Gate {
    /// [`admit`](Self::admit) for an accept loop: a refusal is counted (in `full` at `maxConn`,
    /// in `counters.peer_refused` at the peer limit) and logged (rate-limited warn; the caller
    /// then drops the socket), an eviction logged at debug.
    pub fn accept(
        self: &Arc<Self>,
        peer: SocketAddr,
        full: &AtomicU64,
        counters: &HygieneCounters,
    ) -> Option<Ticket> {
        match self.admit(peer.ip()) {
            Ok((ticket, evicted)) => {
                if evicted {
                    debug!(%peer, "connection limit reached; evicted an idle connection for it");
                }
                Some(ticket)
            }
            Err(refusal) => {
                let (counter, limit, what) = match refusal {
                    Refusal::Full => (full, self.limits.max_conn, "maxConn"),
                    Refusal::PeerFull => (
                        &counters.peer_refused,
                        self.limits.max_conn_per_peer,
                        "max_conn_per_peer",
                    ),
                };
                let n = counter.fetch_add(1, Ordering::Relaxed);
                if worth_logging(n) {
                    warn!(%peer, limit, refused = n + 1,
                        "{what} reached and no idle connection to evict; closing new connection");
                } else {
                    debug!(%peer, limit, refused = n + 1, "{what} reached; closing new connection");
                }
                None
            }
        }
    }
}

/// One admitted connection's place in its [`Gate`]: released when dropped.
#[derive(Debug)]
pub struct Ticket {
    gate: Arc<Gate>,
    id: ConnId,
    closer: Arc<Closer>,
    pending: usize,
}

impl Ticket {
    /// A read timer starting now under the gate's timeouts.
    pub fn read_timer(&self) -> ReadTimer {
        ReadTimer::new(&self.gate.limits, Instant::now())
    }

    /// After a read that completed `frames` frames and left `partial` bytes of an unfinished one:
    /// updates the gate (which may tell the connection holding the largest unfinished frame,
    /// possibly this one, to close).
    pub fn read(&mut self, frames: usize, partial: usize) {
        if frames == 0 && partial == self.pending {
            return;
        }
        self.pending = partial;
        let mut table = self.gate.table();
        if frames > 0 {
            table.framed(self.id, Instant::now());
        }
        if let Some(largest) = table.pending(self.id, partial) {
            drop(table);
            largest.close(Eviction::PendingBytes);
        }
    }

    /// Resolves once the gate tells this connection to close, with why.
    pub async fn closed(&self) -> Eviction {
        loop {
            if let Some(why) = self.closer.reason() {
                return why;
            }
            self.closer.notify.notified().await;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.table().release(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const FRAME: Duration = Duration::from_secs(10);

    fn limits(max_conn: usize, per_peer: usize, pending: usize) -> Limits {
        Limits {
            max_conn,
            max_conn_per_peer: per_peer,
            max_pending_bytes: pending,
            frame_timeout: FRAME,
            idle_timeout: Duration::from_secs(60),
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn at_max_conn_the_oldest_silent_connection_is_evicted_before_any_that_sent_a_frame() {
        let t0 = Instant::now();
        let mut table = Admission::new(limits(3, 10, 1 << 20));
        let (agent, _) = table.admit(ip(1), t0, "agent").unwrap();
        table.admit(ip(2), secs(t0, 1), "silent-old").unwrap();
        table.admit(ip(3), secs(t0, 2), "silent-new").unwrap();
        // The agent's frame is 30 s old, older than either silent connection's accept.
        table.framed(agent, secs(t0, 3));
        let (_, evicted) = table.admit(ip(4), secs(t0, 33), "newcomer").unwrap();
        assert_eq!(evicted, Some("silent-old"));
        let (_, evicted) = table.admit(ip(5), secs(t0, 34), "second").unwrap();
        assert_eq!(evicted, Some("silent-new"));
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn a_connection_that_sent_a_frame_recently_is_never_evicted() {
        let t0 = Instant::now();
        let mut table = Admission::new(limits(2, 10, 1 << 20));
        let (a, _) = table.admit(ip(1), t0, "a").unwrap();
        let (b, _) = table.admit(ip(2), t0, "b").unwrap();
        table.framed(a, secs(t0, 5));
        table.framed(b, secs(t0, 8));
        assert_eq!(
            table.admit(ip(3), secs(t0, 14), "c").unwrap_err(),
            Refusal::Full
        );
        // Once `a` has been quiet for frame_timeout it is the one to go; `b` is still protected.
        let (_, evicted) = table.admit(ip(3), secs(t0, 15), "c").unwrap();
        assert_eq!(evicted, Some("a"));
    }

    #[test]
    fn among_framed_connections_the_one_idle_longest_is_evicted() {
        let t0 = Instant::now();
        let mut table = Admission::new(limits(3, 10, 1 << 20));
        for (last, at) in [(1, 7), (2, 3), (3, 5)] {
            let (id, _) = table.admit(ip(last), t0, last).unwrap();
            table.framed(id, secs(t0, at));
        }
        let (_, evicted) = table.admit(ip(9), secs(t0, 60), 9).unwrap();
        assert_eq!(evicted, Some(2));
    }

    #[test]
    fn the_peer_limit_evicts_only_that_peers_connections_or_refuses() {
        let t0 = Instant::now();
        let mut table = Admission::new(limits(100, 2, 1 << 20));
        table.admit(ip(9), t0, "other-silent").unwrap();
        table.admit(ip(1), secs(t0, 1), "a").unwrap();
        table.admit(ip(1), secs(t0, 2), "b").unwrap();
        // The peer's own oldest silent connection goes, not the other peer's older one.
        let (_, evicted) = table.admit(ip(1), secs(t0, 3), "c").unwrap();
        assert_eq!(evicted, Some("a"));
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn a_peer_whose_connections_all_work_is_refused_at_its_limit() {
        let t0 = Instant::now();
        let mut table = Admission::new(limits(100, 2, 1 << 20));
        for n in 0..2 {
            let (id, _) = table.admit(ip(1), t0, n).unwrap();
            table.framed(id, secs(t0, 1));
        }
        assert_eq!(
            table.admit(ip(1), secs(t0, 2), 2).unwrap_err(),
            Refusal::PeerFull
        );
        // Another peer is not affected, and releasing one makes room again.
        table.admit(ip(2), secs(t0, 2), 3).unwrap();
        let (id, _) = table.admit(ip(3), secs(t0, 2), 4).unwrap();
        assert_eq!(table.release(id), Some(4));
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn past_max_pending_bytes_the_largest_unfinished_frame_is_closed() {
        let t0 = Instant::now();
        let mut table = Admission::new(limits(10, 10, 100));
        let (a, _) = table.admit(ip(1), t0, "a").unwrap();
        let (b, _) = table.admit(ip(2), t0, "b").unwrap();
        let (c, _) = table.admit(ip(3), t0, "c").unwrap();
        assert_eq!(table.pending(a, 60), None);
        assert_eq!(table.pending(b, 30), None);
        assert_eq!(table.pending(a, 70), None);
        // 70 + 30 + 5 > 100: `a` holds the most, though `c` pushed the total over.
        assert_eq!(table.pending(c, 5), Some("a"));
        assert_eq!(table.pending_bytes(), 35);
        assert_eq!(table.release(a), None, "evicted already");
        assert_eq!(table.release(b), Some("b"));
        assert_eq!(table.pending_bytes(), 5);
    }

    #[test]
    fn the_read_timer_allows_frame_timeout_per_frame_and_idle_timeout_between_frames() {
        let t0 = Instant::now();
        let mut timer = ReadTimer::new(&limits(1, 1, 1), t0);
        assert_eq!(timer.deadline(), (secs(t0, 60), TimedOut::Idle));
        // A frame begun at 20 s must be finished by 30 s.
        timer.read(secs(t0, 20), 0, 8);
        timer.read(secs(t0, 25), 0, 100);
        assert_eq!(timer.deadline(), (secs(t0, 30), TimedOut::Frame));
        // Finished with the start of the next one in the same read: that one starts the clock.
        timer.read(secs(t0, 28), 1, 3);
        assert_eq!(timer.deadline(), (secs(t0, 38), TimedOut::Frame));
        timer.read(secs(t0, 29), 1, 0);
        assert_eq!(timer.deadline(), (secs(t0, 89), TimedOut::Idle));
        // A frame begun just before the idle deadline does not extend it.
        timer.read(secs(t0, 85), 0, 4);
        assert_eq!(timer.deadline(), (secs(t0, 89), TimedOut::Idle));
    }

    #[tokio::test]
    async fn the_gate_tells_the_evicted_connection_why_and_frees_its_slot_on_drop() {
        let gate = Gate::new(limits(1, 10, 10));
        let (old, evicted) = gate.admit(ip(1)).unwrap();
        assert!(!evicted);
        let (mut new, evicted) = gate.admit(ip(2)).unwrap();
        assert!(evicted);
        assert_eq!(old.closed().await, Eviction::ForNewcomer);
        drop(old);
        assert_eq!(gate.table().len(), 1);
        new.read(0, 11);
        assert_eq!(new.closed().await, Eviction::PendingBytes);
        drop(new);
        assert!(gate.table().is_empty());
    }
}
