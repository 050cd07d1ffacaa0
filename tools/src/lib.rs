//! The `lars` command line: operator commands over the route store (`lars route add|del|list`).
//! Argument definitions and command bodies live here; `src/bin/lars.rs` only parses and exits.

#![deny(missing_docs)]

pub mod args;
pub mod cli;
pub mod route_admin;
