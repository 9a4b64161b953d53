//! The processes seen on this host: their executable, learnt from exec events (so that short
//! processes like curl are named even when they are gone before /proc can be read) or from /proc
//! for processes that predate the agent. Bounded, with a grace period after exit because calls
//! of a process can be completed after it exits. The command line (secrets removed) and the
//! user are read from /proc when the process is first seen, while it is still there.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use super::{cmdline, users};
use crate::call::ProcessInfo;

/// Seconds an exited process stays known.
const EXIT_GRACE_NS: u64 = 30_000_000_000;

#[derive(Clone, Debug)]
struct Entry {
    /// Shared with every call of the process, so naming a call copies no string.
    executable_path: Option<Arc<str>>,
    /// Base name of the path, computed once.
    executable_name: Option<Arc<str>>,
    command_line: Option<Arc<str>>,
    owner: Option<Arc<str>>,
    /// Different for every program a pid runs, so caches keyed by it never mix two programs.
    incarnation: u64,
    exited_at: Option<u64>,
}

impl Entry {
    fn new(path: Option<String>, details: Details, incarnation: u64) -> Self {
        let name = path
            .as_deref()
            .and_then(|p| p.rsplit('/').next())
            .filter(|n| !n.is_empty())
            .map(Arc::from);
        Self {
            executable_path: path.map(Arc::from),
            executable_name: name,
            command_line: details.command_line,
            owner: details.owner,
            incarnation,
            exited_at: None,
        }
    }
}

/// What /proc says besides the executable.
#[derive(Default)]
struct Details {
    command_line: Option<Arc<str>>,
    owner: Option<Arc<str>>,
}

pub struct ProcessTable {
    entries: HashMap<u32, Entry>,
    exited: VecDeque<(u32, u64)>,
    cap: usize,
    /// Root of the host's /proc (a different mount in some containers; tests use a fake root).
    proc_root: String,
    users: users::Users,
    incarnations: u64,
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
            users: users::Users::load(proc_root),
            incarnations: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A process executed `filename` with `args`: prefer the resolved /proc/PID/exe while it
    /// still runs that program; the arguments as the kernel copied them, unless they were cut
    /// and /proc still has them whole.
    pub fn on_exec(&mut self, tgid: u32, filename: &str, args: ExecArgs<'_>) -> Option<Evicted> {
        if is_own_executable(filename) {
            // The program executed itself again (busybox running an applet, runc's init): it
            // is what /proc shows now, else what the process ran before.
            let path = self.read_exe(tgid).or_else(|| {
                let before = self.entries.get(&tgid)?.executable_path.as_deref()?;
                Some(before.to_string())
            });
            let entry = self.entry(tgid, path, Some(args));
            return self.insert(tgid, entry);
        }
        let path = self
            .exe_if_still(tgid, filename)
            .or_else(|| (!filename.is_empty()).then(|| filename.to_string()));
        let entry = self.entry(tgid, path, Some(args));
        self.insert(tgid, entry)
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

    /// The process `tgid`, loading it from /proc on first sight; `cgroup_id` is the cgroup
    /// its last event came from; `active_ns` when it was doing what is being named (a call's
    /// start). A pid that exited before `active_ns` belongs to another process now, one that
    /// reused the pid without an exec (a forked child of some other program): the exited
    /// entry is stale and /proc is read again, rather than naming the call after the dead one.
    pub fn info(
        &mut self,
        tgid: u32,
        comm: &str,
        cgroup_id: u64,
        active_ns: u64,
    ) -> (ProcessInfo, Option<Evicted>) {
        let mut evicted = None;
        let current = self
            .entries
            .get(&tgid)
            .is_some_and(|e| e.exited_at.is_none_or(|exited_at| active_ns <= exited_at));
        if !current {
            let path = self.read_exe(tgid);
            let entry = self.entry(tgid, path, None);
            evicted = self.insert(tgid, entry);
        }
        let entry = self.entries.get(&tgid);
        let info = ProcessInfo {
            pid: tgid,
            executable_name: entry
                .and_then(|e| e.executable_name.clone())
                .unwrap_or_else(|| Arc::from(comm)),
            executable_path: entry.and_then(|e| e.executable_path.clone()),
            command_line: entry.and_then(|e| e.command_line.clone()),
            owner: entry.and_then(|e| e.owner.clone()),
            incarnation: entry.map_or(0, |e| e.incarnation),
            cgroup_id,
        };
        (info, evicted)
    }

    /// `tgid`, under the command name of `from` and named by no exec, took over a socket
    /// `from` used: it is `from`'s forked child (a fork-per-connection server) and runs the same
    /// program. Read from /proc now, while it most likely still runs (such a child is often
    /// gone before its call is named), else named after `from` (read from /proc first when
    /// the agent did not know it yet).
    pub fn on_fork_handover(&mut self, from: u32, tgid: u32) -> Option<Evicted> {
        if self
            .entries
            .get(&tgid)
            .is_some_and(|e| e.exited_at.is_none())
        {
            return None;
        }
        let entry = match self.read_exe(tgid) {
            Some(path) => self.entry(tgid, Some(path), None),
            None => {
                if !self.entries.contains_key(&from) {
                    // A parent that predates the agent: read it (a server is still there).
                    let path = self.read_exe(from)?;
                    let entry = self.entry(from, Some(path), None);
                    self.insert(from, entry);
                }
                let parent = self.entries.get(&from)?.clone();
                self.incarnations += 1;
                Entry {
                    incarnation: self.incarnations,
                    exited_at: None,
                    ..parent
                }
            }
        };
        self.insert(tgid, entry)
    }

    fn entry(&mut self, tgid: u32, path: Option<String>, args: Option<ExecArgs<'_>>) -> Entry {
        self.incarnations += 1;
        let from_proc = || {
            std::fs::read(format!("{}/{tgid}/cmdline", self.proc_root))
                .ok()
                .and_then(|raw| cmdline::from_proc(&raw))
        };
        let command_line = match args.filter(|a| !a.raw.is_empty()) {
            Some(a) if a.complete => cmdline::from_proc(a.raw),
            Some(a) => from_proc().or_else(|| cmdline::from_proc(a.raw)),
            None => from_proc(),
        };
        let details = Details {
            command_line: command_line.map(Arc::from),
            owner: std::fs::read_to_string(format!("{}/{tgid}/status", self.proc_root))
                .ok()
                .and_then(|status| users::real_uid(&status))
                .map(|uid| self.users.name(uid)),
        };
        Entry::new(path, details, self.incarnations)
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

    /// /proc/PID/exe, if it is still the program `filename` that the exec event named: by the
    /// time the event is read the process may have executed another one (a shell script's
    /// `exec`), whose name must not go to the calls of the first. Same base name (the usual
    /// case: `/usr/bin/curl`), or else the same file (`python3` is a link to `python3.11`),
    /// looked up inside the process's root.
    fn exe_if_still(&self, tgid: u32, filename: &str) -> Option<String> {
        let exe = self.read_exe(tgid)?;
        fn base(path: &str) -> &str {
            path.rsplit('/').next().unwrap_or_default()
        }
        if filename.is_empty() || base(&exe) == base(filename) {
            return Some(exe);
        }
        use std::os::unix::fs::MetadataExt as _;
        let named =
            crate::proc_root::open(&self.proc_root, tgid, filename, rustix::fs::OFlags::PATH)
                .and_then(|f| f.metadata())
                .ok()?;
        let running = std::fs::metadata(format!("{}/{tgid}/exe", self.proc_root)).ok()?;
        (named.dev() == running.dev() && named.ino() == running.ino()).then_some(exe)
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

/// `/proc/self/exe` or `/proc/PID/exe`: a process executing the program it already runs.
fn is_own_executable(filename: &str) -> bool {
    filename
        .strip_prefix("/proc/")
        .and_then(|rest| rest.strip_suffix("/exe"))
        .is_some_and(|who| {
            who == "self" || (!who.is_empty() && who.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// A program's arguments as the exec event carried them.
#[derive(Clone, Copy, Debug)]
pub struct ExecArgs<'a> {
    /// NUL separated, as /proc/PID/cmdline.
    pub raw: &'a [u8],
    /// Not cut at the kernel's copy limit.
    pub complete: bool,
}

impl ExecArgs<'_> {
    /// No arguments known (the kernel could not copy them).
    pub const NONE: ExecArgs<'static> = ExecArgs {
        raw: &[],
        complete: false,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_names_a_process_that_is_gone() {
        let mut table = ProcessTable::new(8, "/nonexistent");
        let args = ExecArgs {
            raw: b"curl\0-u\0alice:pw\0http://h/checkout\0",
            complete: true,
        };
        table.on_exec(4242, "/usr/bin/curl", args);
        let (info, _) = table.info(4242, "curl", 1, 0);
        assert_eq!(&*info.executable_name, "curl");
        assert_eq!(info.executable_path.as_deref(), Some("/usr/bin/curl"));
        // The arguments the kernel copied at exec name it, secrets removed.
        assert_eq!(
            info.command_line.as_deref(),
            Some("curl -u alice:REDACTED http://h/checkout")
        );
        // Cut arguments are used when /proc has nothing better.
        let cut = ExecArgs {
            raw: b"python3\0-m\0http.ser",
            complete: false,
        };
        table.on_exec(4243, "/usr/bin/python3", cut);
        let (info, _) = table.info(4243, "python3", 1, 0);
        assert_eq!(info.command_line.as_deref(), Some("python3 -m http.ser"));
    }

    #[test]
    fn a_forked_child_gone_before_it_is_named_takes_its_parents_program() {
        let mut table = ProcessTable::new(16, "/nonexistent");
        let args = ExecArgs {
            raw: b"python3\0server.py\0",
            complete: true,
        };
        table.on_exec(10, "/usr/bin/python3.11", args);
        assert_eq!(table.on_fork_handover(10, 11), None);
        let (child, _) = table.info(11, "python3", 1, 5);
        assert_eq!(child.pid, 11);
        assert_eq!(&*child.executable_name, "python3.11");
        assert_eq!(child.command_line.as_deref(), Some("python3 server.py"));
        let (parent, _) = table.info(10, "python3", 1, 5);
        assert_ne!(child.incarnation, parent.incarnation);
        // A child named by its own exec keeps its program.
        table.on_exec(12, "/usr/bin/busybox", ExecArgs::NONE);
        table.on_fork_handover(10, 12);
        assert_eq!(
            &*table.info(12, "busybox", 1, 5).0.executable_name,
            "busybox"
        );
    }

    #[test]
    fn a_program_executing_itself_through_proc_keeps_its_name() {
        // busybox's shell runs an applet as /proc/self/exe with the applet's arguments.
        let mut table = ProcessTable::new(16, "/nonexistent");
        table.on_exec(20, "/bin/busybox", ExecArgs::NONE);
        let args = ExecArgs {
            raw: b"wget\0-q\0http://web/\0",
            complete: true,
        };
        table.on_exec(20, "/proc/self/exe", args);
        let (info, _) = table.info(20, "wget", 1, 5);
        assert_eq!(&*info.executable_name, "busybox");
        assert_eq!(info.command_line.as_deref(), Some("wget -q http://web/"));
        assert!(is_own_executable("/proc/123/exe"));
        assert!(!is_own_executable("/proc/exe") && !is_own_executable("/proc/x1/exe"));
    }

    #[test]
    fn unknown_processes_fall_back_to_comm() {
        let mut table = ProcessTable::new(8, "/nonexistent");
        let (info, _) = table.info(7, "python3", 1, 0);
        assert_eq!(&*info.executable_name, "python3");
        assert_eq!(info.executable_path, None);
    }

    #[test]
    fn reads_the_running_process_from_proc() {
        let mut table = ProcessTable::new(8, "/proc");
        let me = std::process::id();
        let (info, _) = table.info(me, "x", 1, 0);
        let exe = std::env::current_exe().expect("current exe");
        assert_eq!(info.executable_path.as_deref(), exe.to_str());
        let args: Vec<String> = std::env::args().collect();
        assert_eq!(info.command_line.as_deref(), Some(args.join(" ").as_str()));
        assert!(info.owner.is_some());
    }

    #[test]
    fn an_exec_event_read_late_does_not_take_the_next_programs_name() {
        let table = ProcessTable::new(8, "/proc");
        let me = std::process::id();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let exe = exe.to_str().unwrap();
        assert_eq!(table.exe_if_still(me, exe).as_deref(), Some(exe));
        // The same file under another name (a link to it).
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("another-name");
        std::os::unix::fs::symlink(exe, &link).unwrap();
        assert_eq!(
            table.exe_if_still(me, link.to_str().unwrap()).as_deref(),
            Some(exe)
        );
        // An exec of some other program, which this pid no longer runs.
        assert_eq!(table.exe_if_still(me, "/bin/sh"), None);
    }

    #[test]
    fn a_pid_reused_after_an_exit_is_read_again() {
        // No /proc here: a process read again is named by the comm of its event.
        let mut table = ProcessTable::new(8, "/nonexistent");
        table.on_exec(7, "/usr/bin/curl", ExecArgs::NONE);
        let (before, _) = table.info(7, "curl", 0, 50);
        table.on_exit(7, 100);
        // A call that started before the exit keeps the process it belonged to.
        let (late, _) = table.info(7, "curl", 0, 90);
        assert_eq!(late.executable_name.as_ref(), "curl");
        assert_eq!(late.incarnation, before.incarnation);
        // One that started after it belongs to whoever has the pid now.
        let (now, _) = table.info(7, "python3", 0, 110);
        assert_eq!(now.executable_name.as_ref(), "python3");
        assert_eq!(now.executable_path, None);
        assert_ne!(now.incarnation, before.incarnation);
        // And stays that process for its later calls.
        let (again, _) = table.info(7, "python3", 0, 120);
        assert_eq!(again.incarnation, now.incarnation);
    }

    #[test]
    fn stays_bounded_and_forgets_exited_processes() {
        let mut table = ProcessTable::new(2, "/nonexistent");
        table.on_exec(1, "/a", ExecArgs::NONE);
        table.on_exec(2, "/b", ExecArgs::NONE);
        table.on_exit(1, 10);
        assert_eq!(table.on_exec(3, "/c", ExecArgs::NONE), Some(Evicted));
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
