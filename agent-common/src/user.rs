//! Userspace-only trait impls: lets aya put these layouts in maps and globals.
#![allow(unsafe_code)]

use crate::config::{KernelOffsets, Settings};

// SAFETY: plain-old-data, #[repr(C)], no padding (sizes asserted), every bit pattern valid.
unsafe impl aya::Pod for KernelOffsets {}
// SAFETY: as above.
unsafe impl aya::Pod for Settings {}
