//! Which store a command means when its command line names none: the one rule the `lars` CLI,
//! the console and the launcher (`run_lars`, through `lars store --url`) share, so that the
//! services an operator starts and the commands they type next agree without flags.
//!
//! The rule ([`StoreChoice::resolve`]): `--store URL` if given, else the environment variable
//! [`STORE_ENV`] (`LARS_STORE`), else the default SQLite file of this user,
//! `$XDG_STATE_HOME/lars/lars.db` or `~/.local/state/lars/lars.db` ([`default_store_path`]), the
//! same whatever the working directory. Only when neither variable gives an absolute directory
//! is it `lars.db` in the working directory, as before this rule existed. Reads the environment;
//! touches no file (the launcher and `lars init` make the default's directory).

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::{StoreError, StoreUrl};

/// The environment variable naming the store when `--store` is not given.
pub const STORE_ENV: &str = "LARS_STORE";

/// Where a [`StoreChoice`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreSource {
    /// The `--store` option.
    Flag,
    /// The [`STORE_ENV`] environment variable.
    Env,
    /// Neither was given: [`default_store_path`].
    Default,
}

impl fmt::Display for StoreSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreSource::Flag => "--store",
            StoreSource::Env => STORE_ENV,
            StoreSource::Default => "the default",
        })
    }
}

/// The store a command uses, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreChoice {
    /// The store.
    pub url: StoreUrl,
    /// Where it came from.
    pub source: StoreSource,
}

impl StoreChoice {
    /// The store of `flag` (the `--store` value, if given), else of [`STORE_ENV`], else the
    /// default file. A bad URL is [`StoreError::BadSetting`] naming where it came from.
    pub fn resolve(flag: Option<&str>) -> Result<StoreChoice, StoreError> {
        StoreChoice::resolve_from(flag, &|name| std::env::var_os(name))
    }

    /// [`StoreChoice::resolve`] with the environment read through `env`.
    pub fn resolve_from(
        flag: Option<&str>,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<StoreChoice, StoreError> {
        let given = match flag {
            Some(url) => Some((url.to_string(), StoreSource::Flag)),
            None => match env(STORE_ENV) {
                Some(url) if !url.is_empty() => {
                    Some((url.to_string_lossy().into_owned(), StoreSource::Env))
                }
                _ => None,
            },
        };
        let Some((url, source)) = given else {
            return Ok(StoreChoice {
                url: StoreUrl::Sqlite(default_store_path_from(env)),
                source: StoreSource::Default,
            });
        };
        match url.parse() {
            Ok(url) => Ok(StoreChoice { url, source }),
            Err(e) => Err(StoreError::BadSetting {
                setting: match source {
                    StoreSource::Flag => "--store",
                    _ => STORE_ENV,
                },
                source: Box::new(e),
            }),
        }
    }

    /// The SQLite file's directory when the choice is the default file, which the launcher and
    /// `lars init` make if missing; `None` for a store someone named.
    pub fn default_dir(&self) -> Option<&Path> {
        match (&self.url, self.source) {
            (StoreUrl::Sqlite(path), StoreSource::Default) => path.parent(),
            _ => None,
        }
    }
}

/// The default store file: `$XDG_STATE_HOME/lars/lars.db`, else `$HOME/.local/state/lars/lars.db`
/// (each only when absolute, as the XDG rules ask), else `lars.db` in the working directory.
pub fn default_store_path() -> PathBuf {
    default_store_path_from(&|name| std::env::var_os(name))
}

fn default_store_path_from(env: &dyn Fn(&str) -> Option<OsString>) -> PathBuf {
    let absolute = |name: &str| env(name).map(PathBuf::from).filter(|p| p.is_absolute());
    let state = absolute("XDG_STATE_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".local").join("state")));
    match state {
        Some(state) => state.join("lars").join("lars.db"),
        None => PathBuf::from("lars.db"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn the_flag_wins_over_the_environment_and_the_environment_over_the_default() {
        let vars = [("LARS_STORE", "sqlite:///env.db"), ("HOME", "/home/op")];
        let flag = StoreChoice::resolve_from(Some("sqlite:///flag.db"), &env(&vars)).unwrap();
        assert_eq!(flag.url, StoreUrl::Sqlite("/flag.db".into()));
        assert_eq!(flag.source, StoreSource::Flag);
        assert_eq!(flag.default_dir(), None);
        let from_env = StoreChoice::resolve_from(None, &env(&vars)).unwrap();
        assert_eq!(from_env.url, StoreUrl::Sqlite("/env.db".into()));
        assert_eq!(from_env.source, StoreSource::Env);
        let default = StoreChoice::resolve_from(None, &env(&vars[1..])).unwrap();
        assert_eq!(
            default.url,
            StoreUrl::Sqlite("/home/op/.local/state/lars/lars.db".into())
        );
        assert_eq!(default.source, StoreSource::Default);
        assert_eq!(
            default.default_dir(),
            Some(Path::new("/home/op/.local/state/lars"))
        );
    }

    #[test]
    fn the_default_follows_xdg_state_home_and_needs_an_absolute_directory() {
        let path = |vars: &[(&str, &str)]| default_store_path_from(&env(vars));
        assert_eq!(
            path(&[("XDG_STATE_HOME", "/state"), ("HOME", "/home/op")]),
            PathBuf::from("/state/lars/lars.db")
        );
        assert_eq!(
            path(&[("XDG_STATE_HOME", "relative"), ("HOME", "/home/op")]),
            PathBuf::from("/home/op/.local/state/lars/lars.db")
        );
        assert_eq!(path(&[("HOME", "")]), PathBuf::from("lars.db"));
        assert_eq!(path(&[]), PathBuf::from("lars.db"));
    }

    #[test]
    fn an_empty_variable_counts_as_unset_and_a_bad_url_names_its_setting() {
        let vars = [("LARS_STORE", ""), ("HOME", "/h")];
        let choice = StoreChoice::resolve_from(None, &env(&vars)).unwrap();
        assert_eq!(choice.source, StoreSource::Default);

        let bad = [("LARS_STORE", "postgres://x")];
        let err = StoreChoice::resolve_from(None, &env(&bad)).unwrap_err();
        assert!(err.to_string().starts_with("LARS_STORE "), "{err}");
        let err = StoreChoice::resolve_from(Some("nonsense"), &env(&[])).unwrap_err();
        assert!(err.to_string().starts_with("--store "), "{err}");
    }
}
