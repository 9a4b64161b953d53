//! Writing events into the ring buffer, with batched wakeups and counted drops.

use agent_common::event::{
    COMM_LEN, ConnEvent, DATA_EVENT_HEADER_LEN, DATA_FLAG_AFTER_LOSS, DataEvent, EventHeader,
    EventKind, KernelCounter, SockTuple,
};
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns,
    },
};

use crate::{
    bound::capture_len,
    config::settings,
    maps::{EVENTS, LOSS_SEEN, LOST, count},
};

/// Wake the reader only when enough data waits; otherwise its timed poll collects it. This
/// keeps wakeups (and the reader's CPU) proportional to volume, not to the number of events.
#[inline(always)]
pub fn wakeup_flags() -> u64 {
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    if waiting >= settings().wakeup_bytes as u64 {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Wake the reader now, whatever waits (for rare events the agent must act on at once).
pub const URGENT: u64 = BPF_RB_FORCE_WAKEUP as u64;

/// A header for an event about the current task.
#[inline(always)]
pub fn header(kind: EventKind, fd: i32, ts_ns: u64) -> EventHeader {
    let pid_tgid = bpf_get_current_pid_tgid();
    EventHeader {
        kind: kind as u32,
        tgid: (pid_tgid >> 32) as u32,
        pid: pid_tgid as u32,
        fd,
        ts_ns,
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        comm: bpf_get_current_comm().unwrap_or([0u8; COMM_LEN]),
    }
}

/// Emits a connect, accept or close event.
#[inline(always)]
pub fn conn_event(kind: EventKind, fd: i32, tuple: SockTuple) {
    let Some(mut entry) = EVENTS.reserve::<ConnEvent>(0) else {
        count(KernelCounter::RingbufFullControl);
        return;
    };
    entry.write(ConnEvent {
        header: header(kind, fd, unsafe { bpf_ktime_get_ns() }),
        tuple,
    });
    entry.submit(wakeup_flags());
}

/// Emits the data event assembled in `event`, with its first `captured` payload bytes.
#[inline(always)]
pub fn data_event(event: &mut DataEvent, captured: u32) {
    let captured = capture_len(captured) as usize;
    // Per socket: a hole is in the connection's stream, whichever descriptor reads it next.
    let key = event.tuple.socket;
    let after_loss = loss_seen() && unsafe { LOST.get(key) }.is_some();
    if after_loss {
        event.flags |= DATA_FLAG_AFTER_LOSS;
    }
    let bytes = unsafe {
        core::slice::from_raw_parts(
            event as *const DataEvent as *const u8,
            DATA_EVENT_HEADER_LEN + captured,
        )
    };
    match EVENTS.output::<[u8]>(bytes, wakeup_flags()) {
        Ok(()) => {
            count(KernelCounter::DataEvents);
            if after_loss {
                let _ = LOST.remove(key);
            }
        }
        Err(_) => {
            count(KernelCounter::RingbufFullData);
            let _ = LOST.insert(key, 1, 0);
            if let Some(seen) = LOSS_SEEN.get_ptr_mut(0) {
                unsafe { *seen = 1 };
            }
        }
    }
}

#[inline(always)]
fn loss_seen() -> bool {
    match LOSS_SEEN.get(0) {
        Some(seen) => *seen != 0,
        None => false,
    }
}
