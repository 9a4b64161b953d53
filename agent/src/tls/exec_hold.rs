//! Holds the first exec of each program file until the attach thread has inspected it and,
//! when it holds TLS code, attached the uprobes: a short-lived client (a CLI, a cron job, a
//! Kubernetes Job) from a file the agent has never seen is then captured from its first call.
//!
//! Why a hold: a file's first uprobe waits for an RCU grace period in the kernel
//! (`uprobe_register` takes `dup_mmap_sem` for writing), ~10 ms measured here, and a Go client
//! makes its first call ~6 ms after its exec; however fast the inspection, the probes landed
//! after the call. fanotify's `FAN_OPEN_EXEC_PERM` makes the kernel wait for the agent's answer
//! before an exec opens its file.
//!
//! The answer is always "allow": at once for a file answered before (a set lookup), else when
//! the attach thread has dealt with the file or after [`HOLD_BUDGET`], whichever comes first.
//! Should the agent stop or die, the kernel closes the group and lets every waiting exec go.

use std::{
    collections::HashSet,
    os::fd::AsFd,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{RecvTimeoutError, SyncSender, TrySendError, sync_channel},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    poll::{PollFd, PollFlags, poll},
    sys::fanotify::{
        EventFFlags, Fanotify, FanotifyEvent, FanotifyResponse, InitFlags, MarkFlags, MaskFlags,
        Response,
    },
};

use super::attacher::{FileId, Request};
use crate::stats::Stats;

/// Longest an exec waits for the attach thread (busy with a full rescan, or attaching to a file
/// whose previous probes are still being released, which was seen taking ~370 ms); then it goes
/// on and the file is probed by the usual scan, late for that run. Counted.
pub const HOLD_BUDGET: Duration = Duration::from_millis(500);
/// How often the mounted filesystems are read again for new ones (a container's root).
const MARK_INTERVAL: Duration = Duration::from_secs(2);
/// Files answered before, remembered (emptied beyond this: the next exec of each asks again).
const MAX_KNOWN: usize = 16_384;
/// Files the kernel is told to stop asking about (an ignore mark on the inode): an exec of a
/// known file then makes no event at all instead of a round trip through this thread (500 execs
/// of /bin/true: 2 events, for /bin/true and the dynamic loader). Each mark keeps its inode in
/// the kernel's memory, hence a bound; past it, a set lookup answers.
const MAX_IGNORE_MARKS: usize = 4_096;
/// Filesystems that hold no programs, and network or user-space ones where reading a file
/// could wait on a server or a daemon while an exec is held.
const SKIPPED_FILESYSTEMS: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "devtmpfs",
    "mqueue",
    "debugfs",
    "tracefs",
    "bpf",
    "securityfs",
    "pstore",
    "configfs",
    "fusectl",
    "hugetlbfs",
    "autofs",
    "binfmt_misc",
    "nsfs",
    "efivarfs",
    "rpc_pipefs",
    "selinuxfs",
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "9p",
    "ceph",
    "virtiofs",
];

/// Handle on the hold thread; `stop` ends it (and with it every mark).
pub struct ExecHold {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl ExecHold {
    /// Marks the host's filesystems and starts answering. An error (no CAP_SYS_ADMIN, a kernel
    /// without fanotify permission events) leaves the caller to run without the hold.
    pub fn start(
        proc_root: &str,
        requests: SyncSender<Request>,
        stats: Arc<Stats>,
    ) -> Result<Self, Errno> {
        let group = Fanotify::init(
            InitFlags::FAN_CLASS_CONTENT | InitFlags::FAN_CLOEXEC | InitFlags::FAN_NONBLOCK,
            EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC,
        )?;
        let mut marks = Marks::new(proc_root);
        let marked = marks.refresh(&group);
        if marked == 0 {
            return Err(Errno::ENOENT);
        }
        tracing::info!(
            filesystems = marked,
            "new programs are held at exec until their TLS probes are attached"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sightline-hold".to_string())
            .spawn(move || {
                Holder {
                    group,
                    marks,
                    requests,
                    stats,
                    known: HashSet::new(),
                    ignore_marks: 0,
                    detached_seen: 0,
                }
                .run(&thread_stop)
            })
            .map_err(|_| Errno::EAGAIN)?;
        Ok(Self { stop, thread })
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

struct Holder {
    group: Fanotify,
    marks: Marks,
    requests: SyncSender<Request>,
    stats: Arc<Stats>,
    known: HashSet<FileId>,
    ignore_marks: usize,
    /// `tls_files_detached` when the ignore marks were last flushed.
    detached_seen: u64,
}

impl Holder {
    fn run(mut self, stop: &AtomicBool) {
        let mut next_marks = Instant::now() + MARK_INTERVAL;
        while !stop.load(Ordering::Relaxed) {
            self.forget_detached();
            if Instant::now() >= next_marks {
                self.marks.refresh(&self.group);
                next_marks = Instant::now() + MARK_INTERVAL;
            }
            let mut fds = [PollFd::new(self.group.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, 200u16).unwrap_or(0) == 0 {
                continue;
            }
            match self.group.read_events() {
                Ok(events) => events.into_iter().for_each(|event| self.answer(event)),
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(error) => {
                    tracing::warn!(%error, "reading exec events failed; programs are no longer held");
                    return;
                }
            }
        }
    }

    /// Lets the exec go, once the file is known to the attach thread (or the budget is spent).
    fn answer(&mut self, event: FanotifyEvent) {
        let Some(fd) = event.fd() else {
            return; // A queue overflow: permission events are never dropped, nothing waits.
        };
        // The only events marked for are FAN_OPEN_EXEC_PERM.
        self.settle(&event);
        if let Err(error) = self
            .group
            .write_response(FanotifyResponse::new(fd, Response::FAN_ALLOW))
        {
            tracing::debug!(%error, "answering an exec event failed");
        }
    }

    /// Asks the attach thread about a file not answered before and waits for it.
    fn settle(&mut self, event: &FanotifyEvent) {
        let Some(file) = event
            .fd()
            .and_then(|fd| fd.try_clone_to_owned().ok())
            .map(std::fs::File::from)
        else {
            return;
        };
        let Some(id) = FileId::of(&file) else {
            return;
        };
        if self.known.contains(&id) {
            return;
        }
        Stats::inc(&self.stats.tls_execs_held);
        let (reply, replied) = sync_channel(1);
        match self.requests.try_send(Request::Hold { file, id, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                Stats::inc(&self.stats.tls_requests_dropped);
                return;
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
        match replied.recv_timeout(HOLD_BUDGET) {
            Ok(()) => {
                if self.known.len() >= MAX_KNOWN {
                    self.known.clear();
                }
                self.known.insert(id);
                self.stop_asking(event);
            }
            Err(RecvTimeoutError::Timeout) => Stats::inc(&self.stats.tls_exec_hold_timeouts),
            Err(RecvTimeoutError::Disconnected) => {}
        }
    }

    /// Once the attach thread has detached a file's probes, its next exec must be held again:
    /// every ignore mark is flushed (each known file then costs one more round trip).
    fn forget_detached(&mut self) {
        let detached = self.stats.tls_files_detached.load(Ordering::Relaxed);
        if detached == self.detached_seen {
            return;
        }
        self.detached_seen = detached;
        self.known.clear();
        self.ignore_marks = 0;
        let flush = self.group.mark(
            MarkFlags::FAN_MARK_FLUSH,
            MaskFlags::empty(),
            self.group.as_fd(),
            None::<&str>,
        );
        if let Err(error) = flush {
            tracing::debug!(%error, "exec ignore marks not flushed");
        }
    }

    /// Tells the kernel not to hold execs of this file any more (until it is modified: the
    /// ignore mark goes with a write, and the rewritten file is inspected again).
    fn stop_asking(&mut self, event: &FanotifyEvent) {
        let Some(fd) = event.fd() else { return };
        if self.ignore_marks >= MAX_IGNORE_MARKS {
            return;
        }
        let flags = MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_IGNORED_MASK;
        match self
            .group
            .mark(flags, MaskFlags::FAN_OPEN_EXEC_PERM, fd, None::<&str>)
        {
            Ok(()) => self.ignore_marks += 1,
            Err(error) => tracing::debug!(%error, "exec ignore mark not added"),
        }
    }
}

/// The filesystems marked, by device and mount point as the host's mount table shows them.
struct Marks {
    /// The mount table read, and the prefix that leads to its mount points from the agent.
    table: String,
    root: String,
    marked: HashSet<(String, String)>,
}

impl Marks {
    /// The host's mounts (pid 1's, through its root), else where pid 1's root cannot be
    /// opened (a sandbox), the agent's own.
    fn new(proc_root: &str) -> Self {
        let host_root = format!("{proc_root}/1/root");
        let (table, root) = if std::fs::File::open(format!("{host_root}/")).is_ok() {
            (format!("{proc_root}/1/mountinfo"), host_root)
        } else {
            ("/proc/self/mountinfo".to_string(), String::new())
        };
        Self {
            table,
            root,
            marked: HashSet::new(),
        }
    }

    /// Marks every program-holding filesystem of the mount table not marked yet; returns how
    /// many are marked. A device number reused by a new mount elsewhere is a new entry, so a
    /// new container root is marked even if an old one had its number.
    fn refresh(&mut self, group: &Fanotify) -> usize {
        let Ok(text) = std::fs::read_to_string(&self.table) else {
            return self.marked.len();
        };
        let current = program_filesystems(&text);
        self.marked.retain(|entry| current.contains(entry));
        for (device, mount_point) in current {
            if self.marked.contains(&(device.clone(), mount_point.clone())) {
                continue;
            }
            let path = format!("{}{mount_point}", self.root);
            let marked = std::fs::File::open(&path)
                .map_err(|e| Errno::try_from(e).unwrap_or(Errno::EIO))
                .and_then(|dir| {
                    let flags = MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_FILESYSTEM;
                    group.mark(flags, MaskFlags::FAN_OPEN_EXEC_PERM, &dir, None::<&str>)
                });
            match marked {
                Ok(()) => {
                    self.marked.insert((device, mount_point));
                }
                Err(error) => tracing::debug!(%path, %error, "filesystem not marked for execs"),
            }
        }
        self.marked.len()
    }
}

/// (device, mount point) of each filesystem in a mountinfo text that can hold programs, the
/// first mount of each device only (a mark covers the whole filesystem).
fn program_filesystems(mountinfo: &str) -> HashSet<(String, String)> {
    let mut devices = HashSet::new();
    let mut found = HashSet::new();
    for line in mountinfo.lines() {
        // id parent major:minor root mount-point options [optional...] - type source super
        let mut fields = line.split(' ').skip(2);
        let (Some(device), Some(mount_point)) = (fields.next(), fields.nth(1)) else {
            continue;
        };
        let Some(fs_type) = line.split(" - ").nth(1).and_then(|s| s.split(' ').next()) else {
            continue;
        };
        if SKIPPED_FILESYSTEMS.contains(&fs_type)
            || fs_type.starts_with("fuse")
            || mount_point.contains('\\')
        {
            continue;
        }
        if devices.insert(device) {
            found.insert((device.to_string(), mount_point.to_string()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_filesystems_skip_pseudo_and_network_ones_and_repeat_devices() {
        let table = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
23 22 0:21 / /proc rw,nosuid shared:12 - proc proc rw
24 22 0:22 / /sys rw shared:2 - sysfs sysfs rw
25 22 0:5 / /dev rw shared:3 - devtmpfs udev rw
26 22 0:25 / /run rw shared:4 - tmpfs tmpfs rw
27 22 254:0 /var/lib/x /mnt/bind rw shared:1 - ext4 /dev/vda rw
28 22 0:50 / /var/lib/containerd/rootfs rw - overlay overlay rw,lowerdir=a
29 22 0:51 / /mnt/nfs rw - nfs4 server:/x rw
30 22 0:52 / /mnt/fuse rw - fuse.sshfs a rw
31 22 0:53 / /mnt/with\\040space rw - ext4 /dev/vdb rw";
        let mut found: Vec<_> = program_filesystems(table).into_iter().collect();
        found.sort();
        assert_eq!(
            found,
            [
                ("0:25".to_string(), "/run".to_string()),
                ("0:50".to_string(), "/var/lib/containerd/rootfs".to_string()),
                ("254:0".to_string(), "/".to_string()),
            ]
        );
    }
}
