//! TLS coverage: for each process, which TLS libraries are probed, how many of its TLS
//! connections had their plaintext captured, and why not when they did not. Written by the
//! agent as a JSON report that `sightline tls` prints.

use std::{
    collections::{BTreeSet, HashMap},
    time::{Duration, Instant},
};

use agent_common::event::TlsLibrary;
use serde::{Deserialize, Serialize};

use super::elf::Unsupported;
use crate::capture::event::SocketPair;

/// What the tracker learned about one connection of a process.
#[derive(Clone, Debug)]
pub struct TlsObservation {
    pub tgid: u32,
    pub comm: String,
    pub fd: i32,
    pub sockets: SocketPair,
    /// `Some` once plaintext came from this library; `None` when only TLS records were seen.
    pub plaintext: Option<TlsLibrary>,
}

/// A TLS library found in a process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibraryReport {
    pub library: String,
    /// The file, as the process sees it.
    pub path: String,
    pub attached: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every TLS connection seen had its plaintext captured.
    Captured,
    /// Some did, some did not.
    Partial,
    /// TLS connections seen, no plaintext captured.
    NotCaptured,
    /// A TLS library is probed; no TLS connection seen yet.
    Ready,
    /// A TLS implementation the probes cannot see; no TLS connection seen yet.
    Unsupported,
}

impl Status {
    /// As in the report (snake case).
    pub fn name(self) -> &'static str {
        match self {
            Self::Captured => "captured",
            Self::Partial => "partial",
            Self::NotCaptured => "not_captured",
            Self::Ready => "ready",
            Self::Unsupported => "unsupported",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcessReport {
    pub pid: u32,
    pub executable: String,
    pub exited: bool,
    pub status: Status,
    pub libraries: Vec<LibraryReport>,
    /// Libraries the captured plaintext came from.
    pub captured_by: Vec<String>,
    pub tls_connections: u64,
    pub captured_connections: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub agent_pid: u32,
    pub written_at_unix_ms: u64,
    pub processes: Vec<ProcessReport>,
}

/// Connections remembered per process: beyond this, new ones are not counted.
const MAX_CONNECTIONS_PER_PROCESS: usize = 4096;

#[derive(Default)]
struct ProcessState {
    executable: String,
    libraries: Vec<LibraryReport>,
    unsupported: Option<Unsupported>,
    /// Connection -> whether its plaintext was captured.
    connections: HashMap<(i32, SocketPair), bool>,
    captured_by: BTreeSet<&'static str>,
    exited_at: Option<Instant>,
    /// How long after it was first asked for the process exited unscanned.
    unscanned_for: Option<Duration>,
    /// How long after the agent saw it start its TLS libraries were first probed.
    probed_after: Option<Duration>,
}

/// The coverage of every process of interest, bounded.
pub struct Coverage {
    processes: HashMap<u32, ProcessState>,
    /// Processes that exited before their scan, with how long after they were asked for, and
    /// when: kept for the retention, in case their TLS connections are reported after.
    unscanned: HashMap<u32, (Duration, Instant)>,
    max_processes: usize,
    /// How long an exited process stays in the report.
    retention: Duration,
    dirty: bool,
}

impl Coverage {
    pub fn new(max_processes: usize, retention: Duration) -> Self {
        Self {
            processes: HashMap::new(),
            unscanned: HashMap::new(),
            max_processes,
            retention,
            dirty: true,
        }
    }

    /// Records what a scan of the process's mappings found. Processes with nothing TLS are
    /// only kept once a TLS connection of theirs is seen.
    pub fn scanned(
        &mut self,
        pid: u32,
        executable: String,
        libraries: Vec<LibraryReport>,
        unsupported: Option<Unsupported>,
        probed_after: Option<Duration>,
    ) {
        if libraries.is_empty() && unsupported.is_none() && !self.processes.contains_key(&pid) {
            return;
        }
        let Some(state) = self.entry(pid) else { return };
        if state.probed_after.is_none() && !libraries.is_empty() {
            state.probed_after = probed_after;
        }
        if state.executable != executable
            || state.libraries != libraries
            || state.unsupported != unsupported
        {
            state.executable = executable;
            state.libraries = libraries;
            state.unsupported = unsupported;
            self.dirty = true;
        }
    }

    pub fn observe(&mut self, observation: TlsObservation) {
        let Some(state) = self.entry(observation.tgid) else {
            return;
        };
        if state.executable.is_empty() {
            state.executable = observation.comm;
        }
        let key = (observation.fd, observation.sockets);
        let captured = observation.plaintext.is_some();
        if let Some(library) = observation.plaintext {
            state.captured_by.insert(library.name());
        }
        let room = state.connections.len() < MAX_CONNECTIONS_PER_PROCESS;
        let changed = match state.connections.get_mut(&key) {
            Some(known) => {
                let upgraded = captured && !*known;
                *known |= captured;
                upgraded
            }
            None if room => {
                state.connections.insert(key, captured);
                true
            }
            None => false,
        };
        self.dirty |= changed;
    }

    /// The process exited `after` it was first asked to be scanned, before it could be.
    pub fn exited_unscanned(&mut self, pid: u32, after: Duration) {
        if let Some(state) = self.processes.get_mut(&pid) {
            state.unscanned_for = Some(after);
            self.dirty = true;
        } else if self.unscanned.len() < self.max_processes {
            self.unscanned.insert(pid, (after, Instant::now()));
        }
    }

    pub fn exited(&mut self, pid: u32, now: Instant) {
        if let Some(state) = self.processes.get_mut(&pid) {
            state.exited_at = Some(now);
            self.dirty = true;
        }
    }

    /// Forgets processes that exited longer ago than the retention.
    pub fn sweep(&mut self, now: Instant) {
        let retention = self.retention;
        self.unscanned
            .retain(|_, (_, at)| now.duration_since(*at) < retention);
        let before = self.processes.len();
        self.processes.retain(|_, s| {
            s.exited_at
                .is_none_or(|at| now.duration_since(at) < retention)
        });
        self.dirty |= self.processes.len() != before;
    }

    /// Whether something changed since the last `take_dirty`.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    pub fn report(&self, agent_pid: u32, written_at_unix_ms: u64) -> Report {
        let mut processes: Vec<ProcessReport> = self
            .processes
            .iter()
            .map(|(pid, state)| process_report(*pid, state))
            .collect();
        processes.sort_by_key(|p| p.pid);
        Report {
            agent_pid,
            written_at_unix_ms,
            processes,
        }
    }

    /// The process's state, making room (oldest exited first, else any) when full.
    fn entry(&mut self, pid: u32) -> Option<&mut ProcessState> {
        if !self.processes.contains_key(&pid) && self.processes.len() >= self.max_processes {
            let victim = self
                .processes
                .iter()
                .filter_map(|(pid, s)| s.exited_at.map(|at| (at, *pid)))
                .min()
                .map(|(_, pid)| pid)?;
            self.processes.remove(&victim);
        }
        let unscanned = &mut self.unscanned;
        Some(self.processes.entry(pid).or_insert_with(|| ProcessState {
            unscanned_for: unscanned.remove(&pid).map(|(after, _)| after),
            ..ProcessState::default()
        }))
    }
}

fn process_report(pid: u32, state: &ProcessState) -> ProcessReport {
    let tls_connections = state.connections.len() as u64;
    let captured_connections = state.connections.values().filter(|c| **c).count() as u64;
    let attached = state.libraries.iter().any(|l| l.attached);
    let status = match (tls_connections, captured_connections) {
        (0, _) if attached => Status::Ready,
        (0, _) => Status::Unsupported,
        (n, c) if c == n => Status::Captured,
        (_, 0) => Status::NotCaptured,
        _ => Status::Partial,
    };
    let reason = match status {
        Status::Captured | Status::Ready => None,
        _ => Some(reason(state)),
    };
    ProcessReport {
        pid,
        executable: state.executable.clone(),
        exited: state.exited_at.is_some(),
        status,
        libraries: state.libraries.clone(),
        captured_by: state.captured_by.iter().map(|s| s.to_string()).collect(),
        tls_connections,
        captured_connections,
        reason,
    }
}

/// Why TLS connections of a process were not captured, most specific first.
fn reason(state: &ProcessState) -> String {
    if let Some(unsupported) = state.unsupported {
        return unsupported.reason().to_string();
    }
    if let Some(failed) = state.libraries.iter().find(|l| l.error.is_some()) {
        return format!(
            "attaching to {} ({}) failed: {}",
            failed.library,
            failed.path,
            failed.error.as_deref().unwrap_or_default()
        );
    }
    if let Some(after) = state.unscanned_for
        && state.libraries.is_empty()
    {
        return format!(
            "exited {} ms after the agent saw it start, before its TLS libraries could be probed",
            after.as_millis()
        );
    }
    if state.libraries.iter().any(|l| l.attached) {
        let outside = "TLS done outside the probed libraries (linked in without symbols, or \
                       another library)";
        return match state.probed_after {
            Some(after) => format!(
                "probed {} ms after the agent saw it start: what it sent before was missed \
                 (else: {outside})",
                after.as_millis()
            ),
            _ => outside.to_string(),
        };
    }
    "no known TLS library in the process (TLS linked in without symbols, or an unknown library)"
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sockets(port: u16) -> SocketPair {
        SocketPair {
            local: format!("127.0.0.1:{port}").parse().unwrap(),
            remote: "127.0.0.1:443".parse().unwrap(),
        }
    }

    fn seen(tgid: u32, port: u16, plaintext: Option<TlsLibrary>) -> TlsObservation {
        TlsObservation {
            tgid,
            comm: "proc".to_string(),
            fd: 3,
            sockets: sockets(port),
            plaintext,
        }
    }

    fn openssl(attached: bool) -> Vec<LibraryReport> {
        vec![LibraryReport {
            library: "openssl".to_string(),
            path: "/usr/lib/libssl.so.3".to_string(),
            attached,
            error: None,
        }]
    }

    #[test]
    fn statuses_follow_what_was_seen() {
        let mut c = Coverage::new(100, Duration::from_secs(60));
        c.scanned(1, "curl".into(), openssl(true), None, None);
        c.scanned(2, "java".into(), vec![], Some(Unsupported::Java), None);
        c.scanned(3, "bash".into(), vec![], None, None);
        c.observe(seen(1, 1000, None));
        c.observe(seen(1, 1000, Some(TlsLibrary::OpenSsl)));
        c.observe(seen(2, 1001, None));
        c.observe(seen(4, 1002, None));
        c.observe(seen(4, 1003, Some(TlsLibrary::GoCryptoTls)));
        let report = c.report(9, 0);
        let by_pid = |pid| report.processes.iter().find(|p| p.pid == pid).unwrap();
        assert_eq!(by_pid(1).status, Status::Captured);
        assert_eq!(by_pid(1).captured_by, ["openssl"]);
        assert_eq!(by_pid(2).status, Status::NotCaptured);
        assert!(by_pid(2).reason.as_ref().unwrap().contains("Java"));
        assert_eq!(by_pid(4).status, Status::Partial);
        assert!(
            by_pid(4)
                .reason
                .as_ref()
                .unwrap()
                .contains("no known TLS library")
        );
        assert!(
            report.processes.iter().all(|p| p.pid != 3),
            "bash has nothing TLS"
        );
    }

    /// A short-lived process: gone before its scan, or probed after its first connection.
    #[test]
    fn late_or_missed_probing_is_the_reason_given() {
        let mut c = Coverage::new(100, Duration::from_secs(60));
        // Exited unscanned; its connection reported afterwards.
        c.exited_unscanned(5, Duration::from_millis(12));
        c.observe(seen(5, 1000, None));
        // Probed 40 ms in, after its first connection.
        c.scanned(
            6,
            "job".into(),
            openssl(true),
            None,
            Some(Duration::from_millis(40)),
        );
        c.observe(seen(6, 1001, None));
        let report = c.report(9, 0);
        let reason = |pid| {
            let p = report.processes.iter().find(|p| p.pid == pid).unwrap();
            (p.status, p.reason.clone().unwrap())
        };
        assert_eq!(
            reason(5),
            (
                Status::NotCaptured,
                "exited 12 ms after the agent saw it start, before its TLS libraries could be \
                 probed"
                    .to_string()
            )
        );
        let (status, text) = reason(6);
        assert_eq!(status, Status::NotCaptured);
        assert!(
            text.starts_with(
                "probed 40 ms after the agent saw it start: what it sent before was missed"
            ),
            "{text}"
        );
    }

    #[test]
    fn exited_processes_stay_for_the_retention_then_go() {
        let mut c = Coverage::new(100, Duration::from_secs(60));
        let t0 = Instant::now();
        c.observe(seen(1, 1000, None));
        c.exited(1, t0);
        c.sweep(t0 + Duration::from_secs(59));
        assert!(c.report(9, 0).processes[0].exited);
        c.sweep(t0 + Duration::from_secs(61));
        assert!(c.report(9, 0).processes.is_empty());
    }

    #[test]
    fn bounded_making_room_from_exited_processes() {
        let mut c = Coverage::new(2, Duration::from_secs(60));
        c.observe(seen(1, 1000, None));
        c.observe(seen(2, 1000, None));
        c.observe(seen(3, 1000, None));
        assert_eq!(
            c.report(9, 0).processes.len(),
            2,
            "no exited process to replace"
        );
        c.exited(1, Instant::now());
        c.observe(seen(3, 1000, None));
        let pids: Vec<u32> = c.report(9, 0).processes.iter().map(|p| p.pid).collect();
        assert_eq!(pids, [2, 3]);
    }
}
