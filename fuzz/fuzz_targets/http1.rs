//! HTTP/1: bytes cut into syscalls of either direction, with capture holes, then a close.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sightline::protocol::http1::{Http1Connection, Limits};

fuzz_target!(|data: &[u8]| {
    let mut conn = Http1Connection::new(Limits::default());
    let (mut out, mut issues) = (Vec::new(), Vec::new());
    // Each piece: a control byte (direction, hole, length) then that many bytes.
    let mut rest = data;
    let mut ts = 0;
    while let Some((&control, tail)) = rest.split_first() {
        let len = (control as usize & 0x3f).min(tail.len());
        let (piece, next) = tail.split_at(len);
        let missing = if control & 0x40 != 0 { 100 } else { 0 };
        ts += 1;
        if control & 0x80 == 0 {
            conn.on_request_bytes(piece, missing, ts, &mut issues);
        } else {
            conn.on_response_bytes(piece, missing, ts, &mut out, &mut issues);
        }
        rest = next;
    }
    conn.on_close(ts + 1, &mut out, &mut issues);
});
