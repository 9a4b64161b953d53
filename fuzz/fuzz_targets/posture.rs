//! What the posture features read from traffic and config: object ids scanned from response
//! bodies, the field paths of a body's schema (change tracking), address blocks
//! (`trusted_proxies`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use sightline::{
    findings::rules::object_access::scan_ids,
    inventory::{reach::Cidr, schema},
};

fuzz_target!(|data: &[u8]| {
    let mut ids = 0usize;
    scan_ids(data, |key, id| {
        assert!(!key.is_empty() && !id.is_empty() && id.len() <= 128);
        ids += 1;
    });
    assert!(ids <= 256);
    if let Some(body) = schema::of_body(data) {
        let paths = schema::field_paths(&body);
        assert!(paths.len() <= 128);
    }
    if let Ok(block) = Cidr::parse(&String::from_utf8_lossy(data)) {
        let _ = block.contains(std::net::IpAddr::from([10, 0, 0, 1]));
    }
});
