//! Userspace-only trait impls: lets aya put these layouts in maps and globals, and lets the
//! ring-buffer decoder read the event layouts out of raw records (`aya::Pod`: every bit
//! pattern is a valid value, so reading one from any bytes of the right length is sound).
#![allow(unsafe_code)]

use crate::{
    config::{KernelOffsets, Settings},
    event::{CgroupEvent, ConnEvent, EventHeader, ExecEvent, SockTuple},
};

// SAFETY: plain-old-data, #[repr(C)], no padding (sizes asserted), every bit pattern valid.
unsafe impl aya::Pod for KernelOffsets {}
// SAFETY: as above.
unsafe impl aya::Pod for Settings {}
// SAFETY: as above: integers and byte arrays only, sizes asserted in event.rs.
unsafe impl aya::Pod for EventHeader {}
// SAFETY: as above.
unsafe impl aya::Pod for SockTuple {}
// SAFETY: as above.
unsafe impl aya::Pod for ConnEvent {}
// SAFETY: as above.
unsafe impl aya::Pod for ExecEvent {}
// SAFETY: as above.
unsafe impl aya::Pod for CgroupEvent {}
