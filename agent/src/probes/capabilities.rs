//! The Linux capabilities the agent runs with instead of full privileges: the one list that the
//! start-up check, `sightline capabilities`, the Kubernetes DaemonSet and the systemd unit all
//! use (a test compares the manifests with `sightline capabilities`).

/// One capability, and what the agent does with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// As the kernel and Kubernetes name it, without `CAP_`: `BPF`.
    pub name: &'static str,
    pub number: u32,
    pub why: &'static str,
    /// Without it nothing can be captured (else: the agent runs and says what it loses).
    pub essential: bool,
}

/// Every capability the agent uses; nothing else is needed on Linux 5.8+.
pub const CAPABILITIES: &[Capability] = &[
    Capability {
        name: "BPF",
        number: 39,
        why: "load the eBPF programs and create their maps",
        essential: true,
    },
    Capability {
        name: "PERFMON",
        number: 38,
        why: "attach to the syscall tracepoints and read kernel memory from the programs",
        essential: true,
    },
    Capability {
        name: "SYS_ADMIN",
        number: 21,
        why: "attach the TLS uprobes (perf events with raw samples need it unless \
              kernel.perf_event_paranoid is -1), hold a new program's exec until its TLS probes \
              are attached (fanotify), and mount tracefs when the host has not",
        essential: false,
    },
    Capability {
        name: "SYS_PTRACE",
        number: 19,
        why: "read other users' processes in /proc (executable, memory maps, root directory) \
              to find their TLS libraries and name them",
        essential: false,
    },
    Capability {
        name: "DAC_READ_SEARCH",
        number: 2,
        why: "read tracefs and the binaries and libraries of every process, whoever owns them",
        essential: false,
    },
];

/// The capabilities of `CAPABILITIES` missing from an effective mask.
pub fn missing(effective: u64) -> Vec<&'static Capability> {
    CAPABILITIES
        .iter()
        .filter(|c| effective & (1u64 << c.number) == 0)
        .collect()
}

/// `sightline capabilities`: one line per capability (`CAP_NAME  why`).
pub fn render() -> String {
    CAPABILITIES
        .iter()
        .map(|c| format!("CAP_{:<16} {}\n", c.name, c.why))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_are_the_kernels() {
        // include/uapi/linux/capability.h
        let kernel = [
            ("DAC_READ_SEARCH", 2),
            ("SYS_PTRACE", 19),
            ("SYS_ADMIN", 21),
            ("PERFMON", 38),
            ("BPF", 39),
        ];
        for (name, number) in kernel {
            let cap = CAPABILITIES.iter().find(|c| c.name == name).unwrap();
            assert_eq!(cap.number, number, "{name}");
        }
        assert_eq!(CAPABILITIES.len(), kernel.len());
    }

    #[test]
    fn missing_lists_what_the_mask_lacks() {
        let all: u64 = CAPABILITIES.iter().map(|c| 1u64 << c.number).sum();
        assert!(missing(all).is_empty());
        let without_ptrace = all & !(1 << 19);
        assert_eq!(
            missing(without_ptrace)
                .iter()
                .map(|c| c.name)
                .collect::<Vec<_>>(),
            ["SYS_PTRACE"]
        );
        assert!(render().starts_with("CAP_BPF "));
    }
}
