//! Which socket each process's descriptor names, as far as the events tell. Connections are
//! keyed by socket, so a lost close event (a full ring buffer) would leave a connection open
//! until its process exits, and its unanswered request would then be reported as cut by the
//! close. A descriptor that names another socket now tells what the lost event would have:
//! this process closed the previous one. Bounded: past the cap new descriptors are not
//! remembered (that only loses this repair, for them).

// Keys are process and descriptor numbers, not chosen by traffic: a fast hash is safe here.
use foldhash::HashMap;

use crate::capture::event::SocketId;

pub struct Descriptors {
    by_process: HashMap<u32, HashMap<i32, SocketId>>,
    len: usize,
    cap: usize,
}

impl Descriptors {
    pub fn new(cap: usize) -> Self {
        Self {
            by_process: HashMap::default(),
            len: 0,
            cap,
        }
    }

    /// Process `tgid`'s descriptor `fd` names `socket`; returns the other socket it named
    /// before, whose close was not seen.
    pub fn name(&mut self, tgid: u32, fd: i32, socket: SocketId) -> Option<SocketId> {
        if let Some(known) = self
            .by_process
            .get_mut(&tgid)
            .and_then(|fds| fds.get_mut(&fd))
        {
            return (*known != socket).then(|| std::mem::replace(known, socket));
        }
        if self.len < self.cap {
            self.by_process.entry(tgid).or_default().insert(fd, socket);
            self.len += 1;
        }
        None
    }

    /// The descriptor was closed (the socket's end, or one of its descriptors).
    pub fn closed(&mut self, tgid: u32, fd: i32) {
        if let Some(fds) = self.by_process.get_mut(&tgid)
            && fds.remove(&fd).is_some()
        {
            self.len -= 1;
            if fds.is_empty() {
                self.by_process.remove(&tgid);
            }
        }
    }

    /// The process exited: all its descriptors are gone.
    pub fn exited(&mut self, tgid: u32) {
        if let Some(fds) = self.by_process.remove(&tgid) {
            self.len -= fds.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_descriptor_naming_another_socket_gives_the_one_whose_close_was_lost() {
        let mut fds = Descriptors::new(2);
        assert_eq!(fds.name(1, 5, SocketId(10)), None);
        assert_eq!(fds.name(1, 5, SocketId(10)), None);
        assert_eq!(fds.name(1, 5, SocketId(11)), Some(SocketId(10)));
        // Closed (or shared-closed) first: the next socket on it is no surprise.
        fds.closed(1, 5);
        assert_eq!(fds.name(1, 5, SocketId(12)), None);
        // Another process's descriptor of the same number is its own.
        assert_eq!(fds.name(2, 5, SocketId(13)), None);
        // At the cap, new descriptors are not remembered; an exit frees its entries.
        assert_eq!(fds.name(3, 5, SocketId(14)), None);
        assert_eq!(fds.name(3, 5, SocketId(15)), None);
        fds.exited(1);
        assert_eq!(fds.name(3, 5, SocketId(14)), None);
        assert_eq!(fds.name(3, 5, SocketId(15)), Some(SocketId(14)));
    }
}
