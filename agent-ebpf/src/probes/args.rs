//! Reading syscall tracepoint records. Their layout is fixed by the kernel's syscall tracepoint
//! class: an 8-byte common header, the syscall number padded to 8 bytes, then each argument as
//! 8 bytes (enter) or the return value (exit).

use aya_ebpf::{EbpfContext, programs::TracePointContext};

/// The `n`th syscall argument of a `sys_enter_*` record.
#[inline(always)]
pub fn arg(ctx: &TracePointContext, n: usize) -> u64 {
    unsafe { *(ctx.as_ptr() as *const u64).add(2 + n) }
}

/// The return value of a `sys_exit_*` record.
#[inline(always)]
pub fn ret(ctx: &TracePointContext) -> i64 {
    unsafe { *(ctx.as_ptr() as *const i64).add(2) }
}
