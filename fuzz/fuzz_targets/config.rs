//! The agent's config file, TOML or YAML.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sightline::config::file::FileConfig;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = FileConfig::from_toml(&text);
    let _ = FileConfig::from_yaml(&text);
});
