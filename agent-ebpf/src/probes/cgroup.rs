//! cgroup creation (`cgroup:cgroup_mkdir`): the id and path of every cgroup made in the cgroup
//! v2 hierarchy, so userspace knows a cgroup before any process in it is seen, and can place a
//! process that is gone before /proc/PID/cgroup could be read (a short-lived container).

use agent_common::event::{CGROUP_PATH_LEN, CgroupEvent, EventKind, KernelCounter};
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_ktime_get_ns, generated::bpf_probe_read_kernel_str},
    macros::tracepoint,
    programs::TracePointContext,
};
use core::ffi::c_void;

use crate::{
    emit,
    maps::{EVENTS, count},
};

/// The hierarchy id of cgroup v2 (the default hierarchy is set up first, with id 0): the
/// hierarchy whose ids the events carry. The v1 hierarchies' cgroups are left out.
const CGROUP_V2_HIERARCHY: i32 = 0;

/// Field offsets of the tracepoint's record: `int root; int level; u64 id; __data_loc char[]
/// path`, the layout since Linux 5.5 (the agent needs 5.8 for ring buffers).
const ROOT_OFFSET: usize = 8;
const ID_OFFSET: usize = 16;
const PATH_OFFSET: usize = 24;

#[tracepoint]
pub fn cgroup_mkdir(ctx: TracePointContext) -> u32 {
    let _ = try_cgroup_mkdir(&ctx);
    0
}

fn try_cgroup_mkdir(ctx: &TracePointContext) -> Result<(), i64> {
    let root: i32 = unsafe { ctx.read_at(ROOT_OFFSET) }.map_err(|e| e as i64)?;
    if root != CGROUP_V2_HIERARCHY {
        return Ok(());
    }
    let id: u64 = unsafe { ctx.read_at(ID_OFFSET) }.map_err(|e| e as i64)?;
    let loc: u32 = unsafe { ctx.read_at(PATH_OFFSET) }.map_err(|e| e as i64)?;
    let offset = (loc & 0xffff) as usize;
    let Some(mut entry) = EVENTS.reserve::<CgroupEvent>(0) else {
        count(KernelCounter::RingbufFullControl);
        return Ok(());
    };
    let event = entry.as_mut_ptr();
    unsafe {
        (*event).header = emit::header(EventKind::CgroupCreated, -1, bpf_ktime_get_ns());
        (*event).id = id;
        (*event)._pad = 0;
        let dst = (*event).path.as_mut_ptr() as *mut c_void;
        let src = (ctx.as_ptr() as *const u8).add(offset) as *const c_void;
        let copied = bpf_probe_read_kernel_str(dst, CGROUP_PATH_LEN as u32, src);
        // The length without the NUL; a path that filled the buffer may have been cut.
        (*event).path_len = if copied <= 0 || copied as usize >= CGROUP_PATH_LEN {
            CGROUP_PATH_LEN as u32
        } else {
            (copied - 1) as u32
        };
    }
    entry.submit(emit::wakeup_flags());
    Ok(())
}
