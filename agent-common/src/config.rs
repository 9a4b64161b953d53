//! Settings that userspace writes into the kernel programs' read-only globals before loading,
//! so the verifier sees them as constants.

use crate::assert_size;

/// Byte offsets of the kernel struct fields the probes follow from the current task to a
/// socket's addresses. Userspace reads them from the running kernel's BTF
/// (/sys/kernel/btf/vmlinux), which keeps the probes independent of the kernel version without
/// CO-RE relocations (Rust eBPF has none).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdtable_max_fds: u32,
    pub fdtable_fd: u32,
    pub file_inode: u32,
    pub file_private_data: u32,
    pub inode_mode: u32,
    pub socket_type: u32,
    pub socket_sk: u32,
    pub sk_daddr: u32,
    pub sk_rcv_saddr: u32,
    pub sk_dport: u32,
    pub sk_num: u32,
    pub sk_family: u32,
    pub sk_v6_daddr: u32,
    pub sk_v6_rcv_saddr: u32,
    /// task_struct.mm, mm_struct.arg_start and arg_end: a new program's arguments at exec.
    pub task_mm: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    /// The reference count of a `struct file`: `f_count` (an `atomic_long_t` holding the
    /// count) before Linux 6.13, `f_ref` (a `file_ref_t` holding the count minus one) since.
    /// A close that drops the last reference ends the connection; any other only a descriptor.
    pub file_refs: u32,
    /// A `FILE_REFS_*` value: how `file_refs` counts.
    pub file_refs_kind: u32,
}
assert_size!(KernelOffsets, 84);

/// [`KernelOffsets::file_refs_kind`]: the field holds the number of references (`f_count`).
pub const FILE_REFS_COUNT: u32 = 0;
/// [`KernelOffsets::file_refs_kind`]: the field holds the number of references minus one
/// (`f_ref`, Linux 6.13+: 0 is one reference).
pub const FILE_REFS_COUNT_MINUS_ONE: u32 = 1;

/// `Settings::filter_flags` bit: only processes listed with [`FILTER_INCLUDE`] are captured.
pub const FILTER_PIDS_INCLUDE_ONLY: u32 = 1;
/// Some process ids are listed (include or exclude): the pid map must be consulted.
pub const FILTER_PIDS_ANY: u32 = 2;
pub const FILTER_CGROUPS_INCLUDE_ONLY: u32 = 4;
pub const FILTER_CGROUPS_ANY: u32 = 8;
pub const FILTER_PORTS_INCLUDE_ONLY: u32 = 16;
pub const FILTER_PORTS_ANY: u32 = 32;

/// Value in a filter map: capture this pid, cgroup or port.
pub const FILTER_INCLUDE: u8 = 1;
/// Value in a filter map: never capture this pid, cgroup or port.
pub const FILTER_EXCLUDE: u8 = 2;

/// Run-time settings of the kernel programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// The agent's own process id: its traffic (exports) is never captured.
    pub agent_tgid: u32,
    /// Payload bytes copied per syscall (at most `MAX_CAPTURE_BYTES`).
    pub capture_bytes: u32,
    /// `FILTER_*` bits.
    pub filter_flags: u32,
    /// Unread bytes in the ring buffer above which a write wakes the reader; below, the reader
    /// finds the data on its next timed poll (batched wakeups).
    pub wakeup_bytes: u32,
    /// `FEATURE_*` bits: what the running kernel offers beyond the minimum.
    pub features: u32,
    pub _reserved: u32,
}
assert_size!(Settings, 24);

/// `Settings::features` bit: the kernel has the `bpf_loop` helper (5.17+), so iovecs are
/// copied in a loop the verifier checks once (without it, the first 16 only).
pub const FEATURE_BPF_LOOP: u32 = 1;
