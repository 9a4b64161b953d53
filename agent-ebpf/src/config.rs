//! Read-only globals that userspace fills before loading (`EbpfLoader::override_global`).
//! Being in .rodata of a frozen map, the verifier treats their values as constants.

use agent_common::config::{KernelOffsets, Settings};

#[unsafe(no_mangle)]
static SIGHTLINE_SETTINGS: Settings = Settings {
    agent_tgid: 0,
    capture_bytes: agent_common::event::DEFAULT_CAPTURE_BYTES,
    filter_flags: 0,
    wakeup_bytes: 0,
    features: 0,
    _reserved: 0,
};

#[unsafe(no_mangle)]
static SIGHTLINE_OFFSETS: KernelOffsets = KernelOffsets {
    task_files: 0,
    files_fdt: 0,
    fdtable_max_fds: 0,
    fdtable_fd: 0,
    file_inode: 0,
    file_private_data: 0,
    inode_mode: 0,
    socket_type: 0,
    socket_sk: 0,
    sk_daddr: 0,
    sk_rcv_saddr: 0,
    sk_dport: 0,
    sk_num: 0,
    sk_family: 0,
    sk_v6_daddr: 0,
    sk_v6_rcv_saddr: 0,
    task_mm: 0,
    mm_arg_start: 0,
    mm_arg_end: 0,
    file_refs: 0,
    file_refs_kind: 0,
};

#[inline(always)]
pub fn settings() -> Settings {
    // Volatile: without it the compiler would fold the zero defaults in.
    unsafe { core::ptr::read_volatile(&SIGHTLINE_SETTINGS) }
}

#[inline(always)]
pub fn offsets() -> KernelOffsets {
    unsafe { core::ptr::read_volatile(&SIGHTLINE_OFFSETS) }
}
