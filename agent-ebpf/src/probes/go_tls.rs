//! Uprobes in Go's crypto/tls. No uretprobes: the Go runtime copies goroutine stacks, which
//! breaks their return trampolines. A write is reported at `(*Conn).Write`'s entry; a read at
//! each RET instruction of `(*Conn).Read`, found by userspace through disassembly. Calls are
//! keyed by goroutine (register r14 in Go's register ABI, Go 1.17+), and the descriptor is read
//! from the `*tls.Conn` through fields whose layout has not changed since Go 1.9. x86_64 only.

use agent_common::event::{Direction, KernelCounter, TlsLibrary};
use aya_ebpf::{
    bindings::pt_regs,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::uprobe,
    programs::ProbeContext,
};

use super::tls::emit_plaintext;
use crate::{
    config::settings,
    filter,
    maps::{GO_TLS_CALLS, ObjectKey, TlsCall, count},
    user::user_at,
};

/// Go: `func (c *Conn) Write(b []byte) (int, error)`; c in rax, b's pointer and length in rbx
/// and rcx (register ABI, Go 1.17+). Reported at entry (see `go_enter`).
#[uprobe]
pub fn go_tls_write_enter(ctx: ProbeContext) -> u32 {
    if go_enter(&ctx, Direction::Egress).is_err() {
        count(KernelCounter::TlsUserReadFailed);
    }
    0
}

/// Go: `func (c *Conn) Read(b []byte) (int, error)`.
#[uprobe]
pub fn go_tls_read_enter(ctx: ProbeContext) -> u32 {
    if go_enter(&ctx, Direction::Ingress).is_err() {
        count(KernelCounter::TlsUserReadFailed);
    }
    0
}

/// Attached to every RET instruction of Go's (*Conn).Read: n is in rax.
#[uprobe]
pub fn go_tls_return(ctx: ProbeContext) -> u32 {
    if go_return(&ctx).is_err() {
        count(KernelCounter::TlsUserReadFailed);
    }
    0
}

#[inline(always)]
fn go_enter(ctx: &ProbeContext, direction: Direction) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !filter::task_allowed(tgid, &settings()) {
        return Ok(());
    }
    let regs = unsafe { &*ctx.regs };
    let conn = regs.rax;
    let call = TlsCall {
        object: conn,
        buf: regs.rbx,
        len_out: 0,
        ts_enter: unsafe { bpf_ktime_get_ns() },
        sp: regs.rsp,
        fd: go_conn_fd(conn)?,
        direction: direction as u8,
        library: TlsLibrary::GoCryptoTls as u8,
        ex: 0,
        _pad: 0,
    };
    if direction == Direction::Egress {
        // Reported at entry, where the bytes are already in the buffer: reported at return,
        // a write whose goroutine was descheduled after its syscall could reach the ring
        // buffer after the peer's answer, which would then find no request to pair with.
        let len = regs.rcx;
        if len > 0 {
            emit_plaintext(tgid, call.fd, &call, len)?;
        }
        return Ok(());
    }
    if GO_TLS_CALLS
        .insert(goroutine_key(tgid, regs), call, 0)
        .is_err()
    {
        count(KernelCounter::TlsTableFull);
    }
    Ok(())
}

/// The descriptor under a `*tls.Conn`: `tls.Conn.conn` is a `net.Conn` interface at offset 0
/// (its data word at 8) holding a `*net.TCPConn`, whose first field is the `*netFD`; the netFD
/// starts with a `poll.FD`, whose `Sysfd` follows the 16-byte `fdMutex`.
#[inline(always)]
fn go_conn_fd(conn: u64) -> Result<i32, i64> {
    let tcp_conn: u64 = user_at(conn + 8)?;
    let net_fd: u64 = user_at(tcp_conn)?;
    let sysfd: i64 = user_at(net_fd + 16)?;
    Ok(sysfd as i32)
}

#[inline(always)]
fn go_return(ctx: &ProbeContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let regs = unsafe { &*ctx.regs };
    let key = goroutine_key(tgid, regs);
    let Some(call) = (unsafe { GO_TLS_CALLS.get(key) }).copied() else {
        return Ok(());
    };
    let _ = GO_TLS_CALLS.remove(key);
    let moved = regs.rax as i64;
    if moved <= 0 {
        return Ok(());
    }
    emit_plaintext(tgid, call.fd, &call, moved as u64)
}

/// The goroutine running now: Go's register ABI keeps its `g` in r14.
#[inline(always)]
fn goroutine_key(tgid: u32, regs: &pt_regs) -> ObjectKey {
    ObjectKey {
        tgid,
        _pad: 0,
        object: regs.r14,
    }
}
