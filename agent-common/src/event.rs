//! Events written by the kernel programs into the `EVENTS` ring buffer.
//!
//! Every event starts with an [`EventHeader`]; its `kind` says which struct follows.

use crate::assert_size;

/// Largest payload prefix the kernel copies per syscall. A power of two so the kernel side can
/// bound offsets with a mask; the configurable capture size is at most this.
pub const MAX_CAPTURE_BYTES: usize = 16384;

/// Default payload prefix per syscall: holds the headers of ordinary API calls (JWTs and
/// cookies included) while keeping ring-buffer use per event small.
pub const DEFAULT_CAPTURE_BYTES: u32 = 8192;

/// Length of a task's command name in the kernel (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// How many bytes of an executed file's path the exec event carries.
pub const EXEC_PATH_LEN: usize = 256;
/// Argument bytes copied at exec (a power of two).
pub const EXEC_ARGS_LEN: usize = 512;

/// Kind of an event. Explicit ids, never reused.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Bytes read from or written to a TCP socket ([`DataEvent`]).
    Data = 1,
    /// A `connect` on a TCP socket succeeded or is in progress ([`ConnEvent`]).
    Connect = 2,
    /// An `accept`/`accept4` returned a new TCP socket ([`ConnEvent`]).
    Accept = 3,
    /// A TCP socket's file descriptor is being closed ([`ConnEvent`]).
    Close = 4,
    /// A process executed a new program ([`ExecEvent`]).
    Exec = 5,
    /// A process (its whole thread group) exited ([`EventHeader`] only).
    Exit = 6,
    /// A process mapped a file as executable code: a library loaded at start or by `dlopen`
    /// ([`EventHeader`] only; `fd` is the mapped file's descriptor). Tells userspace to look
    /// for TLS libraries in that process again.
    ExecMapping = 7,
    /// A cgroup was made in the cgroup v2 hierarchy ([`CgroupEvent`]): its id and path, known
    /// before any process runs in it, so a process gone before userspace could read
    /// /proc/PID/cgroup (a short-lived container) is still placed.
    CgroupCreated = 8,
    /// A descriptor of a TCP socket that other descriptors still hold was closed: not the
    /// connection's end, but that descriptor no longer names it ([`ConnEvent`]).
    CloseShared = 9,
}

impl EventKind {
    /// Maps a raw id back to a kind; `None` for ids this build does not know.
    pub fn from_u32(raw: u32) -> Option<Self> {
        Some(match raw {
            1 => Self::Data,
            2 => Self::Connect,
            3 => Self::Accept,
            4 => Self::Close,
            5 => Self::Exec,
            6 => Self::Exit,
            7 => Self::ExecMapping,
            8 => Self::CgroupCreated,
            9 => Self::CloseShared,
            _ => return None,
        })
    }
}

/// Which way the bytes went, seen from the process that made the syscall.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// write, writev, sendto, sendmsg, sendfile.
    Egress = 0,
    /// read, readv, recvfrom, recvmsg.
    Ingress = 1,
}

/// Which syscall produced a data event (kept for diagnostics and the raw event dump).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataOp {
    Read = 1,
    Write = 2,
    Readv = 3,
    Writev = 4,
    RecvFrom = 5,
    SendTo = 6,
    RecvMsg = 7,
    SendMsg = 8,
    SendFile = 9,
    /// Plaintext returned by a TLS library's read (SSL_read, gnutls_record_recv, Go's Read).
    TlsRead = 10,
    /// Plaintext given to a TLS library's write.
    TlsWrite = 11,
}

impl DataOp {
    pub fn from_u8(raw: u8) -> Option<Self> {
        Some(match raw {
            1 => Self::Read,
            2 => Self::Write,
            3 => Self::Readv,
            4 => Self::Writev,
            5 => Self::RecvFrom,
            6 => Self::SendTo,
            7 => Self::RecvMsg,
            8 => Self::SendMsg,
            9 => Self::SendFile,
            10 => Self::TlsRead,
            11 => Self::TlsWrite,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Readv => "readv",
            Self::Writev => "writev",
            Self::RecvFrom => "recvfrom",
            Self::SendTo => "sendto",
            Self::RecvMsg => "recvmsg",
            Self::SendMsg => "sendmsg",
            Self::SendFile => "sendfile",
            Self::TlsRead => "tls_read",
            Self::TlsWrite => "tls_write",
        }
    }
}

/// Common start of every event.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// An [`EventKind`] id.
    pub kind: u32,
    /// Process id (thread group id) in the initial pid namespace.
    pub tgid: u32,
    /// Thread id in the initial pid namespace.
    pub pid: u32,
    /// File descriptor the event is about (-1 when none).
    pub fd: i32,
    /// `CLOCK_MONOTONIC` nanoseconds (`bpf_ktime_get_ns`).
    pub ts_ns: u64,
    /// cgroup v2 id of the task (the inode number of its cgroup directory).
    pub cgroup_id: u64,
    /// The task's command name, NUL padded.
    pub comm: [u8; COMM_LEN],
}
assert_size!(EventHeader, 48);

/// Address family values used in [`SockTuple::family`] (Linux `AF_*`).
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// The two ends of a TCP socket as the kernel's `struct sock_common` holds them.
///
/// Ports are in host byte order. IPv4 addresses sit in the first four bytes of the address
/// arrays (network byte order); IPv6 addresses fill all sixteen.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SockTuple {
    pub family: u16,
    pub local_port: u16,
    pub remote_port: u16,
    pub _pad: u16,
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    /// The kernel address of the `struct sock`: the socket itself while it lives, whichever
    /// descriptors of whichever processes refer to it (fork, dup, a descriptor passed over a
    /// unix socket). Userspace keys connections by it; it is never exported.
    pub socket: u64,
}
assert_size!(SockTuple, 48);

/// Flag in [`DataEvent::flags`]: the syscall moved bytes the probe cannot copy (sendfile), so the
/// event only says how many went by.
pub const DATA_FLAG_NO_PAYLOAD: u8 = 1;

/// Flag in [`DataEvent::flags`]: an earlier data event of this descriptor was lost (the ring
/// buffer was full), so its byte stream has a hole of unknown size before this event.
pub const DATA_FLAG_AFTER_LOSS: u8 = 2;

/// Flag in [`DataEvent::flags`]: the bytes are the plaintext of a TLS connection, taken inside
/// the TLS library ([`DataEvent::tls_library`] says which).
pub const DATA_FLAG_TLS: u8 = 4;

/// TLS implementations the uprobes know, as carried in [`DataEvent::tls_library`] and in the
/// uprobe attach cookie. Explicit ids, never reused.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsLibrary {
    OpenSsl = 1,
    BoringSsl = 2,
    GnuTls = 3,
    GoCryptoTls = 4,
}

impl TlsLibrary {
    pub fn from_u8(raw: u8) -> Option<Self> {
        Some(match raw {
            1 => Self::OpenSsl,
            2 => Self::BoringSsl,
            3 => Self::GnuTls,
            4 => Self::GoCryptoTls,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::OpenSsl => "openssl",
            Self::BoringSsl => "boringssl",
            Self::GnuTls => "gnutls",
            Self::GoCryptoTls => "go-crypto-tls",
        }
    }
}

/// Bytes moved on a TCP socket, with a bounded prefix of them.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DataEvent {
    pub header: EventHeader,
    pub tuple: SockTuple,
    /// A [`Direction`].
    pub direction: u8,
    /// A [`DataOp`].
    pub op: u8,
    /// `DATA_FLAG_*` bits.
    pub flags: u8,
    /// A [`TlsLibrary`] id when `flags` has [`DATA_FLAG_TLS`], else 0.
    pub tls_library: u8,
    pub _pad: [u8; 4],
    /// Bytes the syscall really moved (its return value).
    pub total_len: u32,
    /// Bytes of `payload` that are valid (at most the configured capture size).
    pub captured_len: u32,
    /// Only the first `captured_len` bytes are written to the ring buffer. Twice the maximum so
    /// the kernel side can append each iovec at a masked offset the verifier accepts.
    pub payload: [u8; 2 * MAX_CAPTURE_BYTES],
}

/// Size of a [`DataEvent`] without its payload: what precedes the payload bytes in the ring.
pub const DATA_EVENT_HEADER_LEN: usize = 48 + 48 + 8 + 8;
const _: () = assert!(core::mem::offset_of!(DataEvent, payload) == DATA_EVENT_HEADER_LEN);
assert_size!(DataEvent, DATA_EVENT_HEADER_LEN + 2 * MAX_CAPTURE_BYTES);

/// A TCP connection was opened (connect/accept) or its descriptor closed.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnEvent {
    pub header: EventHeader,
    pub tuple: SockTuple,
}
assert_size!(ConnEvent, 96);

/// A process executed a program.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecEvent {
    pub header: EventHeader,
    /// The path given to execve, NUL terminated (may be relative).
    pub filename: [u8; EXEC_PATH_LEN],
    /// Bytes of `args` copied, and the arguments' full length (more than copied: cut).
    pub args_len: u32,
    pub args_total: u32,
    /// The new program's arguments as in /proc/PID/cmdline (NUL separated), read at exec: a
    /// short-lived process may be gone before userspace could read /proc.
    pub args: [u8; EXEC_ARGS_LEN],
}
assert_size!(ExecEvent, 48 + EXEC_PATH_LEN + 8 + EXEC_ARGS_LEN);

/// Bytes of a cgroup path carried by a [`CgroupEvent`] (a kubelet container's systemd path is
/// under 200).
pub const CGROUP_PATH_LEN: usize = 512;

/// A cgroup made in the cgroup v2 hierarchy (`cgroup:cgroup_mkdir`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CgroupEvent {
    pub header: EventHeader,
    /// The cgroup's id, as `bpf_get_current_cgroup_id` gives it for its processes.
    pub id: u64,
    /// Bytes of `path` before its NUL; `CGROUP_PATH_LEN` when the path was cut (unusable).
    pub path_len: u32,
    pub _pad: u32,
    /// Its path inside the hierarchy (`/docker/<id>`), NUL terminated.
    pub path: [u8; CGROUP_PATH_LEN],
}
assert_size!(CgroupEvent, 48 + 16 + CGROUP_PATH_LEN);

/// Indexes of the kernel-side counters in the per-CPU `COUNTERS` array. Explicit, never reused.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelCounter {
    /// A data event could not be written: the ring buffer was full.
    RingbufFullData = 0,
    /// A connect/accept/close/exec/exit event could not be written: the ring buffer was full.
    RingbufFullControl = 1,
    /// A syscall's arguments could not be remembered between enter and exit: the table was full.
    PendingTableFull = 2,
    /// Data events whose payload was cut to the capture size.
    PayloadTruncated = 3,
    /// Data events written.
    DataEvents = 4,
    /// Kernel memory reads that failed while resolving a socket.
    SocketLookupFailed = 5,
    /// A TLS read or write whose socket could not be found (no nested socket syscall and no
    /// descriptor remembered for the TLS object): its plaintext was not reported.
    TlsNoSocket = 6,
    /// A TLS call could not be remembered between entry and return: the table was full.
    TlsTableFull = 7,
    /// TLS reads and writes whose plaintext was reported.
    TlsEvents = 8,
    /// A TLS probe could not read the process's memory (arguments, the Go connection's
    /// descriptor, a byte count): that call's plaintext was not reported.
    TlsUserReadFailed = 9,
    /// close() of a descriptor whose socket other descriptors still refer to (a forked child's
    /// copy, a dup): not the connection's end (a `CloseShared` event, not a `Close`).
    CloseOfSharedSocket = 10,
}

/// Number of slots in the `COUNTERS` array.
pub const KERNEL_COUNTER_SLOTS: u32 = 16;

impl KernelCounter {
    pub const ALL: [KernelCounter; 11] = [
        Self::RingbufFullData,
        Self::RingbufFullControl,
        Self::PendingTableFull,
        Self::PayloadTruncated,
        Self::DataEvents,
        Self::SocketLookupFailed,
        Self::TlsNoSocket,
        Self::TlsTableFull,
        Self::TlsEvents,
        Self::TlsUserReadFailed,
        Self::CloseOfSharedSocket,
    ];

    /// Whether the counter counts lost events (as opposed to activity).
    pub fn is_drop(self) -> bool {
        matches!(
            self,
            Self::RingbufFullData
                | Self::RingbufFullControl
                | Self::PendingTableFull
                | Self::TlsNoSocket
                | Self::TlsTableFull
                | Self::TlsUserReadFailed
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::RingbufFullData => "ringbuf_full_data",
            Self::RingbufFullControl => "ringbuf_full_control",
            Self::PendingTableFull => "pending_table_full",
            Self::PayloadTruncated => "payload_truncated",
            Self::DataEvents => "data_events",
            Self::SocketLookupFailed => "socket_lookup_failed",
            Self::TlsNoSocket => "tls_no_socket",
            Self::TlsTableFull => "tls_table_full",
            Self::TlsEvents => "tls_events",
            Self::TlsUserReadFailed => "tls_user_read_failed",
            Self::CloseOfSharedSocket => "close_of_shared_socket",
        }
    }
}
