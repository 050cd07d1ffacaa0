//! The `lars` command line: operator commands over the route store (`lars init`,
//! `lars route add|del|list`) and the stored call statistics (`lars status`), and any service's
//! metrics (`lars stats`, `lars agent-stats`).
//! Argument definitions and command bodies live here; `src/bin/lars.rs` only parses and exits.

#![deny(missing_docs)]

pub mod agent_stats;
pub mod args;
pub mod caller;
pub mod cli;
pub mod perf;
pub mod route_admin;
pub mod stats;
pub mod status;
pub mod store;
