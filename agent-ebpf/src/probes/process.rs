//! Process lifecycle from sched tracepoints: exec names a process (its path and arguments)
//! even when it is gone before userspace could read /proc; exit lets userspace forget it.

use agent_common::event::{EXEC_ARGS_LEN, EventHeader, EventKind, ExecEvent, KernelCounter};
use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns,
        generated::{bpf_probe_read_kernel_str, bpf_probe_read_user},
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use core::ffi::c_void;

use crate::{
    config::{offsets, settings},
    emit,
    maps::{EVENTS, LAST_SOCKET_READ, PENDING, TLS_CALLS, count},
    user::kernel_at,
};

/// sched_process_exec: `__data_loc char[] filename` at offset 8.
#[tracepoint]
pub fn sched_exec(ctx: TracePointContext) -> u32 {
    let _ = try_sched_exec(&ctx);
    0
}

/// (arg_start, arg_end) of the current task's mm.
#[inline(always)]
fn arguments() -> Result<(u64, u64), i64> {
    let off = offsets();
    let task = unsafe { bpf_get_current_task() };
    let mm: u64 = kernel_at(task, off.task_mm)?;
    if mm == 0 {
        return Err(0);
    }
    Ok((
        kernel_at(mm, off.mm_arg_start)?,
        kernel_at(mm, off.mm_arg_end)?,
    ))
}

fn try_sched_exec(ctx: &TracePointContext) -> Result<(), i64> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if tgid == settings().agent_tgid {
        return Ok(());
    }
    let loc: u32 = unsafe { ctx.read_at(8) }.map_err(|e| e as i64)?;
    let offset = (loc & 0xffff) as usize;
    let Some(mut entry) = EVENTS.reserve::<ExecEvent>(0) else {
        count(KernelCounter::RingbufFullControl);
        return Ok(());
    };
    let event = entry.as_mut_ptr();
    unsafe {
        (*event).header = emit::header(EventKind::Exec, -1, bpf_ktime_get_ns());
        let dst = (*event).filename.as_mut_ptr() as *mut c_void;
        let src = (ctx.as_ptr() as *const u8).add(offset) as *const c_void;
        if bpf_probe_read_kernel_str(dst, (*event).filename.len() as u32, src) < 0 {
            (*event).filename[0] = 0;
        }
        (*event).args_len = 0;
        (*event).args_total = 0;
        // The new program's arguments, from its mm (set up before this tracepoint fires).
        if let Ok((start, end)) = arguments() {
            let total = end.saturating_sub(start);
            let n = if total > EXEC_ARGS_LEN as u64 {
                EXEC_ARGS_LEN as u32
            } else {
                total as u32
            };
            let dst = (*event).args.as_mut_ptr() as *mut c_void;
            if n > 0
                && n <= EXEC_ARGS_LEN as u32
                && bpf_probe_read_user(dst, n, start as *const c_void) == 0
            {
                (*event).args_len = n;
                (*event).args_total = total.min(u32::MAX as u64) as u32;
            }
        }
    }
    // Not batched: the TLS attach thread must see a new program at once, or a short-lived
    // one (a CLI, a job) is gone before its binary is inspected. Execs are rare next to data.
    entry.submit(emit::URGENT);
    Ok(())
}

/// sched_process_exit fires for every exiting thread: forget its pending syscall; report the
/// process once, when its main thread exits.
#[tracepoint]
pub fn sched_exit(ctx: TracePointContext) -> u32 {
    let _ = try_sched_exit(&ctx);
    0
}

fn try_sched_exit(_ctx: &TracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let _ = PENDING.remove(pid_tgid);
    let _ = TLS_CALLS.remove(pid_tgid);
    let _ = LAST_SOCKET_READ.remove(pid_tgid);
    let tgid = (pid_tgid >> 32) as u32;
    if tgid != pid_tgid as u32 || tgid == settings().agent_tgid {
        return Ok(());
    }
    let Some(mut entry) = EVENTS.reserve::<EventHeader>(0) else {
        count(KernelCounter::RingbufFullControl);
        return Ok(());
    };
    entry.write(emit::header(EventKind::Exit, -1, unsafe {
        bpf_ktime_get_ns()
    }));
    entry.submit(emit::wakeup_flags());
    Ok(())
}
