//! The life of a service process, the same for every Lars service so operators meet one
//! behaviour: settings from `--config FILE` or the built-in defaults, with `--store URL` over
//! either, all checked before anything starts; logs on stderr; a tokio runtime with
//! `[reactor] threadNum` workers; the service bound and served until SIGINT/SIGTERM. Each
//! service's thin `main` parses its command line and hands the rest to [`serve`]; this module
//! owns no service logic and never exits the process itself.

use crate::config::{ConfigError, ServiceConfig};
use crate::{logging, signals};
use std::future::Future;
use std::path::Path;
use tokio::sync::watch;
use tracing::info;

/// Where the settings came from when there is no config file.
const BUILT_IN_DEFAULTS: &str = "built-in defaults";

/// Where the store URL came from when it was given on the command line.
const STORE_OPTION: &str = "--store";

/// Why a service process could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The settings cannot be used; the error names the file or option, the key and the reason.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The tokio runtime could not be built.
    #[error("starting the tokio runtime")]
    Runtime(#[source] std::io::Error),
}

/// The checked settings a service runs with.
#[derive(Debug)]
pub struct Settings<C: ServiceConfig> {
    /// The whole config, `--store` applied.
    pub config: C,
    /// The parsed store URL.
    pub store: C::StoreUrl,
    /// Where the config came from: the file, or "built-in defaults".
    pub origin: String,
}

impl<C: ServiceConfig> Settings<C> {
    /// Loads `config_file` (or takes the built-in defaults) and puts `store_url` over its
    /// `[store] url`. A bad URL is an error naming where it came from: the file, the defaults or
    /// `--store`.
    pub fn resolve(
        config_file: Option<&Path>,
        store_url: Option<String>,
    ) -> Result<Settings<C>, ConfigError> {
        let (mut config, origin) = match config_file {
            Some(path) => (C::load(path)?, path.display().to_string()),
            None => (C::default(), BUILT_IN_DEFAULTS.to_string()),
        };
        let url_origin = match store_url {
            Some(url) => {
                config.store_mut().url = url;
                STORE_OPTION
            }
            None => origin.as_str(),
        };
        let store = config.store_mut().parse(url_origin)?;
        Ok(Settings {
            config,
            store,
            origin,
        })
    }
}

/// Runs service `name` as this process: installs the stderr logs, resolves its [`Settings`],
/// builds the runtime and runs `run(config, store, shutdown)` on it, where `shutdown` turns true
/// on SIGINT/SIGTERM. Returns when `run` does.
pub fn serve<C, E, F, Fut>(
    name: &str,
    config_file: Option<&Path>,
    store_url: Option<String>,
    run: F,
) -> Result<(), E>
where
    C: ServiceConfig,
    E: From<StartError>,
    F: FnOnce(C, C::StoreUrl, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    logging::init();
    let settings = Settings::<C>::resolve(config_file, store_url).map_err(StartError::from)?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if settings.config.thread_num() > 0 {
        runtime.worker_threads(settings.config.thread_num());
    }
    let runtime = runtime.enable_all().build().map_err(StartError::Runtime)?;
    runtime.block_on(async move {
        let Settings {
            config,
            store,
            origin,
        } = settings;
        info!(store = %store, config = %origin, "{name} starting");
        run(config, store, signals::shutdown_on_signal()).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ReactorConfig, StoreConfig, at_least_one};
    use serde::Deserialize;

    /// A service with one setting of its own, storing at a port number.
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Toy {
        reactor: ReactorConfig<7000>,
        store: StoreConfig<u16>,
        toy: ToySection,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct ToySection {
        period_ms: u64,
    }

    impl Default for ToySection {
        fn default() -> Self {
            ToySection { period_ms: 10 }
        }
    }

    impl ServiceConfig for Toy {
        type StoreUrl = u16;

        fn validate(&self, origin: &str) -> Result<(), ConfigError> {
            self.reactor.validate(origin)?;
            at_least_one(origin, "toy.period_ms", self.toy.period_ms)?;
            self.store.parse(origin)?;
            Ok(())
        }

        fn store_mut(&mut self) -> &mut StoreConfig<u16> {
            &mut self.store
        }

        fn thread_num(&self) -> usize {
            self.reactor.thread_num
        }
    }

    fn file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("toy.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn without_a_file_the_built_in_defaults_run() {
        let settings = Settings::<Toy>::resolve(None, None).unwrap();
        assert_eq!(settings.origin, BUILT_IN_DEFAULTS);
        assert_eq!(settings.store, 0);
        assert_eq!(settings.config.toy.period_ms, 10);
    }

    #[test]
    fn a_file_is_loaded_and_checked_and_named_as_the_origin() {
        let (_dir, path) = file("[store]\nurl = \"5\"\n[toy]\nperiod_ms = 3\n");
        let settings = Settings::<Toy>::resolve(Some(&path), None).unwrap();
        assert_eq!((settings.store, settings.config.toy.period_ms), (5, 3));
        assert_eq!(settings.origin, path.display().to_string());

        for (text, key) in [
            ("[toy]\nperiod_ms = 0\n", "toy.period_ms"),
            ("[store]\nurl = \"x\"\n", "store.url"),
            ("[toy]\nperiod = 1\n", "period"),
        ] {
            let (_dir, path) = file(text);
            let err = Settings::<Toy>::resolve(Some(&path), None)
                .unwrap_err()
                .to_string();
            assert!(err.contains("toy.toml") && err.contains(key), "{err}");
        }
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = Settings::<Toy>::resolve(Some(Path::new("/nonexistent/toy.toml")), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/toy.toml"), "{err}");
    }

    #[test]
    fn the_store_option_goes_over_the_file_and_is_named_when_bad() {
        let (_dir, path) = file("[store]\nurl = \"5\"\n");
        let settings = Settings::<Toy>::resolve(Some(&path), Some("6".into())).unwrap();
        assert_eq!(settings.store, 6);
        assert_eq!(settings.config.store.url, "6");

        let err = Settings::<Toy>::resolve(Some(&path), Some("x".into()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(STORE_OPTION) && err.contains("store.url") && !err.contains("toy.toml"),
            "{err}"
        );
    }
}
