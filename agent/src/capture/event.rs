//! Typed events, decoded from the kernel's raw layouts.

use std::net::SocketAddr;

pub use agent_common::event::TlsLibrary;

/// The task that made a syscall.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// Process id.
    pub tgid: u32,
    /// Thread id.
    pub pid: u32,
    /// Command name (at most 15 bytes).
    pub comm: String,
    pub cgroup_id: u64,
    /// Monotonic nanoseconds.
    pub ts_ns: u64,
}

/// The two ends of a TCP socket, seen from the process that owns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SocketPair {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl SocketPair {
    /// Whether `other` describes the same connection. The kernel zeroes a socket's local port
    /// once it is unhashed (after a reset or a full close), while reads of data still queued
    /// can go on: such a socket is still the same connection.
    pub fn same_connection(&self, other: &SocketPair) -> bool {
        self.remote == other.remote
            && self.local.ip() == other.local.ip()
            && (self.local.port() == other.local.port()
                || self.local.port() == 0
                || other.local.port() == 0)
    }

    /// The same connection seen from the other end.
    pub fn reversed(&self) -> Self {
        Self {
            local: self.remote,
            remote: self.local,
        }
    }
}

/// A socket itself, whichever descriptors of whichever processes refer to it: a server that
/// accepts and a forked child that serves, or the two descriptors (0 and 1) of an inetd-style
/// child, are one connection. The kernel's address of the socket while it lives (reused once it
/// is freed: a connect or accept with a known id starts a new connection); only a key, never
/// shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub u64);

/// Which way bytes went, from the observing process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Egress,
    Ingress,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Self::Egress => "egress",
            Self::Ingress => "ingress",
        }
    }
}

/// Bytes moved on a socket.
#[derive(Clone, Debug)]
pub struct DataChunk {
    pub task: Task,
    pub fd: i32,
    /// The socket's identity (see [`SocketId`]).
    pub socket: SocketId,
    pub sockets: SocketPair,
    pub direction: Direction,
    /// The syscall's name.
    pub op: &'static str,
    /// Bytes really moved.
    pub total_len: u32,
    /// The captured prefix (at most the capture size).
    pub payload: Vec<u8>,
    /// An earlier data event of this descriptor was dropped (kernel ring buffer or capture
    /// queue full): the stream has a hole of unknown size before these bytes.
    pub after_loss: bool,
    /// The bytes are a TLS connection's plaintext, taken inside this library.
    pub tls: Option<TlsLibrary>,
}

impl DataChunk {
    /// Bytes moved but not captured: the capture limit, or a sendfile.
    pub fn missing_len(&self) -> usize {
        (self.total_len as usize).saturating_sub(self.payload.len())
    }
}

/// What happened to a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnKind {
    Connect,
    Accept,
    /// The last descriptor of the socket was closed: the connection ended.
    Close,
    /// A descriptor was closed while others (another process's, a dup) still hold the socket.
    CloseShared,
}

impl ConnKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Accept => "accept",
            Self::Close => "close",
            Self::CloseShared => "close_shared",
        }
    }
}

/// One event from the kernel.
#[derive(Clone, Debug)]
pub enum CaptureEvent {
    Data(DataChunk),
    Conn {
        task: Task,
        fd: i32,
        socket: SocketId,
        sockets: SocketPair,
        kind: ConnKind,
    },
    Exec {
        task: Task,
        filename: String,
        /// Its arguments as the kernel saw them at exec (NUL separated, as /proc/PID/cmdline),
        /// and whether they are whole (not cut at the copy limit).
        args: Vec<u8>,
        args_complete: bool,
    },
    Exit {
        task: Task,
    },
    /// The process mapped a file as code (a library loaded, maybe by dlopen).
    ExecMapping {
        task: Task,
    },
    /// A cgroup was made in the cgroup v2 hierarchy: the id its processes' events will carry,
    /// and its path there (`/docker/<id>`). `task` is the process that made it.
    CgroupCreated {
        task: Task,
        id: u64,
        path: String,
    },
}

impl CaptureEvent {
    pub fn task(&self) -> &Task {
        match self {
            Self::Data(d) => &d.task,
            Self::Conn { task, .. }
            | Self::Exec { task, .. }
            | Self::Exit { task }
            | Self::ExecMapping { task }
            | Self::CgroupCreated { task, .. } => task,
        }
    }
}
