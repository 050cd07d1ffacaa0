//! Checks of a service's config type that hold for every service: the file shipped in `conf/`
//! is exactly the built-in defaults, a missing file is named, and config text parses and checks
//! the way a file would. Used by each service's unit tests of its config.

use crate::config::ServiceConfig;
use std::fmt::Debug;
use std::path::Path;

/// Parses `text` as config `C` and checks it as if it came from `origin`; an error as its
/// message.
pub fn parse_config<C: ServiceConfig>(text: &str, origin: &str) -> Result<C, String> {
    let config: C = toml::from_str(text).map_err(|e| e.to_string())?;
    config.validate(origin).map_err(|e| e.to_string())?;
    Ok(config)
}

/// Checks that `conf/FILE_NAME` of the workspace loads as `C` and equals `C::default()`, so that
/// running without `--config` is running with the shipped file. `manifest_dir` is the asking
/// crate's `CARGO_MANIFEST_DIR`.
pub fn assert_shipped_config_is_the_defaults<C: ServiceConfig + Debug>(
    manifest_dir: &str,
    file_name: &str,
) {
    let path = Path::new(manifest_dir).join("../conf").join(file_name);
    let shipped = C::load(&path).unwrap_or_else(|e| panic!("conf/{file_name} loads: {e}"));
    assert_eq!(format!("{shipped:?}"), format!("{:?}", C::default()));
}

/// Checks that loading a config file that does not exist fails naming the file.
pub fn assert_missing_config_is_named<C: ServiceConfig>(file_name: &str) {
    let path = Path::new("/nonexistent").join(file_name);
    match C::load(&path) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => assert!(e.to_string().contains(&path.display().to_string()), "{e}"),
    }
}
