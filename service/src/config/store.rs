//! The `[store]` section every Lars service has: the URL of the store it reads or writes, kept as
//! text until the service asks for it parsed, so an override (`--store`) can replace it first and
//! a bad URL is an error naming where it came from. Generic over the URL type, which the store
//! crate owns; never opens anything.

use super::ConfigError;
use serde::Deserialize;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

/// Where a service's data is (`[store]`): a URL that parses into `U`. The built-in URL is what
/// `U::default()` prints, so `U`'s default must print as a URL that parses back to it.
#[derive(Clone, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    bound(deserialize = "U: Default + fmt::Display")
)]
pub struct StoreConfig<U> {
    /// `mysql://user:pass@host:port/db` or `sqlite://PATH`.
    pub url: String,
    #[serde(skip)]
    parses_into: PhantomData<fn() -> U>,
}

impl<U> StoreConfig<U> {
    /// A section naming `url`.
    pub fn new(url: impl Into<String>) -> StoreConfig<U> {
        StoreConfig {
            url: url.into(),
            parses_into: PhantomData,
        }
    }
}

impl<U: FromStr<Err: fmt::Display>> StoreConfig<U> {
    /// The parsed URL; an error names `origin` (where the URL came from) and `store.url`.
    pub fn parse(&self, origin: &str) -> Result<U, ConfigError> {
        self.url
            .parse()
            .map_err(|e: U::Err| ConfigError::invalid(origin, "store.url", e.to_string()))
    }
}

impl<U: Default + fmt::Display> Default for StoreConfig<U> {
    fn default() -> Self {
        StoreConfig::new(U::default().to_string())
    }
}

/// Shows the URL as `U` prints it, which for the store's URL type hides the password, so a
/// config logged or printed with `{:?}` never shows one. A URL that does not parse is not shown
/// at all: where its password would be cannot be told.
impl<U: FromStr + fmt::Display> fmt::Debug for StoreConfig<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = match self.url.parse::<U>() {
            Ok(url) => url.to_string(),
            Err(_) => "(a URL that does not parse; not shown, it may hold a password)".to_string(),
        };
        f.debug_struct("StoreConfig").field("url", &shown).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in URL type: a port number.
    type Store = StoreConfig<u16>;

    /// A URL type that prints itself without its secret, as the store's does.
    #[derive(Debug, Default)]
    struct Secretive;

    impl FromStr for Secretive {
        type Err = String;
        fn from_str(s: &str) -> Result<Secretive, String> {
            s.starts_with("db://")
                .then_some(Secretive)
                .ok_or_else(|| "no".to_string())
        }
    }

    impl fmt::Display for Secretive {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("db://user:***@host")
        }
    }

    #[test]
    fn debug_output_shows_the_url_as_its_type_prints_it_never_as_written() {
        let config = StoreConfig::<Secretive>::new("db://user:hunter2@host");
        let shown = format!("{config:?}");
        assert!(shown.contains("db://user:***@host"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let bad = format!(
            "{:?}",
            StoreConfig::<Secretive>::new("x://user:hunter2@host")
        );
        assert!(
            !bad.contains("hunter2") && bad.contains("does not parse"),
            "{bad}"
        );
    }

    #[test]
    fn the_built_in_url_is_what_the_default_url_prints() {
        let store = Store::default();
        assert_eq!(store.url, "0");
        assert_eq!(store.parse("built-in defaults").unwrap(), 0);
        let empty: Store = toml::from_str("").unwrap();
        assert_eq!(empty.url, "0");
    }

    #[test]
    fn a_url_that_does_not_parse_is_refused_naming_origin_and_key() {
        let err = Store::new("x").parse("--store").unwrap_err().to_string();
        assert!(
            err.contains("--store") && err.contains("store.url"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = toml::from_str::<Store>("uri = \"1\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("uri"), "{err}");
    }
}
