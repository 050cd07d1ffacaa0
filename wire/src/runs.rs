//! [`RunRing`]: one calling thread's results on their way to the flusher, as runs. A bounded
//! ring with one producer (the thread that owns it) and one consumer (the flusher), lock-free:
//! a result that continues its host's latest run only adds one to that run's count with a
//! compare-and-swap on a word no other thread writes except the flusher's one `swap` when it
//! takes the run, so a caller reporting millions of results a second hands the flusher a few
//! runs per host per flush, in the order it made the calls, and nothing is held back from a
//! flush: every result is in the ring the moment `report` returns.

use crate::{HostAddr, RouteKey};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

/// The word of a run the flusher has taken: the producer starts a new run instead.
const SEALED: u64 = u64::MAX;

/// Longest run one element counts (the wire's run field holds `count << 1 | failed` in 32
/// bits).
pub(crate) const MAX_RUN: u64 = (u32::MAX >> 1) as u64;

/// One run: `word` is `count << 1 | succ`, or [`SEALED`].
#[derive(Default)]
struct RunSlot {
    key: AtomicU64,
    host: AtomicU64,
    word: AtomicU64,
}

/// A run taken by the flusher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) key: RouteKey,
    pub(crate) host: HostAddr,
    pub(crate) succ: bool,
    pub(crate) count: u32,
}

/// The ring. Positions are absolute (`u64`); slot `pos % len`.
pub(crate) struct RunRing {
    slots: Box<[RunSlot]>,
    /// Next position the producer writes.
    head: AtomicU64,
    /// Next position the consumer reads.
    tail: AtomicU64,
}

/// What the producer keeps about its ring: where each (route, host)'s latest run is.
#[derive(Default)]
pub(crate) struct OpenRuns {
    latest: Vec<(RouteKey, HostAddr, u64)>,
}

/// Most (route, host) pairs whose latest run a producer remembers; a forgotten one starts a new
/// run with its next result.
const OPEN_MAX: usize = 64;

/// What [`RunRing::record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// Counted in the host's latest run.
    Extended,
    /// A new run; the ring now holds this many runs.
    Started(u64),
    /// The ring is full: the result is dropped.
    Full,
}

fn pack_key(key: RouteKey) -> u64 {
    u64::from(key.modid as u32) << 32 | u64::from(key.cmdid as u32)
}

fn unpack_key(v: u64) -> RouteKey {
    RouteKey::new((v >> 32) as u32 as i32, v as u32 as i32)
}

fn pack_host(host: HostAddr) -> u64 {
    u64::from(host.ip_bits()) << 16 | u64::from(host.port)
}

fn unpack_host(v: u64) -> HostAddr {
    HostAddr::new(Ipv4Addr::from((v >> 16) as u32), v as u16)
}

impl RunRing {
    /// A ring of `capacity` runs (at least one).
    pub(crate) fn new(capacity: usize) -> RunRing {
        RunRing {
            slots: (0..capacity.max(1)).map(|_| RunSlot::default()).collect(),
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
        }
    }

    /// Records one result. Only the owning thread calls this, always with its own `open`.
    pub(crate) fn record(
        &self,
        open: &mut OpenRuns,
        key: RouteKey,
        host: HostAddr,
        succ: bool,
    ) -> Recorded {
        let len = self.slots.len() as u64;
        // Only this thread writes `head`.
        let head = self.head.load(Ordering::Relaxed);
        let at = open
            .latest
            .iter()
            .position(|&(k, h, _)| k == key && h == host);
        if let Some(at) = at {
            let pos = open.latest[at].2;
            // A slot is reused only once the producer has written `len` positions past it.
            if pos + len > head {
                let word = &self.slots[(pos % len) as usize].word;
                let mut w = word.load(Ordering::Relaxed);
                while w != SEALED && (w & 1 == 1) == succ && (w >> 1) < MAX_RUN {
                    match word.compare_exchange_weak(w, w + 2, Ordering::Relaxed, Ordering::Relaxed)
                    {
                        Ok(_) => return Recorded::Extended,
                        Err(now) => w = now,
                    }
                }
            }
        }
        let tail = self.tail.load(Ordering::Acquire);
        if head - tail >= len {
            return Recorded::Full;
        }
        if let Some(at) = at {
            open.latest.swap_remove(at);
        }
        let slot = &self.slots[(head % len) as usize];
        slot.key.store(pack_key(key), Ordering::Relaxed);
        slot.host.store(pack_host(host), Ordering::Relaxed);
        slot.word.store(2 | u64::from(succ), Ordering::Relaxed);
        // Publishes the slot's fields with the new head.
        self.head.store(head + 1, Ordering::Release);
        if open.latest.len() >= OPEN_MAX {
            open.latest.remove(0);
        }
        open.latest.push((key, host, head));
        Recorded::Started(head + 1 - tail)
    }

    /// Takes every run recorded so far, oldest first. Only the flusher calls this.
    pub(crate) fn drain(&self, mut each: impl FnMut(Run)) {
        let head = self.head.load(Ordering::Acquire);
        let mut tail = self.tail.load(Ordering::Relaxed);
        let len = self.slots.len() as u64;
        while tail < head {
            let slot = &self.slots[(tail % len) as usize];
            // After this the producer cannot add to the run; it starts a new one.
            let word = slot.word.swap(SEALED, Ordering::AcqRel);
            each(Run {
                key: unpack_key(slot.key.load(Ordering::Relaxed)),
                host: unpack_host(slot.host.load(Ordering::Relaxed)),
                succ: word & 1 == 1,
                count: (word >> 1) as u32,
            });
            tail += 1;
        }
        // Frees the slots for the producer.
        self.tail.store(tail, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn host(last: u8) -> HostAddr {
        HostAddr::new(Ipv4Addr::new(10, 0, 0, last), 80)
    }

    fn drained(ring: &RunRing) -> Vec<(HostAddr, bool, u32)> {
        let mut out = Vec::new();
        ring.drain(|r| out.push((r.host, r.succ, r.count)));
        out
    }

    #[test]
    fn results_become_runs_per_host_in_order() {
        let (ring, mut open) = (RunRing::new(16), OpenRuns::default());
        let key = RouteKey::new(1, 2);
        for (h, succ) in [
            (1, true),
            (2, true),
            (1, true),
            (2, true),
            (1, false),
            (1, false),
            (2, true),
        ] {
            assert_ne!(ring.record(&mut open, key, host(h), succ), Recorded::Full);
        }
        assert_eq!(
            drained(&ring),
            vec![(host(1), true, 2), (host(2), true, 3), (host(1), false, 2)]
        );
        // A taken run is not extended: the next result starts a new one.
        ring.record(&mut open, key, host(2), true);
        assert_eq!(drained(&ring), vec![(host(2), true, 1)]);
    }

    #[test]
    fn a_full_ring_drops_and_a_drained_one_takes_runs_again() {
        let (ring, mut open) = (RunRing::new(2), OpenRuns::default());
        let key = RouteKey::new(1, 1);
        assert_eq!(
            ring.record(&mut open, key, host(1), true),
            Recorded::Started(1)
        );
        assert_eq!(
            ring.record(&mut open, key, host(1), false),
            Recorded::Started(2)
        );
        assert_eq!(ring.record(&mut open, key, host(1), true), Recorded::Full);
        assert_eq!(
            ring.record(&mut open, key, host(1), false),
            Recorded::Extended
        );
        assert_eq!(
            drained(&ring),
            vec![(host(1), true, 1), (host(1), false, 2)]
        );
        assert_eq!(
            ring.record(&mut open, key, host(1), true),
            Recorded::Started(1)
        );
    }

    #[test]
    fn keys_and_hosts_of_any_value_come_back_unchanged() {
        let (ring, mut open) = (RunRing::new(4), OpenRuns::default());
        let key = RouteKey::new(i32::MAX, 0);
        let far = HostAddr::new(Ipv4Addr::new(255, 254, 253, 252), 65535);
        ring.record(&mut open, key, far, true);
        let mut got = Vec::new();
        ring.drain(|r| got.push(r));
        assert_eq!(
            got,
            vec![Run {
                key,
                host: far,
                succ: true,
                count: 1
            }]
        );
    }

    #[test]
    fn concurrent_draining_loses_and_reorders_nothing() {
        // One producer reports a known sequence while a consumer drains as fast as it can; the
        // runs taken, expanded, are exactly the sequence, per host in order.
        let ring = Arc::new(RunRing::new(64));
        let key = RouteKey::new(3, 3);
        let pattern = |i: u32| (host((i % 3) as u8 + 1), !(i / 7).is_multiple_of(3));
        const N: u32 = 200_000;
        let producer = {
            let ring = Arc::clone(&ring);
            std::thread::spawn(move || {
                let mut open = OpenRuns::default();
                let mut i = 0;
                while i < N {
                    let (h, succ) = pattern(i);
                    if ring.record(&mut open, key, h, succ) != Recorded::Full {
                        i += 1;
                    }
                }
            })
        };
        let mut got: Vec<Run> = Vec::new();
        let mut total = 0u64;
        while total < u64::from(N) {
            ring.drain(|r| {
                total += u64::from(r.count);
                got.push(r);
            });
        }
        producer.join().unwrap();
        ring.drain(|r| got.push(r));
        for h in 1..=3u8 {
            let want: Vec<bool> = (0..N)
                .map(pattern)
                .filter(|p| p.0 == host(h))
                .map(|p| p.1)
                .collect();
            let seen: Vec<bool> = got
                .iter()
                .filter(|r| r.host == host(h))
                .flat_map(|r| std::iter::repeat_n(r.succ, r.count as usize))
                .collect();
            assert_eq!(seen, want, "host {h}");
        }
    }
}
