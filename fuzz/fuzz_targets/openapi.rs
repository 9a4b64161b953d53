//! OpenAPI and Swagger documents, JSON or YAML, as teams publish them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sightline::inventory::spec;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.yaml");
    if let Ok(document) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = spec::from_document(&document, path);
    }
    if let Ok(document) = serde_yaml_ng::from_slice::<serde_json::Value>(data) {
        let _ = spec::from_document(&document, path);
    }
});
