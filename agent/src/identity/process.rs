//! The processes seen on this host: their executable, learnt from exec events (so that short
//! processes like curl are named even when they are gone before /proc can be read) or from /proc
//! for processes that predate the agent. Bounded, with a grace period after exit because calls
//! of a process can be completed after it exits.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use crate::call::ProcessInfo;

/// Seconds an exited process stays known.
const EXIT_GRACE_NS: u64 = 30_000_000_000;

#[derive(Clone, Debug)]
struct Entry {
    /// Shared with every call of the process, so naming a call copies no string.
    executable_path: Option<Arc<str>>,
    /// Base name of the path, computed once.
    executable_name: Option<Arc<str>>,
    exited_at: Option<u64>,
}

impl Entry {
    fn new(path: Option<String>) -> Self {
        let name = path
            .as_deref()
            .and_then(|p| p.rsplit('/').next())
            .filter(|n| !n.is_empty())
            .map(Arc::from);
        Self {
            executable_path: path.map(Arc::from),
            executable_name: name,
            exited_at: None,
        }
    }
}

pub struct ProcessTable {
    entries: HashMap<u32, Entry>,
    exited: VecDeque<(u32, u64)>,
    cap: usize,
    /// Root of the host's /proc (a different mount in some containers; tests use a fake root).
    proc_root: String,
}

/// Result of an insertion that hit the cap.
#[derive(Debug, PartialEq, Eq)]
pub struct Evicted;

impl ProcessTable {
    pub fn new(cap: usize, proc_root: &str) -> Self {
        Self {
            entries: HashMap::new(),
            exited: VecDeque::new(),
            cap,
            proc_root: proc_root.to_string(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A process executed `filename`: prefer the resolved /proc/PID/exe while it still lives.
    pub fn on_exec(&mut self, tgid: u32, filename: &str) -> Option<Evicted> {
        let path = self
            .read_exe(tgid)
            .or_else(|| (!filename.is_empty()).then(|| filename.to_string()));
        self.insert(tgid, Entry::new(path))
    }

    pub fn on_exit(&mut self, tgid: u32, now_ns: u64) {
        if let Some(entry) = self.entries.get_mut(&tgid) {
            entry.exited_at = Some(now_ns);
            self.exited.push_back((tgid, now_ns));
        }
    }

    /// Forgets processes that exited more than the grace period ago.
    pub fn sweep(&mut self, now_ns: u64) {
        while let Some(&(tgid, at)) = self.exited.front() {
            if now_ns.saturating_sub(at) < EXIT_GRACE_NS {
                break;
            }
            self.exited.pop_front();
            if self.entries.get(&tgid).and_then(|e| e.exited_at) == Some(at) {
                self.entries.remove(&tgid);
            }
        }
    }

    /// The process `tgid`, loading it from /proc on first sight.
    pub fn info(&mut self, tgid: u32, comm: &str) -> (ProcessInfo, Option<Evicted>) {
        let mut evicted = None;
        if !self.entries.contains_key(&tgid) {
            let path = self.read_exe(tgid);
            evicted = self.insert(tgid, Entry::new(path));
        }
        let entry = self.entries.get(&tgid);
        let info = ProcessInfo {
            pid: tgid,
            executable_name: entry
                .and_then(|e| e.executable_name.clone())
                .unwrap_or_else(|| Arc::from(comm)),
            executable_path: entry.and_then(|e| e.executable_path.clone()),
        };
        (info, evicted)
    }

    fn insert(&mut self, tgid: u32, entry: Entry) -> Option<Evicted> {
        let mut evicted = None;
        if self.entries.len() >= self.cap && !self.entries.contains_key(&tgid) {
            // Prefer forgetting an exited process; otherwise any (the cap is a safety net).
            let victim = self
                .exited
                .pop_front()
                .map(|(t, _)| t)
                .or_else(|| self.entries.keys().next().copied());
            if let Some(victim) = victim {
                self.entries.remove(&victim);
                evicted = Some(Evicted);
            }
        }
        self.entries.insert(tgid, entry);
        evicted
    }

    fn read_exe(&self, tgid: u32) -> Option<String> {
        std::fs::read_link(format!("{}/{tgid}/exe", self.proc_root))
            .ok()
            .map(|p| {
                p.to_string_lossy()
                    .trim_end_matches(" (deleted)")
                    .to_string()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_names_a_process_that_is_gone() {
        let mut table = ProcessTable::new(8, "/nonexistent");
        table.on_exec(4242, "/usr/bin/curl");
        let (info, _) = table.info(4242, "curl");
        assert_eq!(&*info.executable_name, "curl");
        assert_eq!(info.executable_path.as_deref(), Some("/usr/bin/curl"));
    }

    #[test]
    fn unknown_processes_fall_back_to_comm() {
        let mut table = ProcessTable::new(8, "/nonexistent");
        let (info, _) = table.info(7, "python3");
        assert_eq!(&*info.executable_name, "python3");
        assert_eq!(info.executable_path, None);
    }

    #[test]
    fn reads_the_running_process_from_proc() {
        let mut table = ProcessTable::new(8, "/proc");
        let me = std::process::id();
        let (info, _) = table.info(me, "x");
        let exe = std::env::current_exe().expect("current exe");
        assert_eq!(info.executable_path.as_deref(), exe.to_str());
    }

    #[test]
    fn stays_bounded_and_forgets_exited_processes() {
        let mut table = ProcessTable::new(2, "/nonexistent");
        table.on_exec(1, "/a");
        table.on_exec(2, "/b");
        table.on_exit(1, 10);
        assert_eq!(table.on_exec(3, "/c"), Some(Evicted));
        assert_eq!(table.len(), 2);
        assert!(
            !table.entries.contains_key(&1),
            "the exited process is the one forgotten"
        );
        table.on_exit(2, 20);
        table.sweep(20 + EXIT_GRACE_NS);
        assert_eq!(table.len(), 1);
    }
}
