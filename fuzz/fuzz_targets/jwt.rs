//! JWT decoding of any text (tokens come from headers, queries, cookies and paths).
#![no_main]
use libfuzzer_sys::fuzz_target;
use sightline::credentials::{fingerprint::Fingerprinter, jwt};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let fingerprints = Fingerprinter::with_key([7; 32]);
    let _ = jwt::looks_like_jwt(&text);
    if let Some(summary) = jwt::decode(&text, &fingerprints) {
        let _ = summary.unsigned();
        let _ = summary.expired_at(1_800_000_000, 60);
    }
});
