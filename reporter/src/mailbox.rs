//! The coalescing core of one store worker: the latest row of every key that is not in the
//! database yet, in the order the keys arrived, bounded by `max_pending_keys`.
//!
//! Sans-I/O: plain methods that take the rows and the current time and return what happened, for
//! the counters. [`Inbox`](crate::inbox::Inbox) wraps it in a mutex shared by the connections
//! (which [`put`](Mailbox::put) rows) and one [store worker](crate::store_worker) (which
//! [takes chunks](Mailbox::take_chunk) and reports how each write went).
//!
//! # The rules
//!
//! - **Latest wins.** A row for a key already pending replaces the pending row in place
//!   (*coalesced*): only the latest value of a key is ever worth writing, since every
//!   `ReportStatusRequest` carries the full window counts, not increments.
//! - **Arrival order.** Keys are kept in the order they became pending; an update does not move
//!   its key. Writes take the oldest keys first, so a key that is updated faster than the worker
//!   goes round is still written within one round (it cannot starve at the back), and the front
//!   key tells how far behind the database is ([`oldest_arrival`](Mailbox::oldest_arrival)).
//! - **Bounded.** At most `max_keys` keys are pending. A new key beyond that evicts the oldest
//!   pending key (*dropped*). Memory is therefore bounded by the number of distinct keys (and the
//!   cap), whatever the arrival rate and however long the database is away.
//! - **Rows are not taken away while they are written.** [`take_chunk`](Mailbox::take_chunk)
//!   copies up to `batch_rows` of the oldest rows and remembers their generation; the rows stay
//!   pending. After a successful write, each row that was not replaced meanwhile is removed; after
//!   a failed one nothing moves, so a retry writes the latest value of every key and a row can
//!   never be put back *over* a newer one. (The design sketch had the worker take the whole map
//!   and merge it back under newer rows on failure; keeping rows in place needs no merge and holds
//!   at most `max_keys` rows plus one chunk, instead of up to twice the keys during a write.)
//!
//! # Accounting
//!
//! Every row put in ends up in exactly one of: *written*, *coalesced* (replaced by a newer row of
//! its key before it was written), *dropped* (evicted over the cap) or still pending — so once no
//! write is in flight, `put = written + coalesced + dropped + len()`. A row that is replaced or
//! evicted while a write of it is in flight is settled when that write ends: written if it
//! succeeded, coalesced or dropped if it failed.
//!
//! The map is lars-wire's [`LatestWins`], the one "latest per key wins, first arrival first"
//! container the agent's report uplink and the store use too: O(1) insert, lookup, update in
//! place, removal of any key and removal of the oldest.

use lars_store::{CallStatusKey, CallStatusRow};
use lars_wire::LatestWins;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A pending row and when its key became pending (or, for a row that replaced one being
/// written, when it arrived).
#[derive(Debug, Clone, Copy)]
struct Pending {
    row: CallStatusRow,
    /// Unique per put; tells whether the row being written is still the pending one.
    generation: u64,
    arrived: Instant,
}

/// A row of the chunk being written, until the write ends.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    generation: u64,
    /// A newer row of the key arrived after the chunk was taken.
    superseded: bool,
    /// The row being written was evicted over the cap while it was written.
    evicted: bool,
}

/// What a [`Mailbox::put`] did to rows already pending.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PutOutcome {
    /// Pending rows replaced by the newer row of their key.
    pub coalesced: u64,
    /// Pending rows evicted because `max_keys` keys were pending.
    pub dropped: u64,
}

impl std::ops::AddAssign for PutOutcome {
    fn add_assign(&mut self, other: PutOutcome) {
        self.coalesced += other.coalesced;
        self.dropped += other.dropped;
    }
}

/// How a write of a chunk ended, for the counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Rows now in the database.
    pub written: u64,
    /// Rows of a failed chunk that a newer row of their key had replaced meanwhile.
    pub coalesced: u64,
    /// Rows of a failed chunk that were evicted over the cap meanwhile.
    pub dropped: u64,
}

/// When the worker should write next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextWrite {
    /// A full chunk is pending, or the oldest row has waited `flush` already.
    Now,
    /// Rows are pending; unless a full chunk gathers first, write at this time.
    At(Instant),
    /// Nothing is pending.
    Idle,
}

/// The rows of one write, copied out of the mailbox. Reused from write to write.
#[derive(Debug, Default)]
pub struct Chunk {
    rows: Vec<CallStatusRow>,
    generations: Vec<u64>,
}

impl Chunk {
    /// An empty chunk with room for `rows` rows.
    pub fn with_capacity(rows: usize) -> Chunk {
        Chunk {
            rows: Vec::with_capacity(rows),
            generations: Vec::with_capacity(rows),
        }
    }

    /// The rows to write (distinct keys, oldest first).
    pub fn rows(&self) -> &[CallStatusRow] {
        &self.rows
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the chunk has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// The pending rows of one store worker.
#[derive(Debug)]
pub struct Mailbox {
    rows: LatestWins<CallStatusKey, Pending>,
    in_flight: HashMap<CallStatusKey, InFlight>,
    next_generation: u64,
    max_keys: usize,
}

impl Mailbox {
    /// An empty mailbox holding at most `max_keys` (at least 1) pending keys.
    pub fn new(max_keys: usize) -> Mailbox {
        Mailbox {
            rows: LatestWins::new(),
            in_flight: HashMap::new(),
            next_generation: 0,
            max_keys: max_keys.max(1),
        }
    }

    /// Pending keys (= pending rows).
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// When the oldest pending row arrived: the database is at most this far behind.
    pub fn oldest_arrival(&self) -> Option<Instant> {
        self.rows.oldest().map(|(_, p)| p.arrived)
    }

    /// The pending row of `key`, if any.
    pub fn get(&self, key: &CallStatusKey) -> Option<CallStatusRow> {
        self.rows.get(key).map(|p| p.row)
    }

    /// Puts `row` in: it replaces the pending row of its key in place, or becomes the newest
    /// pending key, evicting the oldest when `max_keys` keys are pending.
    pub fn put(&mut self, row: CallStatusRow, now: Instant) -> PutOutcome {
        let mut outcome = PutOutcome::default();
        let key = row.key();
        let generation = self.next_generation;
        self.next_generation += 1;
        let flight = self.in_flight.get(&key).map(|f| f.generation);
        match self.rows.get_mut(&key) {
            Some(pending) => {
                if flight == Some(pending.generation) {
                    // The row being replaced is being written: it is settled when the write
                    // ends. The new row is the first of its key that is not on its way.
                    pending.arrived = now;
                } else {
                    outcome.coalesced += 1;
                }
                pending.row = row;
                pending.generation = generation;
            }
            None => {
                if self.rows.len() >= self.max_keys {
                    outcome.dropped += self.evict_oldest();
                }
                self.rows.put(
                    key,
                    Pending {
                        row,
                        generation,
                        arrived: now,
                    },
                );
            }
        }
        if let Some(flight) = self.in_flight.get_mut(&key) {
            flight.superseded = true;
        }
        outcome
    }

    /// Evicts the oldest pending key; returns 1 when that loses a row now, 0 when the row is
    /// being written (it is settled when the write ends).
    fn evict_oldest(&mut self) -> u64 {
        let Some((key, pending)) = self.rows.pop_oldest() else {
            return 0;
        };
        match self.in_flight.get_mut(&key) {
            Some(flight) if flight.generation == pending.generation => {
                flight.evicted = true;
                0
            }
            _ => 1,
        }
    }

    /// When to write next: now when `batch_rows` rows are pending or the oldest has waited
    /// `flush`; otherwise when the oldest will have waited `flush`.
    pub fn next_write(&self, now: Instant, batch_rows: usize, flush: Duration) -> NextWrite {
        let Some(oldest) = self.oldest_arrival() else {
            return NextWrite::Idle;
        };
        let due = oldest + flush;
        if self.rows.len() >= batch_rows || due <= now {
            NextWrite::Now
        } else {
            NextWrite::At(due)
        }
    }

    /// Copies up to `max_rows` of the oldest pending rows into `chunk` (replacing what it
    /// held) and marks them as being written. Every chunk taken must be settled with
    /// [`Mailbox::written`] or [`Mailbox::failed`] before the next is taken.
    pub fn take_chunk(&mut self, max_rows: usize, chunk: &mut Chunk) {
        debug_assert!(
            self.in_flight.is_empty(),
            "the previous chunk was not settled"
        );
        self.in_flight.clear();
        chunk.rows.clear();
        chunk.generations.clear();
        for (key, pending) in self.rows.iter().take(max_rows) {
            chunk.rows.push(pending.row);
            chunk.generations.push(pending.generation);
            self.in_flight.insert(
                *key,
                InFlight {
                    generation: pending.generation,
                    superseded: false,
                    evicted: false,
                },
            );
        }
    }

    /// Settles a chunk that is now in the database: its rows that were not replaced meanwhile
    /// stop being pending.
    pub fn written(&mut self, chunk: &Chunk) -> WriteOutcome {
        for (row, generation) in chunk.rows.iter().zip(&chunk.generations) {
            let key = row.key();
            if self
                .rows
                .get(&key)
                .is_some_and(|p| p.generation == *generation)
            {
                self.rows.remove(&key);
            }
        }
        self.in_flight.clear();
        WriteOutcome {
            written: chunk.rows.len() as u64,
            ..WriteOutcome::default()
        }
    }

    /// Settles a chunk whose write failed: its rows stay pending where they are (the latest
    /// value of each key), and rows replaced or evicted meanwhile are counted now.
    pub fn failed(&mut self, chunk: &Chunk) -> WriteOutcome {
        debug_assert_eq!(chunk.len(), self.in_flight.len(), "not the chunk in flight");
        let mut outcome = WriteOutcome::default();
        for (_, flight) in self.in_flight.drain() {
            if flight.superseded {
                outcome.coalesced += 1;
            } else if flight.evicted {
                outcome.dropped += 1;
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn row(key: u16, value: u32) -> CallStatusRow {
        CallStatusRow {
            modid: 1,
            cmdid: 2,
            ip: 0xC0A8_0001,
            port: key,
            caller: 7,
            succ_cnt: value,
            err_cnt: value / 2,
            ts: i64::from(value),
            overload: value % 2 == 1,
        }
    }

    fn ports(chunk: &Chunk) -> Vec<u16> {
        chunk.rows().iter().map(|r| r.port).collect()
    }

    #[test]
    fn a_newer_row_replaces_the_pending_one_in_place() {
        let t = Instant::now();
        let mut m = Mailbox::new(10);
        assert_eq!(m.put(row(1, 1), t), PutOutcome::default());
        m.put(row(2, 1), t);
        let outcome = m.put(row(1, 5), t + Duration::from_millis(3));
        assert_eq!(outcome.coalesced, 1);
        assert_eq!(m.len(), 2);
        let mut chunk = Chunk::default();
        m.take_chunk(10, &mut chunk);
        // Key 1 keeps its place at the front and carries the latest value.
        assert_eq!(ports(&chunk), vec![1, 2]);
        assert_eq!(chunk.rows()[0].succ_cnt, 5);
        assert_eq!(m.oldest_arrival(), Some(t));
    }

    #[test]
    fn over_the_cap_the_oldest_key_is_dropped() {
        let t = Instant::now();
        let mut m = Mailbox::new(3);
        for key in 1..=3 {
            m.put(row(key, 1), t);
        }
        assert_eq!(m.put(row(4, 1), t).dropped, 1);
        assert_eq!(m.put(row(3, 2), t).dropped, 0, "an update is no new key");
        assert_eq!(m.put(row(5, 1), t).dropped, 1);
        let mut chunk = Chunk::default();
        m.take_chunk(10, &mut chunk);
        assert_eq!(ports(&chunk), vec![3, 4, 5]);
    }

    #[test]
    fn writes_take_the_oldest_rows_and_a_success_removes_them() {
        let t = Instant::now();
        let mut m = Mailbox::new(10);
        for key in 1..=5 {
            m.put(row(key, 1), t);
        }
        let mut chunk = Chunk::default();
        m.take_chunk(2, &mut chunk);
        assert_eq!(ports(&chunk), vec![1, 2]);
        assert_eq!(m.len(), 5, "rows stay pending while written");
        assert_eq!(m.written(&chunk).written, 2);
        assert_eq!(m.len(), 3);
        m.take_chunk(10, &mut chunk);
        assert_eq!(ports(&chunk), vec![3, 4, 5]);
    }

    #[test]
    fn a_row_replaced_during_its_write_stays_pending_with_the_newer_value() {
        let t = Instant::now();
        let mut m = Mailbox::new(10);
        m.put(row(1, 1), t);
        let mut chunk = Chunk::default();
        m.take_chunk(10, &mut chunk);
        let later = t + Duration::from_millis(20);
        assert_eq!(
            m.put(row(1, 2), later),
            PutOutcome::default(),
            "not coalesced: the old row is being written"
        );
        assert_eq!(m.written(&chunk).written, 1);
        assert_eq!(m.get(&row(1, 0).key()).map(|r| r.succ_cnt), Some(2));
        assert_eq!(m.oldest_arrival(), Some(later));
    }

    #[test]
    fn a_failed_write_keeps_every_key_with_its_latest_value() {
        let t = Instant::now();
        let mut m = Mailbox::new(10);
        m.put(row(1, 1), t);
        m.put(row(2, 1), t);
        let mut chunk = Chunk::default();
        m.take_chunk(10, &mut chunk);
        m.put(row(2, 9), t);
        let outcome = m.failed(&chunk);
        assert_eq!(
            outcome,
            WriteOutcome {
                written: 0,
                coalesced: 1,
                dropped: 0
            }
        );
        m.take_chunk(10, &mut chunk);
        let values: Vec<(u16, u32)> = chunk.rows().iter().map(|r| (r.port, r.succ_cnt)).collect();
        assert_eq!(values, vec![(1, 1), (2, 9)]);
    }

    #[test]
    fn a_row_evicted_during_its_write_is_lost_only_if_the_write_fails() {
        let t = Instant::now();
        for succeed in [true, false] {
            let mut m = Mailbox::new(2);
            m.put(row(1, 1), t);
            m.put(row(2, 1), t);
            let mut chunk = Chunk::default();
            m.take_chunk(1, &mut chunk);
            assert_eq!(m.put(row(3, 1), t).dropped, 0, "key 1 is being written");
            let outcome = if succeed {
                m.written(&chunk)
            } else {
                m.failed(&chunk)
            };
            let expected = if succeed { (1, 0) } else { (0, 1) };
            assert_eq!((outcome.written, outcome.dropped), expected);
            assert_eq!(m.len(), 2);
        }
    }

    #[test]
    fn the_next_write_is_due_at_a_full_chunk_or_after_flush() {
        let t = Instant::now();
        let flush = Duration::from_millis(50);
        let mut m = Mailbox::new(100);
        assert_eq!(m.next_write(t, 3, flush), NextWrite::Idle);
        m.put(row(1, 1), t);
        assert_eq!(m.next_write(t, 3, flush), NextWrite::At(t + flush));
        assert_eq!(m.next_write(t + flush, 3, flush), NextWrite::Now);
        m.put(row(2, 1), t);
        m.put(row(3, 1), t);
        assert_eq!(m.next_write(t, 3, flush), NextWrite::Now);
    }

    /// One step of a random run: a put of (key, value), taking a chunk, or settling it.
    #[derive(Debug, Clone)]
    enum Step {
        Put(u16),
        Take(usize),
        Write(bool),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (0u16..12).prop_map(Step::Put),
            1 => (1usize..6).prop_map(Step::Take),
            1 => any::<bool>().prop_map(Step::Write),
        ]
    }

    proptest! {
        /// Every row put in is written, coalesced, dropped or still pending, exactly once; and
        /// with a cap no smaller than the keys, once everything is written the "database"
        /// holds the last value put for every key.
        #[test]
        fn every_row_is_accounted_for_and_the_last_value_wins(
            steps in proptest::collection::vec(step(), 1..300),
            max_keys in 1usize..16,
        ) {
            let t = Instant::now();
            let mut m = Mailbox::new(max_keys);
            let mut chunk = Chunk::default();
            let mut in_flight = false;
            let (mut put, mut written, mut coalesced, mut dropped) = (0u64, 0u64, 0u64, 0u64);
            let mut db: HashMap<CallStatusKey, u32> = HashMap::new();
            let mut last: HashMap<CallStatusKey, u32> = HashMap::new();
            let settle = |m: &mut Mailbox, chunk: &Chunk, ok: bool, db: &mut HashMap<_, _>| {
                if ok {
                    for r in chunk.rows() {
                        db.insert(r.key(), r.succ_cnt);
                    }
                    m.written(chunk)
                } else {
                    m.failed(chunk)
                }
            };
            for (i, s) in steps.into_iter().enumerate() {
                match s {
                    Step::Put(key) => {
                        let r = row(key, i as u32);
                        last.insert(r.key(), r.succ_cnt);
                        let o = m.put(r, t);
                        put += 1;
                        coalesced += o.coalesced;
                        dropped += o.dropped;
                    }
                    Step::Take(n) if !in_flight => {
                        m.take_chunk(n, &mut chunk);
                        in_flight = true;
                    }
                    Step::Write(ok) if in_flight => {
                        let o = settle(&mut m, &chunk, ok, &mut db);
                        written += o.written;
                        coalesced += o.coalesced;
                        dropped += o.dropped;
                        in_flight = false;
                    }
                    _ => {}
                }
                if !in_flight {
                    prop_assert_eq!(put, written + coalesced + dropped + m.len() as u64);
                }
                prop_assert!(m.len() <= max_keys);
            }
            // Drain: every pending row gets written.
            if in_flight {
                let o = settle(&mut m, &chunk, true, &mut db);
                written += o.written;
            }
            while !m.is_empty() {
                m.take_chunk(4, &mut chunk);
                written += settle(&mut m, &chunk, true, &mut db).written;
            }
            prop_assert_eq!(put, written + coalesced + dropped);
            if dropped == 0 {
                prop_assert_eq!(db, last);
            }
        }
    }
}
