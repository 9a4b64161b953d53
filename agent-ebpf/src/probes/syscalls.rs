//! Syscall tracepoints on TCP sockets: connect, accept/accept4, the read and write families,
//! sendfile and close. Every data syscall shares one exit program.

use agent_common::event::{DataOp, Direction, EventHeader, EventKind, KernelCounter};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::TracePointContext,
};

use super::{
    args::{arg, ret},
    data::{self, Buffer},
    tls,
};
use crate::{
    config::settings,
    emit, filter,
    maps::{BUF_NONE, EVENTS, PendingCall, count},
    sock::{is_last_reference, socket_file, tcp_socket, tcp_socket_of},
};

macro_rules! data_enter {
    ($name:ident, $op:expr, $dir:expr, $buf:expr) => {
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            let _ = data::enter(&ctx, $op, $dir, $buf);
            0
        }
    };
}

data_enter!(enter_read, DataOp::Read, Direction::Ingress, Buffer::Plain);
data_enter!(enter_write, DataOp::Write, Direction::Egress, Buffer::Plain);
data_enter!(
    enter_readv,
    DataOp::Readv,
    Direction::Ingress,
    Buffer::Iovec
);
data_enter!(
    enter_writev,
    DataOp::Writev,
    Direction::Egress,
    Buffer::Iovec
);
data_enter!(
    enter_recvfrom,
    DataOp::RecvFrom,
    Direction::Ingress,
    Buffer::Plain
);
data_enter!(
    enter_sendto,
    DataOp::SendTo,
    Direction::Egress,
    Buffer::Plain
);
data_enter!(
    enter_recvmsg,
    DataOp::RecvMsg,
    Direction::Ingress,
    Buffer::MsgHdr
);
data_enter!(
    enter_sendmsg,
    DataOp::SendMsg,
    Direction::Egress,
    Buffer::MsgHdr
);
data_enter!(
    enter_sendfile,
    DataOp::SendFile,
    Direction::Egress,
    Buffer::None
);

/// Attached to the exit of every syscall above and of connect.
#[tracepoint]
pub fn exit_socket_io(ctx: TracePointContext) -> u32 {
    let _ = data::exit(&ctx);
    0
}

#[tracepoint]
pub fn enter_connect(ctx: TracePointContext) -> u32 {
    let _ = try_enter_connect(&ctx);
    0
}

fn try_enter_connect(ctx: &TracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !filter::task_allowed((pid_tgid >> 32) as u32, &settings()) {
        return Ok(());
    }
    let fd = arg(ctx, 0) as i32;
    // Only TCP sockets; the addresses are read at exit, once the local port is bound.
    let Some(tuple) = tcp_socket(fd)? else {
        return Ok(());
    };
    let pending = PendingCall {
        tuple,
        buf: 0,
        iov_count: 0,
        ts_enter: unsafe { bpf_ktime_get_ns() },
        fd,
        conn_kind: EventKind::Connect as u8,
        direction: Direction::Egress as u8,
        op: 0,
        buf_kind: BUF_NONE,
    };
    data::remember(pid_tgid, &pending)
}

/// Attached to the exit of accept and accept4: the new descriptor is the return value.
#[tracepoint]
pub fn exit_accept(ctx: TracePointContext) -> u32 {
    let _ = try_exit_accept(&ctx);
    0
}

fn try_exit_accept(ctx: &TracePointContext) -> Result<(), i64> {
    let fd = ret(ctx);
    if fd < 0 {
        return Ok(());
    }
    let s = settings();
    if !filter::task_allowed((bpf_get_current_pid_tgid() >> 32) as u32, &s) {
        return Ok(());
    }
    let tuple = match tcp_socket(fd as i32) {
        Ok(Some(tuple)) => tuple,
        Ok(None) => return Ok(()),
        Err(e) => {
            count(KernelCounter::SocketLookupFailed);
            return Err(e);
        }
    };
    if filter::ports_allowed(&tuple, &s) {
        emit::conn_event(EventKind::Accept, fd as i32, tuple);
    }
    Ok(())
}

/// close() on a TCP socket: read at enter, while the descriptor still exists. Only the close
/// of its last descriptor ends the connection.
#[tracepoint]
pub fn enter_close(ctx: TracePointContext) -> u32 {
    let _ = try_enter_close(&ctx);
    0
}

fn try_enter_close(ctx: &TracePointContext) -> Result<(), i64> {
    let s = settings();
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if !filter::task_allowed(tgid, &s) {
        return Ok(());
    }
    let fd = arg(ctx, 0) as i32;
    let Some(file) = socket_file(fd)? else {
        return Ok(());
    };
    let Some(tuple) = tcp_socket_of(file)? else {
        return Ok(());
    };
    tls::forget_fd(tgid, fd);
    let kind = if is_last_reference(file)? {
        EventKind::Close
    } else {
        // Another descriptor (a forked child's, a dup) still holds the connection.
        count(KernelCounter::CloseOfSharedSocket);
        EventKind::CloseShared
    };
    if filter::ports_allowed(&tuple, &s) {
        emit::conn_event(kind, fd, tuple);
    }
    Ok(())
}

/// mmap with PROT_EXEC of a file: a program or library being loaded (at start, or later by
/// dlopen). Userspace then looks at the process's mappings for TLS libraries to attach to.
#[tracepoint]
pub fn enter_mmap(ctx: TracePointContext) -> u32 {
    let _ = try_enter_mmap(&ctx);
    0
}

fn try_enter_mmap(ctx: &TracePointContext) -> Result<(), i64> {
    const PROT_EXEC: u64 = 4;
    let prot = arg(ctx, 2);
    let fd = arg(ctx, 4) as i32;
    if prot & PROT_EXEC == 0 || fd < 0 {
        return Ok(());
    }
    if !filter::task_allowed((bpf_get_current_pid_tgid() >> 32) as u32, &settings()) {
        return Ok(());
    }
    let Some(mut entry) = EVENTS.reserve::<EventHeader>(0) else {
        count(KernelCounter::RingbufFullControl);
        return Ok(());
    };
    entry.write(emit::header(EventKind::ExecMapping, fd, unsafe {
        bpf_ktime_get_ns()
    }));
    entry.submit(emit::wakeup_flags());
    Ok(())
}
