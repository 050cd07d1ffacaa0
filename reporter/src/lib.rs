//! `lars-reporter`: the central service that receives per-host call statistics from the agents
//! and stores them in `ServerCallStatus`, batched, coalesced and proof against database outages.
//!
//! Agents connect over TCP and send `ReportStatusRequest` frames ([`connection`]); every
//! `HostCallResult` becomes one row keyed by `(modid, cmdid, ip, port, caller)` ([`report`]).
//! Each key belongs to one of `db_thread_cnt` store workers ([`inbox::Inboxes::route`]), so the
//! rows of a key are written in the order they arrived. A worker's [`mailbox`] keeps the latest
//! row of every key not yet written, in arrival order and bounded by `max_pending_keys`; the
//! [`store_worker`] writes the oldest `batch_rows` of them in one multi-row upsert whenever a
//! full chunk is pending or the oldest has waited `flush_ms`.
//!
//! ```text
//!  agent ──frames──► connection ──rows, by key──► inbox 0 ──► store worker 0 ──┐
//!  agent ──frames──► connection ───────────────► inbox 1 ──► store worker 1 ──┼──► ServerCallStatus
//!                                                 inbox 2 ──► store worker 2 ──┘   (multi-row upserts)
//! ```
//!
//! The network side never waits for the database: a row for a pending key replaces it
//! (*coalesced*), a new key beyond the cap evicts the oldest (*dropped*). While the database is
//! down the workers keep the latest row per key, retry with capped backoff, and write all of it
//! when it is back. The counters ([`ReporterStats`]) are logged every 10 s when they moved.
//!
//! Where the original Lars reporter wrote one row per statement (plus a ping) from unbounded
//! queues — falling minutes behind and growing without bound under load — this one keeps memory
//! bounded by the number of distinct keys and the stored statistics within a few flush periods
//! of what the agents sent (see `perf/RESULTS.md`).

#![deny(missing_docs)]

pub mod config;
pub mod connection;
pub mod inbox;
pub mod mailbox;
pub mod report;
pub mod server;
pub mod shutdown;
pub mod stats;
pub mod store_worker;

pub use config::ReporterConfig;
pub use inbox::{Backlog, Inboxes};
pub use server::{ReporterError, ReporterServer};
pub use stats::ReporterStats;
