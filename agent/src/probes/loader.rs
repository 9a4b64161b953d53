//! Loads the embedded eBPF object with the run's settings and attaches every tracepoint.

use agent_common::{
    config::{KernelOffsets, Settings},
    event::{KERNEL_COUNTER_SLOTS, KernelCounter, MAX_CAPTURE_BYTES},
};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{
        TracePoint, UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLink, UProbeLinkId, UProbeScope},
    },
};
use std::path::Path;

use super::{ProbeError, filters::Filters, offsets, preflight};

/// The compiled kernel programs, built by build.rs.
static PROBES_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sightline-probes"));

/// (program, category, tracepoint) for every hook.
const ATTACHMENTS: &[(&str, &str, &str)] = &[
    ("enter_read", "syscalls", "sys_enter_read"),
    ("enter_write", "syscalls", "sys_enter_write"),
    ("enter_readv", "syscalls", "sys_enter_readv"),
    ("enter_writev", "syscalls", "sys_enter_writev"),
    ("enter_recvfrom", "syscalls", "sys_enter_recvfrom"),
    ("enter_sendto", "syscalls", "sys_enter_sendto"),
    ("enter_recvmsg", "syscalls", "sys_enter_recvmsg"),
    ("enter_sendmsg", "syscalls", "sys_enter_sendmsg"),
    ("enter_sendfile", "syscalls", "sys_enter_sendfile64"),
    ("enter_connect", "syscalls", "sys_enter_connect"),
    ("enter_close", "syscalls", "sys_enter_close"),
    ("exit_socket_io", "syscalls", "sys_exit_read"),
    ("exit_socket_io", "syscalls", "sys_exit_write"),
    ("exit_socket_io", "syscalls", "sys_exit_readv"),
    ("exit_socket_io", "syscalls", "sys_exit_writev"),
    ("exit_socket_io", "syscalls", "sys_exit_recvfrom"),
    ("exit_socket_io", "syscalls", "sys_exit_sendto"),
    ("exit_socket_io", "syscalls", "sys_exit_recvmsg"),
    ("exit_socket_io", "syscalls", "sys_exit_sendmsg"),
    ("exit_socket_io", "syscalls", "sys_exit_sendfile64"),
    ("exit_socket_io", "syscalls", "sys_exit_connect"),
    ("exit_accept", "syscalls", "sys_exit_accept"),
    ("exit_accept", "syscalls", "sys_exit_accept4"),
    ("enter_mmap", "syscalls", "sys_enter_mmap"),
    ("sched_exec", "sched", "sched_process_exec"),
    ("sched_exit", "sched", "sched_process_exit"),
];

/// The TLS uprobe programs: loaded (verified) at start, attached later per library file by
/// `crate::tls`.
pub const TLS_PROGRAMS: &[&str] = &[
    "tls_write_enter",
    "tls_read_enter",
    "tls_write_ex_enter",
    "tls_read_ex_enter",
    "tls_return",
    "tls_handshake_enter",
    "bio_write_enter",
    "bio_read_enter",
    "bio_write_ex_enter",
    "bio_read_ex_enter",
    "go_tls_write_enter",
    "go_tls_read_enter",
    "go_tls_return",
];

/// How to load the probes.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    pub capture_bytes: u32,
    pub ring_buffer_bytes: u32,
    pub wakeup_bytes: u32,
    pub filters: Filters,
}

/// Loaded and attached probes. Dropping it detaches everything.
pub struct LoadedProbes {
    ebpf: Ebpf,
}

impl LoadedProbes {
    /// Checks the host, loads the programs and attaches them all.
    pub fn load(options: &ProbeOptions) -> Result<Self, ProbeError> {
        preflight::run()?;
        let offsets: KernelOffsets = offsets::from_btf_file(preflight::VMLINUX_BTF)?;
        tracing::debug!(?offsets, "kernel struct offsets from BTF");
        let settings = Settings {
            agent_tgid: std::process::id(),
            capture_bytes: options.capture_bytes.min(MAX_CAPTURE_BYTES as u32),
            filter_flags: options.filters.flags(),
            wakeup_bytes: options.wakeup_bytes,
            features: if preflight::kernel_at_least(5, 17) {
                agent_common::config::FEATURE_BPF_LOOP
            } else {
                0
            },
            _reserved: 0,
        };
        let mut ebpf = EbpfLoader::new()
            .override_global("SIGHTLINE_SETTINGS", &settings, true)
            .override_global("SIGHTLINE_OFFSETS", &offsets, true)
            .map_max_entries("EVENTS", options.ring_buffer_bytes)
            .map_max_entries("SCRATCH", possible_cpus()?)
            .load(PROBES_OBJECT)
            .map_err(|e| ProbeError::Load(Box::new(e)))?;
        options.filters.apply(&mut ebpf)?;
        let mut loaded = Vec::new();
        for (program, category, tracepoint) in ATTACHMENTS {
            let prog: &mut TracePoint = ebpf
                .program_mut(program)
                .ok_or_else(|| ProbeError::MissingProgram {
                    name: program.to_string(),
                })?
                .try_into()
                .map_err(|source| ProbeError::Program {
                    name: program.to_string(),
                    source: Box::new(source),
                })?;
            if !loaded.contains(program) {
                prog.load().map_err(|source| ProbeError::Program {
                    name: program.to_string(),
                    source: Box::new(source),
                })?;
                loaded.push(program);
            }
            prog.attach(category, tracepoint)
                .map_err(|source| ProbeError::Attach {
                    program: program.to_string(),
                    category: category.to_string(),
                    tracepoint: tracepoint.to_string(),
                    source: Box::new(source),
                })?;
        }
        for name in TLS_PROGRAMS {
            uprobe(&mut ebpf, name)?
                .load()
                .map_err(|source| ProbeError::Program {
                    name: name.to_string(),
                    source: Box::new(source),
                })?;
        }
        tracing::info!(
            tracepoints = ATTACHMENTS.len(),
            capture_bytes = settings.capture_bytes,
            ring_buffer_bytes = options.ring_buffer_bytes,
            "probes attached"
        );
        Ok(Self { ebpf })
    }

    /// Takes the ring buffer out for the reader task.
    pub fn take_ring_buffer(&mut self) -> Result<RingBuf<MapData>, ProbeError> {
        self.take("EVENTS")
    }

    /// Takes the per-CPU counters out, for the stats reporter.
    pub fn take_counters(&mut self) -> Result<KernelCounters, ProbeError> {
        Ok(KernelCounters {
            array: self.take("COUNTERS")?,
        })
    }

    /// Attaches a TLS uprobe program to the instruction at `offset` in the file at `path`, for
    /// every process that maps that file now or later, or only for process `pid`. `cookie`
    /// reaches the program.
    pub fn attach_uprobe(
        &mut self,
        program: &str,
        path: &Path,
        offset: u64,
        cookie: u64,
        pid: Option<u32>,
    ) -> Result<UProbeLinkId, ProbeError> {
        let point = UProbeAttachPoint {
            location: UProbeAttachLocation::AbsoluteOffset(offset),
            cookie: Some(cookie),
        };
        let scope = match pid.and_then(std::num::NonZeroU32::new) {
            Some(pid) => UProbeScope::OneProcess(pid),
            None => UProbeScope::AllProcesses,
        };
        uprobe(&mut self.ebpf, program)?
            .attach(point, path, scope)
            .map_err(|source| ProbeError::AttachUprobe {
                program: program.to_string(),
                path: path.display().to_string(),
                offset,
                source: Box::new(source),
            })
    }

    /// Takes one uprobe attachment out of its program: dropping it detaches it, on any thread.
    pub fn take_uprobe_link(
        &mut self,
        program: &str,
        link: UProbeLinkId,
    ) -> Result<UProbeLink, ProbeError> {
        uprobe(&mut self.ebpf, program)?
            .take_link(link)
            .map_err(|source| ProbeError::Program {
                name: program.to_string(),
                source: Box::new(source),
            })
    }

    /// Takes a map out of the object as its typed form.
    fn take<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
        &mut self,
        name: &str,
    ) -> Result<T, ProbeError> {
        let map = self
            .ebpf
            .take_map(name)
            .ok_or_else(|| ProbeError::MissingMap {
                name: name.to_string(),
            })?;
        T::try_from(map).map_err(|source| ProbeError::Map {
            name: name.to_string(),
            source: Box::new(source),
        })
    }
}

fn uprobe<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut UProbe, ProbeError> {
    ebpf.program_mut(name)
        .ok_or_else(|| ProbeError::MissingProgram {
            name: name.to_string(),
        })?
        .try_into()
        .map_err(|source| ProbeError::Program {
            name: name.to_string(),
            source: Box::new(source),
        })
}

/// Number of possible CPUs (ids run from 0 to this minus one), from sysfs.
fn possible_cpus() -> Result<u32, ProbeError> {
    let n = aya::util::nr_cpus().map_err(|(path, e)| {
        ProbeError::Preflight(format!("reading the CPU list from {path}: {e}"))
    })?;
    Ok(n.max(1) as u32)
}

/// The kernel side's per-CPU counters (drops, truncations, events).
pub struct KernelCounters {
    array: PerCpuArray<MapData, u64>,
}

impl KernelCounters {
    /// Each counter summed over CPUs.
    pub fn read(&self) -> Vec<(KernelCounter, u64)> {
        KernelCounter::ALL
            .iter()
            .filter(|c| (**c as u32) < KERNEL_COUNTER_SLOTS)
            .map(|c| {
                let total = self
                    .array
                    .get(&(*c as u32), 0)
                    .map(|values| values.iter().sum())
                    .unwrap_or(0);
                (*c, total)
            })
            .collect()
    }
}
