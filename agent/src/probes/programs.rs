//! Every kernel program the agent loads, grouped by the capability it gives. A kernel that
//! refuses a program of an optional capability costs that capability only; the agent stops
//! only when the syscall capture itself cannot load.

/// What a group of programs gives the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Feature {
    /// Syscall tracepoints on sockets: plaintext calls, connections. Required.
    Capture,
    /// sched exec/exit tracepoints: processes named even when gone before /proc was read.
    ProcessEvents,
    /// The mmap tracepoint: a TLS library loaded after start (dlopen) is probed at once.
    LibraryLoads,
    /// Uprobes in OpenSSL, BoringSSL and GnuTLS: the plaintext of their TLS connections.
    TlsLibraries,
    /// Uprobes in Go's crypto/tls.
    GoTls,
}

impl Feature {
    pub const ALL: [Feature; 5] = [
        Feature::Capture,
        Feature::ProcessEvents,
        Feature::LibraryLoads,
        Feature::TlsLibraries,
        Feature::GoTls,
    ];

    /// As in `sightline check`, logs and the health metric.
    pub fn name(self) -> &'static str {
        match self {
            Feature::Capture => "capture",
            Feature::ProcessEvents => "process_events",
            Feature::LibraryLoads => "library_loads",
            Feature::TlsLibraries => "tls_libraries",
            Feature::GoTls => "go_tls",
        }
    }

    /// What the agent does without it (for the warning and `sightline check`).
    pub fn without(self) -> &'static str {
        match self {
            Feature::Capture => "nothing is captured",
            Feature::ProcessEvents => {
                "processes are named from /proc only: one that exits before it is read stays unnamed"
            }
            Feature::LibraryLoads => {
                "a TLS library loaded after a process started is probed at the next rescan (60 s)"
            }
            Feature::TlsLibraries => {
                "no plaintext from OpenSSL, BoringSSL or GnuTLS: their connections are reported as TLS, uncaptured"
            }
            Feature::GoTls => {
                "no plaintext from Go's crypto/tls: its connections are reported as TLS, uncaptured"
            }
        }
    }

    /// Part of TLS capture (`--no-tls` loads none of these).
    pub fn is_tls(self) -> bool {
        matches!(
            self,
            Feature::LibraryLoads | Feature::TlsLibraries | Feature::GoTls
        )
    }
}

/// Where a program is attached.
#[derive(Clone, Copy, Debug)]
pub enum Hook {
    /// Tracepoints (category, name), attached at start.
    Tracepoints(&'static [(&'static str, &'static str)]),
    /// A uprobe, attached per library file by `crate::tls`.
    Uprobe,
}

/// One program of the eBPF object.
#[derive(Clone, Copy, Debug)]
pub struct Program {
    pub name: &'static str,
    pub feature: Feature,
    pub hook: Hook,
}

const fn tracepoints(
    name: &'static str,
    feature: Feature,
    points: &'static [(&'static str, &'static str)],
) -> Program {
    Program {
        name,
        feature,
        hook: Hook::Tracepoints(points),
    }
}

const fn syscall(name: &'static str, points: &'static [(&'static str, &'static str)]) -> Program {
    tracepoints(name, Feature::Capture, points)
}

const fn uprobe(name: &'static str, feature: Feature) -> Program {
    Program {
        name,
        feature,
        hook: Hook::Uprobe,
    }
}

/// Every program, in load order: the required capture first, so that a kernel that cannot
/// run the agent says so before anything optional is tried.
pub const PROGRAMS: &[Program] = &[
    syscall("enter_read", &[("syscalls", "sys_enter_read")]),
    syscall("enter_write", &[("syscalls", "sys_enter_write")]),
    syscall("enter_readv", &[("syscalls", "sys_enter_readv")]),
    syscall("enter_writev", &[("syscalls", "sys_enter_writev")]),
    syscall("enter_recvfrom", &[("syscalls", "sys_enter_recvfrom")]),
    syscall("enter_sendto", &[("syscalls", "sys_enter_sendto")]),
    syscall("enter_recvmsg", &[("syscalls", "sys_enter_recvmsg")]),
    syscall("enter_sendmsg", &[("syscalls", "sys_enter_sendmsg")]),
    syscall("enter_sendfile", &[("syscalls", "sys_enter_sendfile64")]),
    syscall("enter_connect", &[("syscalls", "sys_enter_connect")]),
    syscall("enter_close", &[("syscalls", "sys_enter_close")]),
    syscall(
        "exit_socket_io",
        &[
            ("syscalls", "sys_exit_read"),
            ("syscalls", "sys_exit_write"),
            ("syscalls", "sys_exit_readv"),
            ("syscalls", "sys_exit_writev"),
            ("syscalls", "sys_exit_recvfrom"),
            ("syscalls", "sys_exit_sendto"),
            ("syscalls", "sys_exit_recvmsg"),
            ("syscalls", "sys_exit_sendmsg"),
            ("syscalls", "sys_exit_sendfile64"),
            ("syscalls", "sys_exit_connect"),
        ],
    ),
    syscall(
        "exit_accept",
        &[
            ("syscalls", "sys_exit_accept"),
            ("syscalls", "sys_exit_accept4"),
        ],
    ),
    tracepoints(
        "sched_exec",
        Feature::ProcessEvents,
        &[("sched", "sched_process_exec")],
    ),
    tracepoints(
        "sched_exit",
        Feature::ProcessEvents,
        &[("sched", "sched_process_exit")],
    ),
    tracepoints(
        "cgroup_mkdir",
        Feature::ProcessEvents,
        &[("cgroup", "cgroup_mkdir")],
    ),
    tracepoints(
        "enter_mmap",
        Feature::LibraryLoads,
        &[("syscalls", "sys_enter_mmap")],
    ),
    uprobe("tls_write_enter", Feature::TlsLibraries),
    uprobe("tls_read_enter", Feature::TlsLibraries),
    uprobe("tls_write_ex_enter", Feature::TlsLibraries),
    uprobe("tls_read_ex_enter", Feature::TlsLibraries),
    uprobe("tls_return", Feature::TlsLibraries),
    uprobe("tls_handshake_enter", Feature::TlsLibraries),
    uprobe("bio_write_enter", Feature::TlsLibraries),
    uprobe("bio_read_enter", Feature::TlsLibraries),
    uprobe("bio_write_ex_enter", Feature::TlsLibraries),
    uprobe("bio_read_ex_enter", Feature::TlsLibraries),
    uprobe("go_tls_write_enter", Feature::GoTls),
    uprobe("go_tls_read_enter", Feature::GoTls),
    uprobe("go_tls_return", Feature::GoTls),
];

/// The feature a program belongs to.
pub fn feature_of(program: &str) -> Option<Feature> {
    PROGRAMS
        .iter()
        .find(|p| p.name == program)
        .map(|p| p.feature)
}

/// The program of the same kind that does nothing (`agent-ebpf/src/probes/empty.rs`),
/// attached in this program's place by `--bench-empty-programs`: the benchmark's floor.
pub fn empty_twin(program: &str) -> &'static str {
    match PROGRAMS.iter().find(|p| p.name == program).map(|p| p.hook) {
        Some(Hook::Tracepoints(_)) => "empty_tracepoint",
        // The one return probe: the C libraries' read/write return (Go's returns are uprobes
        // on RET instructions).
        _ if program == "tls_return" => "empty_uretprobe",
        _ => "empty_uprobe",
    }
}

/// The tracepoints attached at start, over every program.
pub fn tracepoint_count() -> usize {
    PROGRAMS
        .iter()
        .map(|p| match p.hook {
            Hook::Tracepoints(points) => points.len(),
            Hook::Uprobe => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_programs_load_first_and_every_feature_has_programs() {
        let first_optional = PROGRAMS
            .iter()
            .position(|p| p.feature != Feature::Capture)
            .unwrap_or(PROGRAMS.len());
        assert!(
            PROGRAMS[first_optional..]
                .iter()
                .all(|p| p.feature != Feature::Capture)
        );
        for feature in Feature::ALL {
            assert!(PROGRAMS.iter().any(|p| p.feature == feature), "{feature:?}");
        }
    }

    #[test]
    fn every_program_is_listed_once() {
        let mut names: Vec<&str> = PROGRAMS.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PROGRAMS.len());
        assert_eq!(tracepoint_count(), 27);
    }

    #[test]
    fn each_program_has_an_empty_twin_of_its_kind() {
        assert_eq!(empty_twin("exit_socket_io"), "empty_tracepoint");
        assert_eq!(empty_twin("cgroup_mkdir"), "empty_tracepoint");
        assert_eq!(empty_twin("tls_write_enter"), "empty_uprobe");
        assert_eq!(empty_twin("go_tls_return"), "empty_uprobe");
        assert_eq!(empty_twin("tls_return"), "empty_uretprobe");
    }
}
