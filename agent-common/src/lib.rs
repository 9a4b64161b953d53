//! Layouts shared by Sightline's kernel programs (`agent-ebpf`) and its userspace agent.
//!
//! Everything here is `#[repr(C)]` with explicit padding and a compile-time size check, because
//! both sides read the same bytes: the kernel writes them into the ring buffer and into maps,
//! userspace decodes them (only in `agent/src/capture`). Event kinds and counter indexes are
//! explicit numbers that are never reused, so an old userspace never misreads a new kernel side.
#![no_std]

pub mod config;
pub mod event;

#[cfg(feature = "user")]
mod user;

/// Asserts at compile time that a shared layout has exactly the expected size (no implicit
/// padding sneaked in, no field forgotten on one side).
#[macro_export]
macro_rules! assert_size {
    ($t:ty, $size:expr) => {
        const _: () = assert!(core::mem::size_of::<$t>() == $size);
    };
}
