//! Raw ring-buffer records (the layouts shared with the kernel programs).
#![no_main]
use libfuzzer_sys::fuzz_target;
use sightline::capture::decode;

fuzz_target!(|data: &[u8]| {
    let _ = decode::decode(data);
});
