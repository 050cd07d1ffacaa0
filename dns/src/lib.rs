//! `lars-dns`: the central service that maps `(modid, cmdid)` to its hosts and pushes route
//! changes to the agents that asked for them.
//!
//! Agents connect over TCP and send `GetRouteRequest` frames; each request subscribes the
//! connection to its key and is answered from an immutable [`snapshot::RouteSnapshot`] of the
//! route table. The [`route_sync::RouteSync`] loop polls `RouteVersion` in the store every second
//! (and reloads fully every 10 s), swaps in a new snapshot, and broadcasts the changed keys; every
//! connection pushes the ones it subscribed to. Each connection writes through its own bounded
//! [`write_queue`], so a slow agent never holds up the others: an agent that asks faster than it
//! reads is no longer read from until its answers have room; one that reads slowly is caught up
//! with the newest state of each key that changed meanwhile, once per key; and only one that
//! reads nothing at all for `stalled_reader_timeout_ms` is closed ([`connection`]).
//!
//! ```text
//!  lars route add ──► RouteData/RouteChange/RouteVersion ──poll──► RouteSync ──swap──► snapshot
//!                                                                     │ changed keys
//!                                                     connection ◄────┴────► connection ──► agent
//! ```

#![deny(missing_docs)]

pub mod config;
pub mod connection;
pub mod push_empty;
pub mod route_sync;
pub mod server;
pub mod shared;
pub mod snapshot;
pub mod stats;
pub mod subscriptions;
pub mod write_queue;

pub use config::DnsConfig;
pub use server::{DnsError, DnsServer};
pub use stats::DnsStats;
