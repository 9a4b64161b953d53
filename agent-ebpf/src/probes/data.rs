//! Data syscalls on TCP sockets: at enter, check the descriptor and remember where the buffer is;
//! at exit, copy a bounded prefix of what was really moved and emit it.

use agent_common::config::FEATURE_BPF_LOOP;
use agent_common::event::{
    DATA_FLAG_NO_PAYLOAD, DataEvent, DataOp, Direction, EventKind, KernelCounter,
    MAX_CAPTURE_BYTES, SockTuple,
};
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
        generated::{bpf_loop, bpf_probe_read_user},
    },
    programs::TracePointContext,
};
use core::ffi::c_void;

use super::{
    args::{arg, ret},
    tls,
};
use crate::{
    bound::capture_len,
    config::settings,
    emit, filter,
    maps::{
        BUF_IOVEC, BUF_NONE, BUF_PLAIN, LAST_SOCKET_READ, PENDING, PendingCall, SCRATCH, count,
    },
    sock::{tcp_socket, tcp_socket_at},
    user::user_at,
};

/// Where the syscall's bytes are, as its arguments describe them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Buffer {
    /// (fd, buf, len, ...): read, write, sendto, recvfrom.
    Plain,
    /// (fd, iov, iovcnt): readv, writev.
    Iovec,
    /// (fd, msghdr, flags): sendmsg, recvmsg.
    MsgHdr,
    /// No copyable buffer: sendfile.
    None,
}

/// Most iovecs copied per syscall; later ones only count toward the total length. gRPC core
/// writes a frame in many small slices (a frame header, then each piece of a header block):
/// 16 cut its HEADERS frames short.
const MAX_IOVECS: u64 = 1024;
/// The same without `bpf_loop`, where the verifier's budget allows no more.
const UNROLLED_IOVECS: u64 = 16;

/// A data syscall enters: remember it if `fd` is a TCP socket we capture.
#[inline(always)]
pub fn enter(
    ctx: &TracePointContext,
    op: DataOp,
    direction: Direction,
    buffer: Buffer,
) -> Result<(), i64> {
    let ts_enter = unsafe { bpf_ktime_get_ns() };
    let pid_tgid = bpf_get_current_pid_tgid();
    let s = settings();
    if !filter::task_allowed((pid_tgid >> 32) as u32, &s) {
        return Ok(());
    }
    let fd = arg(ctx, 0) as i32;
    let (tuple, sk) = match tcp_socket_at(fd) {
        Ok(Some(found)) => found,
        Ok(None) => return Ok(()),
        Err(e) => {
            count(KernelCounter::SocketLookupFailed);
            return Err(e);
        }
    };
    if direction == Direction::Ingress {
        let _ = LAST_SOCKET_READ.insert(pid_tgid, fd, 0);
    }
    if tls::is_ciphertext(pid_tgid, fd, sk, ts_enter) {
        return Ok(());
    }
    if !filter::ports_allowed(&tuple, &s) {
        return Ok(());
    }
    let (buf, iov_count, buf_kind) = match buffer {
        Buffer::Plain => (arg(ctx, 1), 0, BUF_PLAIN),
        Buffer::Iovec => (arg(ctx, 1), arg(ctx, 2), BUF_IOVEC),
        Buffer::MsgHdr => {
            // struct user_msghdr: msg_iov at 16, msg_iovlen at 24.
            let msg = arg(ctx, 1);
            let iov: u64 = user_at(msg + 16)?;
            let iov_len: u64 = user_at(msg + 24)?;
            (iov, iov_len, BUF_IOVEC)
        }
        Buffer::None => (0, 0, BUF_NONE),
    };
    let pending = PendingCall {
        tuple,
        buf,
        iov_count,
        ts_enter,
        fd,
        conn_kind: 0,
        direction: direction as u8,
        op: op as u8,
        buf_kind,
    };
    remember(pid_tgid, &pending)
}

/// Stores a pending syscall, counting a full table.
#[inline(always)]
pub fn remember(pid_tgid: u64, pending: &PendingCall) -> Result<(), i64> {
    PENDING.insert(pid_tgid, pending, 0).map_err(|e| {
        count(KernelCounter::PendingTableFull);
        e as i64
    })
}

/// Any remembered socket syscall exits.
#[inline(always)]
pub fn exit(ctx: &TracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(pending) = (unsafe { PENDING.get(pid_tgid) }).copied() else {
        return Ok(());
    };
    let _ = PENDING.remove(pid_tgid);
    let ret = ret(ctx);
    if pending.conn_kind == EventKind::Connect as u8 {
        return connect_done(&pending, ret);
    }
    if ret <= 0 {
        return Ok(());
    }
    let meta = DataMeta {
        fd: pending.fd,
        ts_enter: pending.ts_enter,
        tuple: pending.tuple,
        direction: pending.direction,
        op: pending.op,
        flags: if pending.buf_kind == BUF_NONE {
            DATA_FLAG_NO_PAYLOAD
        } else {
            0
        },
        tls_library: 0,
        moved: ret as u64,
    };
    emit_data(&meta, |event, want| match pending.buf_kind {
        BUF_PLAIN => copy_plain(event, pending.buf, want),
        BUF_IOVEC => copy_iovecs(event, pending.buf, pending.iov_count, want),
        _ => 0,
    });
    Ok(())
}

/// What a data event says besides its bytes.
pub struct DataMeta {
    pub fd: i32,
    /// When the call began: the event's time for egress (the bytes existed then); ingress
    /// events are stamped now, when the bytes arrived.
    pub ts_enter: u64,
    pub tuple: SockTuple,
    pub direction: u8,
    pub op: u8,
    pub flags: u8,
    pub tls_library: u8,
    /// Bytes really moved.
    pub moved: u64,
}

/// Assembles a data event in this CPU's scratch slot, lets `copy` put up to the capture size
/// of payload in it (returning how much it copied), and emits it. Shared by the syscall and
/// the TLS probes, so both events are built, truncated and counted the same way.
#[inline(always)]
pub fn emit_data(meta: &DataMeta, copy: impl FnOnce(&mut DataEvent, u32) -> u32) {
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(event) = SCRATCH.get_ptr_mut(cpu) else {
        return;
    };
    let event = unsafe { &mut *event };
    let ts = if meta.direction == Direction::Egress as u8 {
        meta.ts_enter
    } else {
        unsafe { bpf_ktime_get_ns() }
    };
    event.header = emit::header(EventKind::Data, meta.fd, ts);
    event.tuple = meta.tuple;
    event.direction = meta.direction;
    event.op = meta.op;
    event.flags = meta.flags;
    event.tls_library = meta.tls_library;
    event.total_len = if meta.moved > u32::MAX as u64 {
        u32::MAX
    } else {
        meta.moved as u32
    };
    let mut want = event.total_len;
    let capture = settings().capture_bytes;
    if want > capture {
        want = capture;
    }
    let captured = copy(event, want);
    if meta.flags & DATA_FLAG_NO_PAYLOAD == 0 && captured < event.total_len {
        count(KernelCounter::PayloadTruncated);
    }
    event.captured_len = captured;
    emit::data_event(event, captured);
}

/// connect() returned: 0, or -EINPROGRESS for a non-blocking socket whose handshake goes on.
/// Either way the local port is bound now, so the tuple is complete.
#[inline(always)]
fn connect_done(pending: &PendingCall, ret: i64) -> Result<(), i64> {
    const EINPROGRESS: i64 = 115;
    if ret != 0 && ret != -EINPROGRESS {
        return Ok(());
    }
    if let Some(tuple) = tcp_socket(pending.fd)? {
        emit::conn_event(EventKind::Connect, pending.fd, tuple);
    }
    Ok(())
}

/// Copies up to `want` bytes from a plain user buffer into the payload.
#[inline(always)]
pub fn copy_plain(event: &mut DataEvent, buf: u64, want: u32) -> u32 {
    let n = capture_len(want);
    let dst = event.payload.as_mut_ptr() as *mut c_void;
    if unsafe { bpf_probe_read_user(dst, n, buf as *const c_void) } < 0 {
        return 0;
    }
    n
}

/// What [`copy_iovec_step`] needs, shared through `bpf_loop`. The running count lives in the
/// event (a map value), not here: the verifier then sees every step alike and checks it once,
/// where a precise count on the stack made it simulate each iovec.
#[repr(C)]
struct IovecCopy {
    iov: u64,
    want: u64,
}

/// Copies the iovecs' bytes into the payload, up to `want`. Through `bpf_loop` (kernel 5.17+),
/// so the number of iovecs is not limited by the verifier: gRPC core writes a frame in many
/// small slices.
#[inline(always)]
fn copy_iovecs(event: &mut DataEvent, iov: u64, iov_count: u64, want: u32) -> u32 {
    // A constant to the verifier (read-only data): the other branch is never checked.
    if settings().features & FEATURE_BPF_LOOP == 0 {
        return copy_iovecs_unrolled(event, iov, iov_count, want);
    }
    unsafe { core::ptr::write_volatile(&mut event.captured_len, 0) };
    let mut state = IovecCopy {
        iov,
        want: want as u64,
    };
    let count = if iov_count < MAX_IOVECS {
        iov_count as u32
    } else {
        MAX_IOVECS as u32
    };
    unsafe {
        bpf_loop(
            count,
            copy_iovec_step as *mut c_void,
            &mut state as *mut IovecCopy as *mut c_void,
            0,
        );
    }
    // Written by the steps behind this reference's back: read it again from memory.
    unsafe { core::ptr::read_volatile(&event.captured_len) }
}

/// One iovec of [`copy_iovecs`]: 0 to go on, 1 to stop.
#[inline(never)]
extern "C" fn copy_iovec_step(index: u32, ctx: *mut c_void) -> i64 {
    let state = unsafe { &*(ctx as *const IovecCopy) };
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(event) = SCRATCH.get_ptr_mut(cpu) else {
        return 1;
    };
    let event = unsafe { &mut *event };
    let copied = event.captured_len as u64;
    if copied >= state.want {
        return 1;
    }
    // struct iovec { void *iov_base; size_t iov_len; }
    let Ok(entry) = user_at::<[u64; 2]>(state.iov + index as u64 * 16) else {
        return 1;
    };
    let mut n = entry[1];
    let room = state.want - copied;
    if n > room {
        n = room;
    }
    if n > MAX_CAPTURE_BYTES as u64 {
        n = MAX_CAPTURE_BYTES as u64;
    }
    let offset = (copied as usize) & (MAX_CAPTURE_BYTES - 1);
    let dst = unsafe { event.payload.as_mut_ptr().add(offset) } as *mut c_void;
    if unsafe { bpf_probe_read_user(dst, n as u32, entry[0] as *const c_void) } < 0 {
        return 1;
    }
    event.captured_len = (copied + n) as u32;
    0
}

/// Kernels without `bpf_loop`: the verifier checks each iteration, so only a few iovecs.
#[inline(always)]
fn copy_iovecs_unrolled(event: &mut DataEvent, iov: u64, iov_count: u64, want: u32) -> u32 {
    let want = want as usize;
    let mut copied: usize = 0;
    for i in 0..UNROLLED_IOVECS {
        if i >= iov_count || copied >= want {
            break;
        }
        // struct iovec { void *iov_base; size_t iov_len; }
        let Ok(entry) = user_at::<[u64; 2]>(iov + i * 16) else {
            break;
        };
        let mut n = entry[1] as usize;
        let room = want - copied;
        if n > room {
            n = room;
        }
        if n > MAX_CAPTURE_BYTES {
            n = MAX_CAPTURE_BYTES;
        }
        let offset = copied & (MAX_CAPTURE_BYTES - 1);
        let dst = unsafe { event.payload.as_mut_ptr().add(offset) } as *mut c_void;
        if unsafe { bpf_probe_read_user(dst, n as u32, entry[0] as *const c_void) } < 0 {
            break;
        }
        copied += n;
    }
    copied as u32
}
