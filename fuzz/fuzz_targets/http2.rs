//! HTTP/2 with HPACK: bytes cut into syscalls of either direction, with capture holes and
//! losses, on a connection seen from its start or joined mid-way, then a close.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sightline::{
    protocol::{
        http1::Limits,
        http2::{Http2Connection, Start},
    },
    stats::Stats,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let start = if mode & 1 == 0 {
        Start::Beginning
    } else {
        Start::Joined
    };
    let client_egress = match mode & 6 {
        0 => None,
        2 => Some(true),
        _ => Some(false),
    };
    let mut conn = Http2Connection::new(client_egress, start, Limits::default());
    let stats = Stats::default();
    let mut out = Vec::new();
    let mut ts = 0;
    while let Some((&control, tail)) = rest.split_first() {
        let len = (control as usize & 0x3f).min(tail.len());
        let (piece, next) = tail.split_at(len);
        let egress = control & 0x80 != 0;
        ts += 1;
        if control & 0x40 != 0 && len % 2 == 0 {
            conn.on_loss(egress);
        }
        let missing = if control & 0x40 != 0 { len * 97 } else { 0 };
        conn.on_bytes(egress, piece, missing, ts, &stats, &mut out);
        rest = next;
    }
    conn.on_close(ts + 1, &mut out);
});
