//! Which processes, cgroups and ports are captured. The agent's own process never is.

use agent_common::{
    config::{
        FILTER_CGROUPS_ANY, FILTER_CGROUPS_INCLUDE_ONLY, FILTER_EXCLUDE, FILTER_INCLUDE,
        FILTER_PIDS_ANY, FILTER_PIDS_INCLUDE_ONLY, FILTER_PORTS_ANY, FILTER_PORTS_INCLUDE_ONLY,
        Settings,
    },
    event::SockTuple,
};
use aya_ebpf::helpers::bpf_get_current_cgroup_id;

use crate::maps::{CGROUP_FILTER, PID_FILTER, PORT_FILTER};

/// Whether the current task's syscalls are captured at all.
#[inline(always)]
pub fn task_allowed(tgid: u32, settings: &Settings) -> bool {
    if tgid == settings.agent_tgid {
        return false;
    }
    let flags = settings.filter_flags;
    if flags & FILTER_PIDS_ANY != 0 {
        let verdict = lookup(unsafe { PID_FILTER.get(tgid) });
        if !passes(verdict, flags & FILTER_PIDS_INCLUDE_ONLY != 0) {
            return false;
        }
    }
    if flags & FILTER_CGROUPS_ANY != 0 {
        let cgroup = unsafe { bpf_get_current_cgroup_id() };
        let verdict = lookup(unsafe { CGROUP_FILTER.get(cgroup) });
        if !passes(verdict, flags & FILTER_CGROUPS_INCLUDE_ONLY != 0) {
            return false;
        }
    }
    true
}

/// Whether a connection is captured, by its local and remote ports.
#[inline(always)]
pub fn ports_allowed(tuple: &SockTuple, settings: &Settings) -> bool {
    let flags = settings.filter_flags;
    if flags & FILTER_PORTS_ANY == 0 {
        return true;
    }
    let local = lookup(unsafe { PORT_FILTER.get(tuple.local_port) });
    let remote = lookup(unsafe { PORT_FILTER.get(tuple.remote_port) });
    if local == FILTER_EXCLUDE || remote == FILTER_EXCLUDE {
        return false;
    }
    if flags & FILTER_PORTS_INCLUDE_ONLY != 0 {
        return local == FILTER_INCLUDE || remote == FILTER_INCLUDE;
    }
    true
}

/// A filter map's verdict, 0 when absent. A plain integer rather than an `Option`: LLVM may
/// copy an `Option`'s undefined payload, which the verifier rejects as reading an unset register.
#[inline(always)]
fn lookup(value: Option<&u8>) -> u8 {
    match value {
        Some(v) => *v,
        None => 0,
    }
}

#[inline(always)]
fn passes(verdict: u8, include_only: bool) -> bool {
    match verdict {
        FILTER_EXCLUDE => false,
        FILTER_INCLUDE => true,
        _ => !include_only,
    }
}
