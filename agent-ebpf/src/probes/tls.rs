//! Uprobes inside TLS libraries: the plaintext of encrypted connections.
//!
//! - C libraries (OpenSSL, BoringSSL, GnuTLS): a uprobe at the entry of the read/write function
//!   remembers the buffer per thread; the socket syscall the library makes inside the call, on
//!   the same thread, tells which descriptor the call is about (see [`is_ciphertext`]); the
//!   uretprobe copies what was really read or written. No per-version struct offsets.
//! - Go crypto/tls: in `go_tls.rs`.
//!
//! Each plaintext chunk goes out as a [`DataEvent`] with [`DATA_FLAG_TLS`], with the socket's
//! addresses, so it joins the same connection as the syscall events; the descriptor is then
//! marked in `TLS_FDS` and the syscall probes drop its ciphertext.
//!
//! The register names are x86_64's; the Go probes are only built for that architecture.

use agent_common::event::{DATA_FLAG_TLS, DataOp, Direction, KernelCounter, TlsLibrary};
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated::bpf_get_attach_cookie},
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};

use super::data::{DataMeta, copy_plain, emit_data};
use crate::{
    config::settings,
    filter,
    maps::{LAST_SOCKET_READ, ObjectKey, TLS_CALLS, TLS_FDS, TLS_OBJECT_FDS, TlsCall, count},
    sock::tcp_socket_at,
    user::user_at,
};

/// A TLS call older than this no longer claims its thread's socket syscalls: its return was
/// probably never seen (the thread left it abnormally), and it must not hide the thread's
/// traffic for good. Library calls reach their first socket syscall within microseconds.
const TLS_CALL_CLAIM_NS: u64 = 1_000_000_000;

/// Called by the syscall probes for every data syscall on a TCP socket: whether its bytes are
/// TLS records whose plaintext the uprobes report. Inside a TLS call of the same thread, the
/// syscall also tells that call its descriptor.
#[inline(always)]
pub fn is_ciphertext(pid_tgid: u64, fd: i32, sk: u64, now: u64) -> bool {
    if let Some(call) = TLS_CALLS.get_ptr_mut(pid_tgid) {
        let call = unsafe { &mut *call };
        if now.saturating_sub(call.ts_enter) < TLS_CALL_CLAIM_NS {
            if call.fd < 0 {
                call.fd = fd;
            }
            return true;
        }
    }
    let key = fd_key((pid_tgid >> 32) as u32, fd);
    match unsafe { TLS_FDS.get(key) } {
        Some(known) => *known == sk,
        None => false,
    }
}

/// Forgets a descriptor's TLS mark when it is closed.
#[inline(always)]
pub fn forget_fd(tgid: u32, fd: i32) {
    let _ = TLS_FDS.remove(fd_key(tgid, fd));
}

#[inline(always)]
fn fd_key(tgid: u32, fd: i32) -> u64 {
    ((tgid as u64) << 32) | (fd as u32 as u64)
}

/// One uprobe per C read/write entry point: its direction, whether it is an _ex variant (the
/// count comes back through a pointer), and whether it only counts for SSL BIOs.
macro_rules! c_entry {
    ($(#[$doc:meta])* $name:ident, $direction:expr, ex: $ex:expr, ssl_bio_only: $bio:expr) => {
        $(#[$doc])*
        #[uprobe]
        pub fn $name(ctx: ProbeContext) -> u32 {
            if !$bio || ssl_bio(&ctx) {
                c_enter(&ctx, $direction, $ex);
            }
            0
        }
    };
}

c_entry!(
    /// SSL_write(ssl, buf, num), gnutls_record_send(session, data, size).
    tls_write_enter, Direction::Egress, ex: false, ssl_bio_only: false
);
c_entry!(
    /// SSL_read(ssl, buf, num), gnutls_record_recv(session, data, size).
    tls_read_enter, Direction::Ingress, ex: false, ssl_bio_only: false
);
c_entry!(
    /// SSL_write_ex(ssl, buf, num, size_t *written).
    tls_write_ex_enter, Direction::Egress, ex: true, ssl_bio_only: false
);
c_entry!(
    /// SSL_read_ex(ssl, buf, num, size_t *readbytes).
    tls_read_ex_enter, Direction::Ingress, ex: true, ssl_bio_only: false
);
c_entry!(
    /// BIO_write(bio, data, dlen) in libcrypto: reported only for SSL BIOs (`BIO_f_ssl`),
    /// whose writes reach the TLS layer without SSL_write (OpenSSL's own BIO calls internal
    /// functions).
    bio_write_enter, Direction::Egress, ex: false, ssl_bio_only: true
);
c_entry!(
    /// BIO_read(bio, data, dlen) on an SSL BIO.
    bio_read_enter, Direction::Ingress, ex: false, ssl_bio_only: true
);
c_entry!(
    /// BIO_write_ex(bio, data, dlen, size_t *written) on an SSL BIO.
    bio_write_ex_enter, Direction::Egress, ex: true, ssl_bio_only: true
);
c_entry!(
    /// BIO_read_ex(bio, data, dlen, size_t *readbytes) on an SSL BIO.
    bio_read_ex_enter, Direction::Ingress, ex: true, ssl_bio_only: true
);

/// SSL_do_handshake(ssl), SSL_connect(ssl), SSL_accept(ssl): a memory-BIO program (Node.js)
/// runs these right after reading the peer's handshake bytes from the socket, on the same
/// thread; that read names the socket of the TLS object before its first write.
#[uprobe]
pub fn tls_handshake_enter(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let object: u64 = ctx.arg(0).unwrap_or(0);
    if object_fd(tgid, object, -1) < 0
        && let Some(last) = unsafe { LAST_SOCKET_READ.get(pid_tgid) }
    {
        object_fd(tgid, object, *last);
    }
    0
}

/// `BIO_TYPE_SSL`: (7 | BIO_TYPE_FILTER), the same in OpenSSL 1.1, 3.x and BoringSSL.
const BIO_TYPE_SSL: i32 = 0x0207;

/// Whether the BIO in the first argument is an SSL BIO: `bio->method->type`, where the offset
/// of `method` in `struct bio_st` (0 in OpenSSL 1.1, 8 in 3.x, after `libctx`) comes in the
/// cookie's second byte; `type` is the first field of `BIO_METHOD` in every version.
#[inline(always)]
fn ssl_bio(ctx: &ProbeContext) -> bool {
    let bio: u64 = ctx.arg(0).unwrap_or(0);
    let method_offset = (unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } >> 8) & 0xff;
    let Ok(method) = user_at::<u64>(bio + method_offset) else {
        return false;
    };
    matches!(user_at::<i32>(method), Ok(BIO_TYPE_SSL))
}

/// The return of any of the C functions above.
#[uretprobe]
pub fn tls_return(ctx: RetProbeContext) -> u32 {
    if c_return(&ctx).is_err() {
        count(KernelCounter::TlsUserReadFailed);
    }
    0
}

#[inline(always)]
fn c_enter(ctx: &ProbeContext, direction: Direction, ex: bool) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !filter::task_allowed((pid_tgid >> 32) as u32, &settings()) {
        return;
    }
    let object: u64 = ctx.arg(0).unwrap_or(0);
    let buf: u64 = ctx.arg(1).unwrap_or(0);
    let len_out: u64 = if ex { ctx.arg(3).unwrap_or(0) } else { 0 };
    let call = TlsCall {
        object,
        buf,
        len_out,
        ts_enter: unsafe { bpf_ktime_get_ns() },
        sp: unsafe { (*ctx.regs).rsp },
        fd: -1,
        direction: direction as u8,
        library: cookie_library(ctx),
        ex: ex as u8,
        _pad: 0,
    };
    // A nested call (a library calling its own public function) overwrites the outer one, so
    // only the innermost reports and nothing is reported twice.
    if TLS_CALLS.insert(pid_tgid, call, 0).is_err() {
        count(KernelCounter::TlsTableFull);
    }
}

#[inline(always)]
fn c_return(ctx: &RetProbeContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(call) = (unsafe { TLS_CALLS.get(pid_tgid) }).copied() else {
        return Ok(());
    };
    // The return of a nested call of the same function (an SSL BIO reading through the socket
    // BIO): not this call's.
    if unsafe { (*ctx.regs).rsp } != call.sp + 8 {
        return Ok(());
    }
    let _ = TLS_CALLS.remove(pid_tgid);
    let tgid = (pid_tgid >> 32) as u32;
    let mut fd = object_fd(tgid, call.object, call.fd);
    if fd < 0 {
        // No socket syscall inside the call and none remembered: a memory-BIO program. Learn
        // the socket from the thread's last socket read, which fed this call's handshake or
        // records (also on failed reads: they happen during the handshake, before the first
        // request is written; a client's first write may itself finish the handshake).
        if let Some(last) = unsafe { LAST_SOCKET_READ.get(pid_tgid) } {
            fd = object_fd(tgid, call.object, *last);
        }
    }
    let ret: i64 = ctx.ret();
    // OpenSSL's functions return int (the upper half of rax is garbage: -1 must not read as
    // 4294967295); gnutls_record_recv/send return ssize_t.
    let ret = if call.library == TlsLibrary::GnuTls as u8 {
        ret
    } else {
        ret as i32 as i64
    };
    let moved = if call.ex != 0 {
        if ret != 1 {
            return Ok(());
        }
        user_at::<u64>(call.len_out)? as i64
    } else {
        ret
    };
    if moved <= 0 {
        return Ok(());
    }
    if fd < 0 {
        count(KernelCounter::TlsNoSocket);
        return Ok(());
    }
    emit_plaintext(tgid, fd, &call, moved as u64)
}

/// The call's descriptor if a nested syscall told it (and remember it for the object), else
/// the one remembered for the object, else -1.
#[inline(always)]
fn object_fd(tgid: u32, object: u64, fd: i32) -> i32 {
    let key = ObjectKey {
        tgid,
        _pad: 0,
        object,
    };
    if fd >= 0 {
        let _ = TLS_OBJECT_FDS.insert(key, fd, 0);
        return fd;
    }
    match unsafe { TLS_OBJECT_FDS.get(key) } {
        Some(known) => *known,
        None => -1,
    }
}

/// The `TlsLibrary` userspace put in the attach cookie.
#[inline(always)]
fn cookie_library<C: EbpfContext>(ctx: &C) -> u8 {
    // The low byte; the next one is the BIO method offset (see `ssl_bio`).
    (unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } & 0xff) as u8
}

/// Sends `moved` plaintext bytes of `call` as a data event on the socket behind `fd`.
#[inline(always)]
pub(super) fn emit_plaintext(tgid: u32, fd: i32, call: &TlsCall, moved: u64) -> Result<(), i64> {
    let s = settings();
    let Some((tuple, sk)) = tcp_socket_at(fd)? else {
        count(KernelCounter::TlsNoSocket);
        return Ok(());
    };
    if !filter::ports_allowed(&tuple, &s) {
        return Ok(());
    }
    let _ = TLS_FDS.insert(fd_key(tgid, fd), sk, 0);
    let meta = DataMeta {
        fd,
        ts_enter: call.ts_enter,
        tuple,
        direction: call.direction,
        op: if call.direction == Direction::Ingress as u8 {
            DataOp::TlsRead as u8
        } else {
            DataOp::TlsWrite as u8
        },
        flags: DATA_FLAG_TLS,
        tls_library: call.library,
        moved,
    };
    count(KernelCounter::TlsEvents);
    emit_data(&meta, |event, want| copy_plain(event, call.buf, want));
    Ok(())
}
