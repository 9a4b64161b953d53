//! Empty programs: the benchmark's floor (`cargo xtask bench`). The agent's hidden
//! `--bench-empty-programs` attaches these at every tracepoint and uprobe its real programs
//! use, so the cost of the hooks themselves (the kernel's tracepoint and uprobe machinery) is
//! measured apart from what Sightline's programs do in them. Never loaded otherwise.

use aya_ebpf::{
    macros::{tracepoint, uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext, TracePointContext},
};

#[tracepoint]
pub fn empty_tracepoint(_ctx: TracePointContext) -> u32 {
    0
}

#[uprobe]
pub fn empty_uprobe(_ctx: ProbeContext) -> u32 {
    0
}

#[uretprobe]
pub fn empty_uretprobe(_ctx: RetProbeContext) -> u32 {
    0
}
