//! The attach worker: a thread that finds TLS libraries in processes and attaches the uprobes,
//! once per library file (identified by device and inode), so that every process mapping the
//! file, now or later, in a container or not, is covered.
//!
//! Work arrives as requests: scan a process (it executed a program or mapped a library as
//! code), a process exited, or the tracker saw a TLS connection (for the coverage report).
//! Scans wait a short delay so that the dynamic loader's burst of mappings costs one scan;
//! each file is inspected once and the result cached, so a process spawning thousands of
//! children costs a /proc/PID/maps read per child, in arrival order, and cannot hold the others
//! back for long. A full rescan now and then recovers from dropped requests.

use std::{
    collections::{HashMap, HashSet},
    os::unix::fs::MetadataExt,
    path::PathBuf,
    sync::{
        Arc,
        mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use agent_common::event::TlsLibrary;
use aya::programs::uprobe::UProbeLinkId;

mod links;

use super::{
    coverage::{Coverage, LibraryReport, Report, Status, TlsObservation},
    elf::{self, Inspection, Unsupported},
    exec_hold::ExecHold,
    procmaps,
};
use crate::{probes::LoadedProbes, stats::Stats};

/// Work for the attach thread.
#[derive(Debug)]
pub enum Request {
    /// The process executed a program: its mappings are scanned at once (a short-lived
    /// program may be gone after the delay; once its file is inspected and probed, every later
    /// run of it is covered from its start).
    Exec(u32),
    /// Look at this process's mappings again.
    Scan(u32),
    Exited(u32),
    Observed(TlsObservation),
    /// A program file an exec is waiting on (`exec_hold`): inspected, and probed if it holds
    /// TLS code, before `reply` lets the exec go on.
    Hold {
        file: std::fs::File,
        id: FileId,
        reply: SyncSender<()>,
    },
}

#[derive(Clone, Debug)]
pub struct AttachConfig {
    pub proc_root: String,
    /// Where the coverage report is written (atomically), if anywhere.
    pub report_path: Option<PathBuf>,
    /// Wait this long after a request before scanning, to batch the loader's mappings.
    pub scan_delay: Duration,
    /// Every process is scanned again this often.
    pub rescan_interval: Duration,
    /// A library no process maps any more is detached after this long.
    pub detach_after: Duration,
    pub queue_len: usize,
    /// Hold the first exec of each program file until its TLS probes are attached
    /// (`exec_hold`), so that a short-lived program is captured from its first call.
    pub hold_execs: bool,
}

impl Default for AttachConfig {
    fn default() -> Self {
        Self {
            proc_root: "/proc".to_string(),
            report_path: None,
            scan_delay: Duration::from_millis(20),
            rescan_interval: Duration::from_secs(60),
            detach_after: Duration::from_secs(600),
            queue_len: 65_536,
            hold_execs: true,
        }
    }
}

/// How often the coverage report is refreshed (when it changed).
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Inspected files remembered; the cache is emptied beyond this.
const MAX_INSPECTED: usize = 16_384;
/// Processes remembered in the coverage report.
const MAX_COVERAGE_PROCESSES: usize = 8192;
/// Exited processes stay in the coverage report this long.
const COVERAGE_RETENTION: Duration = Duration::from_secs(600);

/// Handle on the attach thread. Dropping the sender (in `stop`) ends it; the thread owns the
/// loaded probes and detaches everything as it ends.
pub struct Attacher {
    requests: SyncSender<Request>,
    thread: JoinHandle<()>,
    stats: Arc<Stats>,
    statuses: Arc<TlsStatuses>,
    hold: Option<ExecHold>,
}

/// Each process's TLS coverage status as of the last report, for the exported metrics.
#[derive(Debug, Default)]
pub struct TlsStatuses {
    processes: std::sync::Mutex<Vec<(u32, String, Status)>>,
}

impl TlsStatuses {
    /// (pid, executable, status) of every process in the coverage report, exited ones excepted.
    pub fn snapshot(&self) -> Vec<(u32, String, Status)> {
        self.processes.lock().map(|p| p.clone()).unwrap_or_default()
    }

    fn publish(&self, report: &Report) {
        if let Ok(mut processes) = self.processes.lock() {
            *processes = report
                .processes
                .iter()
                .filter(|p| !p.exited)
                .map(|p| (p.pid, p.executable.clone(), p.status))
                .collect();
        }
    }
}

impl Attacher {
    /// Starts the thread and returns once every running process has been scanned once.
    pub fn start(
        probes: LoadedProbes,
        config: AttachConfig,
        stats: Arc<Stats>,
    ) -> std::io::Result<Self> {
        let (requests, receiver) = sync_channel(config.queue_len);
        let hold = config
            .hold_execs
            .then(|| start_hold(&config.proc_root, &requests, &stats))
            .flatten();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let worker_stats = stats.clone();
        let statuses = Arc::new(TlsStatuses::default());
        let worker_statuses = statuses.clone();
        let thread = std::thread::Builder::new()
            .name("sightline-tls".to_string())
            .spawn(move || {
                let mut worker = Worker::new(probes, config, worker_stats, worker_statuses);
                worker.scan_all();
                let _ = ready_tx.send(());
                worker.run(receiver);
            })?;
        let _ = ready_rx.recv();
        Ok(Self {
            requests,
            thread,
            stats,
            statuses,
            hold,
        })
    }

    /// The processes' TLS statuses, updated by the attach thread.
    pub fn statuses(&self) -> Arc<TlsStatuses> {
        self.statuses.clone()
    }

    /// Queues a request; a full queue drops it (counted) and the next full rescan catches up.
    pub fn send(&self, request: Request) {
        if let Err(TrySendError::Full(_)) = self.requests.try_send(request) {
            Stats::inc(&self.stats.tls_requests_dropped);
        }
    }

    /// Ends the thread, which detaches every probe (execs are let go first).
    pub fn stop(self) {
        if let Some(hold) = self.hold {
            hold.stop();
        }
        drop(self.requests);
        let _ = self.thread.join();
    }
}

/// Uprobe attachments, with the program each belongs to.
type Links = Vec<(&'static str, UProbeLinkId)>;

/// A file as uprobes see it: they attach to the real inode under any overlay. Its inode
/// number, size and change time (a file rewritten in place is inspected again), and no device
/// number: every container's overlay of an image has a device of its own but shows the layer
/// file's inode number and times (layers on one filesystem, the Docker and containerd default),
/// and a process's mapping (`map_files`) leads to the layer file itself. With the device, each
/// container of an image attached the same probes again and its calls were reported twice or
/// more. Two files on different filesystems would have to share inode number, size and change
/// time to the nanosecond to be taken for one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    ino: u64,
    size: u64,
    ctime_ns: i64,
}

struct AttachedFile {
    library: TlsLibrary,
    /// The path the file was first found at, as its process saw it.
    path: String,
    links: Links,
    error: Option<String>,
    users: HashSet<u32>,
    unused_since: Option<Instant>,
}

struct Worker {
    probes: LoadedProbes,
    config: AttachConfig,
    stats: Arc<Stats>,
    inspected: HashMap<FileId, Arc<Inspection>>,
    attached: HashMap<FileId, AttachedFile>,
    /// Attached files each process maps.
    process_files: HashMap<u32, Vec<FileId>>,
    /// BIO probes attached for one process only (processes that use SSL BIOs), by file.
    process_links: HashMap<u32, Vec<(FileId, Links)>>,
    /// Processes to scan, with when.
    due: HashMap<u32, Instant>,
    /// Processes asked for and not scanned yet, with when they were first asked for.
    pending: HashMap<u32, Instant>,
    coverage: Coverage,
    statuses: Arc<TlsStatuses>,
    own_pid: u32,
}

impl Worker {
    fn new(
        probes: LoadedProbes,
        config: AttachConfig,
        stats: Arc<Stats>,
        statuses: Arc<TlsStatuses>,
    ) -> Self {
        Self {
            probes,
            config,
            stats,
            inspected: HashMap::new(),
            attached: HashMap::new(),
            process_files: HashMap::new(),
            process_links: HashMap::new(),
            due: HashMap::new(),
            pending: HashMap::new(),
            coverage: Coverage::new(MAX_COVERAGE_PROCESSES, COVERAGE_RETENTION),
            statuses,
            own_pid: std::process::id(),
        }
    }

    fn run(&mut self, requests: Receiver<Request>) {
        let mut next_report = Instant::now();
        let mut next_rescan = Instant::now() + self.config.rescan_interval;
        loop {
            let now = Instant::now();
            let next_due = self.due.values().min().copied();
            let wake = [Some(next_report), Some(next_rescan), next_due]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(now);
            match requests.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(request) => {
                    self.handle(request);
                    // Take what else is queued before scanning: a burst (an exec storm) then
                    // costs one pass, not one pass per request.
                    while let Ok(request) = requests.try_recv() {
                        self.handle(request);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            self.scan_due(now);
            if now >= next_rescan {
                self.scan_all();
                self.detach_unused(now);
                next_rescan = now + self.config.rescan_interval;
            }
            if now >= next_report {
                self.coverage.sweep(now);
                self.write_report();
                next_report = now + REPORT_INTERVAL;
            }
        }
        self.write_report();
        tracing::debug!(files = self.attached.len(), "detaching TLS probes");
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::Exec(pid) => {
                self.asked_for(pid);
                self.due.insert(pid, Instant::now());
            }
            Request::Scan(pid) => {
                self.asked_for(pid);
                let at = Instant::now() + self.config.scan_delay;
                self.due.entry(pid).or_insert(at);
            }
            Request::Exited(pid) => {
                self.due.remove(&pid);
                self.unscanned(pid);
                self.forget_process(pid);
                self.detach_process_links(pid);
                self.coverage.exited(pid, Instant::now());
            }
            Request::Observed(observation) => self.coverage.observe(observation),
            Request::Hold { file, id, reply } => {
                self.settle_held(file, id);
                let _ = reply.try_send(());
            }
        }
    }

    /// Inspects a file an exec waits on and attaches to it if it holds TLS code: the process
    /// will map a probed file. Its scan (the exec event) follows as for any process.
    fn settle_held(&mut self, file: std::fs::File, id: FileId) {
        let opened = procmaps::OpenedFile::from_file(file);
        let shown = std::fs::read_link(opened.path())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Inspection::Tls { .. } = &*self.inspection(id, &opened, &shown) {
            self.attach(id, &shown, opened.path());
        }
    }

    /// Notes when a process was first asked to be scanned (bounded like the queue).
    fn asked_for(&mut self, pid: u32) {
        if self.pending.len() < self.config.queue_len {
            self.pending.entry(pid).or_insert_with(Instant::now);
        }
    }

    /// A process asked for is gone before its scan: counted, and said in the TLS report
    /// should its connections show up.
    fn unscanned(&mut self, pid: u32) {
        if let Some(asked) = self.pending.remove(&pid) {
            Stats::inc(&self.stats.tls_exited_before_scan);
            self.coverage.exited_unscanned(pid, asked.elapsed());
        }
    }

    fn scan_due(&mut self, now: Instant) {
        let mut ready: Vec<(Instant, u32)> = self
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(pid, at)| (*at, *pid))
            .collect();
        ready.sort();
        for (_, pid) in ready {
            self.due.remove(&pid);
            self.scan(pid);
        }
    }

    fn scan_all(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.config.proc_root) else {
            return;
        };
        let pids: Vec<u32> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        for pid in pids {
            self.scan(pid);
        }
    }

    /// Reads the process's code mappings, attaches to new TLS libraries, updates coverage.
    fn scan(&mut self, pid: u32) {
        if pid == self.own_pid {
            return;
        }
        let proc_root = self.config.proc_root.clone();
        let Ok(files) = procmaps::executable_files(&proc_root, pid) else {
            // Gone already, or a kernel thread.
            self.unscanned(pid);
            return;
        };
        let asked = self.pending.remove(&pid);
        Stats::inc(&self.stats.tls_process_scans);
        let mut mapped = Vec::new();
        let mut unsupported: Option<Unsupported> = None;
        let mut uses_ssl_bio = false;
        let mut bio_files = Vec::new();
        let mut newly_probed = false;
        for file in &files {
            // The very file mapped (else looked up inside the process's root): nothing a
            // container puts at the path leads the agent elsewhere.
            let Ok(opened) = file.open(&proc_root, pid) else {
                continue;
            };
            let Some(id) = FileId::of(opened.file()) else {
                continue;
            };
            match &*self.inspection(id, &opened, &file.path) {
                Inspection::Tls { bio_points, .. } => {
                    newly_probed |= !self.attached.contains_key(&id);
                    self.attach(id, &file.path, opened.path());
                    mapped.push(id);
                    if !bio_points.is_empty() {
                        bio_files.push((id, opened));
                    }
                }
                Inspection::SslBioUser => uses_ssl_bio = true,
                Inspection::Unsupported(kind) => unsupported = unsupported.or(Some(*kind)),
                Inspection::None => {}
            }
        }
        if uses_ssl_bio {
            for (id, opened) in bio_files {
                self.attach_for_process(pid, id, opened.path());
            }
        }
        self.forget_process(pid);
        let mut libraries = Vec::new();
        for id in &mapped {
            if let Some(file) = self.attached.get_mut(id) {
                file.users.insert(pid);
                file.unused_since = None;
                libraries.push(LibraryReport {
                    library: file.library.name().to_string(),
                    path: file.path.clone(),
                    attached: file.error.is_none(),
                    error: file.error.clone(),
                });
            }
        }
        self.process_files.insert(pid, mapped);
        let executable = executable_name(&proc_root, pid);
        // Probes attached by this scan cover what the process does from now on only (a file
        // probed before is covered from the process's start).
        let probed_after = asked.filter(|_| newly_probed).map(|at| at.elapsed());
        self.coverage
            .scanned(pid, executable, libraries, unsupported, probed_after);
    }

    /// What the file holds, inspected once per file (`shown`: its path in the process).
    fn inspection(
        &mut self,
        id: FileId,
        file: &procmaps::OpenedFile,
        shown: &str,
    ) -> Arc<Inspection> {
        if let Some(known) = self.inspected.get(&id) {
            return known.clone();
        }
        let result = match elf::inspect_opened(file.file(), std::path::Path::new(shown)) {
            Ok(inspection) => inspection,
            Err(error) => {
                tracing::debug!(%error, "not inspectable");
                Inspection::None
            }
        };
        if self.inspected.len() >= MAX_INSPECTED {
            self.inspected.clear();
        }
        Stats::inc(&self.stats.tls_files_inspected);
        let result = Arc::new(result);
        self.inspected.insert(id, result.clone());
        result
    }

    /// Publishes the coverage (for the metrics) and writes the report file, when it changed.
    fn write_report(&mut self) {
        if !self.coverage.take_dirty() {
            return;
        }
        let written_at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let report = self.coverage.report(self.own_pid, written_at);
        self.statuses.publish(&report);
        let Some(path) = &self.config.report_path else {
            return;
        };
        if let Err(error) = super::report::write_atomically(path, &report) {
            tracing::warn!(path = %path.display(), %error, "writing the TLS coverage report failed");
        }
    }
}

impl FileId {
    /// The identity of an open regular file (none for anything else).
    pub fn of(file: &std::fs::File) -> Option<Self> {
        let meta = file.metadata().ok()?;
        meta.is_file().then(|| Self {
            ino: meta.ino(),
            size: meta.len(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        })
    }
}

/// Starts holding execs; without it (no fanotify permission events, no CAP_SYS_ADMIN) new
/// programs are probed after they start, as the TLS report then says of the ones missed.
fn start_hold(
    proc_root: &str,
    requests: &SyncSender<Request>,
    stats: &Arc<Stats>,
) -> Option<ExecHold> {
    ExecHold::start(proc_root, requests.clone(), stats.clone())
        .inspect_err(|error| {
            tracing::warn!(
                %error,
                "new programs are not held at exec (fanotify): a short-lived one may be probed after its first calls"
            );
        })
        .ok()
}

/// The process's executable file name, or its command name when the link is unreadable.
fn executable_name(proc_root: &str, pid: u32) -> String {
    std::fs::read_link(format!("{proc_root}/{pid}/exe"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| {
            std::fs::read_to_string(format!("{proc_root}/{pid}/comm"))
                .ok()
                .map(|s| s.trim_end().to_string())
        })
        .unwrap_or_default()
}
