//! Every map of the kernel side. Sizes here are defaults; userspace may resize the ring buffer.

use agent_common::event::{DataEvent, KERNEL_COUNTER_SLOTS, SockTuple};
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};

/// Events to userspace. 8 MiB by default (`--ring-buffer-mib`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 << 20, 0);

/// Per-CPU counters indexed by `KernelCounter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(KERNEL_COUNTER_SLOTS, 0);

/// Scratch space where a data event is assembled (too big for the 512-byte stack), one slot per
/// CPU indexed by the CPU id. A plain array because per-CPU map values are limited to 32 KiB.
/// Userspace sizes it to the number of possible CPUs.
#[map]
pub static SCRATCH: Array<DataEvent> = Array::with_max_entries(256, 0);

/// How a pending syscall's buffer is described.
pub const BUF_PLAIN: u8 = 0;
pub const BUF_IOVEC: u8 = 1;
pub const BUF_NONE: u8 = 2;

/// A socket syscall between its enter and exit tracepoints, keyed by pid_tgid (a thread is in
/// one syscall at a time).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PendingCall {
    pub tuple: SockTuple,
    /// User address of the buffer, or of the iovec array.
    pub buf: u64,
    /// Number of iovecs (BUF_IOVEC).
    pub iov_count: u64,
    pub ts_enter: u64,
    pub fd: i32,
    /// An `EventKind` for connect, else 0 for data.
    pub conn_kind: u8,
    pub direction: u8,
    pub op: u8,
    pub buf_kind: u8,
}

/// Syscalls in flight on TCP sockets, between enter and exit. LRU, and cleared when a thread
/// exits: a thread killed inside a blocking read never reaches the exit tracepoint, and its
/// entry must not stay forever.
#[map]
pub static PENDING: LruHashMap<u64, PendingCall> = LruHashMap::with_max_entries(16384, 0);

/// Process filters: tgid -> FILTER_INCLUDE or FILTER_EXCLUDE.
#[map]
pub static PID_FILTER: HashMap<u32, u8> = HashMap::with_max_entries(4096, 0);

/// cgroup filters: cgroup v2 id -> FILTER_INCLUDE or FILTER_EXCLUDE.
#[map]
pub static CGROUP_FILTER: HashMap<u64, u8> = HashMap::with_max_entries(4096, 0);

/// Port filters (local or remote port) -> FILTER_INCLUDE or FILTER_EXCLUDE.
#[map]
pub static PORT_FILTER: HashMap<u16, u8> = HashMap::with_max_entries(1024, 0);

/// Adds one to a per-CPU counter.
#[inline(always)]
pub fn count(counter: agent_common::event::KernelCounter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        unsafe { *slot += 1 };
    }
}

/// Sockets (their `struct sock` address) whose data event could not be written: their next event
/// carries DATA_FLAG_AFTER_LOSS so userspace resynchronises instead of misreading the stream.
#[map]
pub static LOST: LruHashMap<u64, u8> = LruHashMap::with_max_entries(8192, 0);

/// Slot 0 is set once any data event was lost: until then `LOST` is never consulted.
#[map]
pub static LOSS_SEEN: Array<u32> = Array::with_max_entries(1, 0);

/// A TLS read or write between its entry and its return.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TlsCall {
    /// The library's connection object (`SSL *`, `gnutls_session_t`, Go's `*tls.Conn`).
    pub object: u64,
    /// User address of the plaintext buffer.
    pub buf: u64,
    /// For SSL_read_ex/SSL_write_ex: user address of the `size_t` that receives the byte count.
    pub len_out: u64,
    pub ts_enter: u64,
    /// Stack pointer at entry: the return with this frame (sp + 8 after `ret` pops the return
    /// address) is this call's, not that of a nested call of the same function.
    pub sp: u64,
    /// The socket, once known: from a socket syscall nested in the call (C libraries) or from
    /// the connection object (Go). -1 until then.
    pub fd: i32,
    pub direction: u8,
    /// A `TlsLibrary` id.
    pub library: u8,
    /// 1 for the _ex variants (return 1 on success, count through `len_out`).
    pub ex: u8,
    pub _pad: u8,
}

/// C-library TLS calls in flight, keyed by pid_tgid: the library runs the socket syscall on
/// the calling thread, which is how the call learns its descriptor without struct offsets.
#[map]
pub static TLS_CALLS: LruHashMap<u64, TlsCall> = LruHashMap::with_max_entries(16384, 0);

/// Go TLS calls in flight, keyed by (tgid, goroutine): a goroutine may move between threads
/// while it waits for the network, so the thread id is no key for Go.
#[map]
pub static GO_TLS_CALLS: LruHashMap<ObjectKey, TlsCall> = LruHashMap::with_max_entries(16384, 0);

/// (tgid, TLS object) -> descriptor, learned from earlier calls: an SSL_read served from the
/// library's buffer makes no syscall, yet must be tied to its socket.
#[map]
pub static TLS_OBJECT_FDS: LruHashMap<ObjectKey, i32> = LruHashMap::with_max_entries(65536, 0);

/// Descriptors (tgid << 32 | fd) whose plaintext comes from a TLS library -> the kernel address
/// of their socket. The syscall probes skip these: their bytes are ciphertext. Keyed on the
/// socket's address too, so a descriptor number reused for another socket (or a pid reused by
/// another process) is never skipped by mistake.
#[map]
pub static TLS_FDS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(65536, 0);

/// pid_tgid -> the TCP socket the thread last read from. Programs that run TLS over memory
/// BIOs (Node.js) read the ciphertext themselves and only then call SSL_read on the same
/// thread, with no socket syscall inside: this ties such a read to its socket.
#[map]
pub static LAST_SOCKET_READ: LruHashMap<u64, i32> = LruHashMap::with_max_entries(16384, 0);

/// A process and one of its objects (a pointer in its address space).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ObjectKey {
    pub tgid: u32,
    pub _pad: u32,
    pub object: u64,
}
