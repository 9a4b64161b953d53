//! Reads of user and kernel memory, wrapped so the rest of the code stays free of raw helpers.

use aya_ebpf::helpers::{bpf_probe_read_kernel, bpf_probe_read_user};

/// Reads a `T` from kernel memory at `base + offset`.
#[inline(always)]
pub fn kernel_at<T>(base: u64, offset: u32) -> Result<T, i64> {
    unsafe { bpf_probe_read_kernel((base + offset as u64) as *const T) }.map_err(|e| e as i64)
}

/// Reads a `T` from the current process's memory.
#[inline(always)]
pub fn user_at<T>(addr: u64) -> Result<T, i64> {
    unsafe { bpf_probe_read_user(addr as *const T) }.map_err(|e| e as i64)
}
