//! The names operators gave modules and commands (`ModIDConfig`, `CmdIDConfig`, set with
//! `lars route name`), as the pages show them next to the numbers.
//!
//! Owns the one place the console asks for names, so the pages call [`RouteNames::of`] and
//! never read the name tables themselves. A database without those tables has no names.

use lars_store::{Names, Store, StoreError};
use lars_wire::RouteKey;

/// The names known when a page was made.
#[derive(Debug, Default)]
pub struct RouteNames {
    names: Names,
}

impl RouteNames {
    /// Loads the names from `store`.
    pub async fn load(store: &Store) -> Result<RouteNames, StoreError> {
        Ok(RouteNames {
            names: store.load_names().await?,
        })
    }

    /// The name of route `key` (`module/command`, a side without a name shown by its number),
    /// if its module or command has one.
    pub fn of(&self, key: RouteKey) -> Option<String> {
        self.names.label(key)
    }
}
