//! Sightline's kernel programs.
//!
//! Syscall tracepoints see every TCP socket read and write of every process (plaintext capture);
//! sched tracepoints follow process lifecycles. Each hook is a thin wrapper around a
//! `try_<name>` function; all maps live in `maps.rs`; the settings userspace writes before
//! loading live in `config.rs`; the walk from a file descriptor to a socket lives in `sock.rs`.
#![no_std]
#![no_main]

mod bound;
mod config;
mod emit;
mod filter;
mod maps;
mod probes;
mod sock;
mod user;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach here, so it is never taken at run time.
    loop {}
}

/// Probe-read helpers are GPL-only; the code is dual licensed.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
