//! HPACK header blocks, one after the other on one decoder (as a connection's direction).
#![no_main]
use libfuzzer_sys::fuzz_target;
use sightline::protocol::http2::hpack::{DEFAULT_TABLE_SIZE, HeaderDecoder};

fuzz_target!(|data: &[u8]| {
    let mut decoder = match data.first() {
        Some(b) if b & 1 == 1 => HeaderDecoder::joining(DEFAULT_TABLE_SIZE),
        _ => HeaderDecoder::new(),
    };
    // Blocks separated by 0xfe 0xfe.
    for block in data.split(|b| *b == 0xfe) {
        let _ = decoder.decode(block);
    }
});
