//! The names operators gave modules and commands, as the pages show them next to the numbers.
//!
//! Owns the one place the console asks for names, so the pages call [`RouteNames::of`] and
//! never read name tables themselves. Until the store keeps names (`ModIDConfig` and
//! `CmdIDConfig`), no route has one and the pages show the numbers alone.

use lars_store::{Store, StoreError};
use lars_wire::RouteKey;

/// The names known when a page was made.
#[derive(Debug, Clone, Default)]
pub struct RouteNames {}

impl RouteNames {
    /// Loads the names from `store`.
    pub async fn load(_store: &Store) -> Result<RouteNames, StoreError> {
        Ok(RouteNames {})
    }

    /// The name of route `key` (its module's, and its command's when it has one), if any.
    pub fn of(&self, _key: RouteKey) -> Option<String> {
        None
    }
}
