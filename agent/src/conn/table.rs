//! Live connections keyed by socket (not by descriptor: a socket shared by fork or dup is one
//! connection, whichever process uses it), with a cap and idle eviction, and an index by socket
//! pair so that a call between two local processes names both.

use std::collections::VecDeque;

// Keys are kernel socket ids and addresses, not chosen by traffic: a fast hash is safe here.
use foldhash::HashMap;

use crate::{
    capture::event::{SocketId, SocketPair, Task, TlsLibrary},
    protocol::{http1::Http1Connection, http2::Http2Connection},
};

pub type ConnKey = SocketId;

/// Which end of the connection the owning process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
    /// Not seen opening; decided by the first HTTP bytes.
    Unknown,
}

/// What the connection carries.
pub enum Protocol {
    /// No data yet, or nothing recognisable yet (`chunks` data syscalls seen).
    Detecting {
        chunks: u32,
    },
    Http1(Box<Http1Connection>),
    Http2(Box<Http2Connection>),
    /// TLS records: ignored until (unless) the TLS probes deliver the plaintext. `directions`
    /// has bit 0 once records went out, bit 1 once records came in.
    Tls {
        directions: u8,
    },
    /// Neither HTTP/1 nor HTTP/2: ignored.
    Other,
}

pub struct Connection {
    pub sockets: SocketPair,
    /// The process using the socket (the last to open, read or write it: a server's forked
    /// child once it serves), its descriptor there, name and cgroup. Calls are named after it.
    pub tgid: u32,
    pub fd: i32,
    pub role: Role,
    pub protocol: Protocol,
    /// Monotonic ns of the last event.
    pub last_ts: u64,
    /// False when the agent did not see connect/accept (the connection predates it).
    pub seen_open: bool,
    pub comm: String,
    pub cgroup_id: u64,
    /// Thread of the first request syscall of the call in progress.
    pub thread_id: u32,
    /// Set once plaintext comes from a TLS library: from then on the syscall bytes of this
    /// connection are ciphertext and ignored.
    pub tls: Option<TlsLibrary>,
    /// The server name the client asked for in its TLS ClientHello (SNI), when seen.
    pub tls_server_name: Option<std::sync::Arc<str>>,
    /// What the TLS handshake showed of a client certificate (TLS connections only).
    pub handshake: Option<Box<crate::protocol::tls_handshake::HandshakeObserver>>,
}

/// Who owns a socket pair on this host (for naming the peer of a local call).
#[derive(Clone, Debug)]
pub struct Owner {
    pub tgid: u32,
    pub comm: String,
    pub cgroup_id: u64,
    /// Monotonic ns when the connection closed; `None` while open.
    pub closed_at: Option<u64>,
}

pub struct ConnTable {
    conns: HashMap<ConnKey, Connection>,
    owners: HashMap<SocketPair, Owner>,
    closed_owners: VecDeque<(SocketPair, u64)>,
    cap: usize,
}

/// How long a closed connection's owner stays known: the peer's call may complete after the
/// close (an HTTP/1.0 server closes before the client has read the response).
const OWNER_GRACE_NS: u64 = 10_000_000_000;

impl ConnTable {
    pub fn new(cap: usize) -> Self {
        Self {
            conns: HashMap::default(),
            owners: HashMap::default(),
            closed_owners: VecDeque::new(),
            cap,
        }
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    pub fn get(&self, key: &ConnKey) -> Option<&Connection> {
        self.conns.get(key)
    }

    pub fn get_mut(&mut self, key: &ConnKey) -> Option<&mut Connection> {
        self.conns.get_mut(key)
    }

    /// Whether the table is full (a new connection would need an eviction first).
    pub fn is_full(&self) -> bool {
        self.conns.len() >= self.cap
    }

    /// The least recently active connection, to evict at the cap.
    pub fn oldest(&self) -> Option<ConnKey> {
        self.conns
            .iter()
            .min_by_key(|(_, c)| c.last_ts)
            .map(|(k, _)| *k)
    }

    pub fn insert(&mut self, key: ConnKey, conn: Connection) {
        self.owners.insert(
            conn.sockets,
            Owner {
                tgid: conn.tgid,
                comm: conn.comm.clone(),
                cgroup_id: conn.cgroup_id,
                closed_at: None,
            },
        );
        self.conns.insert(key, conn);
    }

    /// Removes a connection; its owner stays known for a grace period.
    pub fn remove(&mut self, key: &ConnKey, now: u64) -> Option<Connection> {
        let conn = self.conns.remove(key)?;
        if let Some(owner) = self.owners.get_mut(&conn.sockets)
            && owner.tgid == conn.tgid
        {
            owner.closed_at = Some(now);
            self.closed_owners.push_back((conn.sockets, now));
        }
        Some(conn)
    }

    /// Keys of connections idle since before `cutoff`.
    pub fn idle_since(&self, cutoff: u64) -> Vec<ConnKey> {
        self.conns
            .iter()
            .filter(|(_, c)| c.last_ts < cutoff)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Keys of every connection a process was the last to use.
    pub fn of_process(&self, tgid: u32) -> Vec<ConnKey> {
        self.conns
            .iter()
            .filter(|(_, c)| c.tgid == tgid)
            .map(|(k, _)| *k)
            .collect()
    }

    /// `task` used the connection through `fd`: a process other than its last user (a forked
    /// child serving what its parent accepted) becomes the one its calls are named after, and
    /// the owner of its socket pair for the other end's calls. Returns the previous user when
    /// the new one has its command name (a forked child, unless it executed another program).
    pub fn touch(&mut self, key: &ConnKey, task: &Task, fd: i32) -> Option<u32> {
        let conn = self.conns.get_mut(key)?;
        conn.last_ts = task.ts_ns;
        conn.fd = fd;
        if conn.tgid == task.tgid {
            return None;
        }
        let previous = (conn.comm == task.comm).then_some(conn.tgid);
        conn.tgid = task.tgid;
        conn.comm.clone_from(&task.comm);
        conn.cgroup_id = task.cgroup_id;
        if let Some(owner) = self.owners.get_mut(&conn.sockets)
            && owner.closed_at.is_none()
        {
            owner.tgid = task.tgid;
            owner.comm.clone_from(&task.comm);
            owner.cgroup_id = task.cgroup_id;
        }
        previous
    }

    /// The local process at the other end of `sockets`, if any.
    pub fn peer_owner(&self, sockets: &SocketPair) -> Option<&Owner> {
        self.owners.get(&sockets.reversed())
    }

    /// Forgets owners of connections closed longer ago than the grace period.
    pub fn sweep_owners(&mut self, now: u64) {
        while let Some(&(sockets, at)) = self.closed_owners.front() {
            if now.saturating_sub(at) < OWNER_GRACE_NS && self.closed_owners.len() <= self.cap {
                break;
            }
            self.closed_owners.pop_front();
            if self.owners.get(&sockets).and_then(|o| o.closed_at) == Some(at) {
                self.owners.remove(&sockets);
            }
        }
    }
}
