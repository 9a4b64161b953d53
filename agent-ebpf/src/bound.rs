//! Lengths handed to helpers, bounded in a form every verifier since 5.8 can follow.
//!
//! `if n > MAX { n = MAX }` is not enough before Linux 6.8: LLVM keeps `n` in a stack slot and
//! reloads it for the helper call, and older verifiers do not carry a bound learnt on one
//! reloaded copy back to the slot (6.8 started giving spilled scalars an id). Debian 12's 6.1
//! refused `tls_return` and `go_tls_write_enter` that way. A mask applied to a value the
//! optimiser cannot see through is kept, and its result is bounded in itself.

use agent_common::event::MAX_CAPTURE_BYTES;

/// Covers every length up to `MAX_CAPTURE_BYTES`; payload buffers hold twice that, so a
/// masked length always fits.
const LEN_MASK: u32 = (2 * MAX_CAPTURE_BYTES - 1) as u32;
const _: () = assert!(MAX_CAPTURE_BYTES.is_power_of_two());

/// `len` clamped to `MAX_CAPTURE_BYTES`, provably below `2 * MAX_CAPTURE_BYTES` to the
/// verifier whatever the compiler does with it.
#[inline(always)]
pub fn capture_len(len: u32) -> u32 {
    let clamped = if len > MAX_CAPTURE_BYTES as u32 {
        MAX_CAPTURE_BYTES as u32
    } else {
        len
    };
    // A volatile read: the compiler cannot tell the value is already clamped, so it keeps
    // the mask (which changes nothing at run time) right before the use.
    let opaque = unsafe { core::ptr::read_volatile(&clamped) };
    opaque & LEN_MASK
}
