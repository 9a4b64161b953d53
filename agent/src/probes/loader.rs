//! Loads the embedded eBPF object with the run's settings, program by program (the list and
//! what each gives is in `programs`), and attaches every tracepoint.

use agent_common::{
    config::{KernelOffsets, Settings},
    event::{KERNEL_COUNTER_SLOTS, KernelCounter, MAX_CAPTURE_BYTES},
};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{
        UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLink, UProbeLinkId, UProbeScope},
    },
};
use std::path::Path;

use super::{
    ProbeError,
    filters::Filters,
    offsets, preflight,
    program_load::{Mode, load_programs},
    programs, simulate,
    support::{FeatureState, KernelSupport, kernel_release},
};

/// The compiled kernel programs, built by build.rs.
static PROBES_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sightline-probes"));

/// How to load the probes.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    pub capture_bytes: u32,
    pub ring_buffer_bytes: u32,
    pub wakeup_bytes: u32,
    pub filters: Filters,
    /// Load the TLS programs (`--no-tls`: none of them is loaded).
    pub tls: bool,
    /// Attach empty programs in place of the real ones (`--bench-empty-programs`: the
    /// benchmark's floor; nothing is captured).
    pub empty_programs: bool,
}

/// Loaded and attached probes. Dropping it detaches everything.
pub struct LoadedProbes {
    ebpf: Ebpf,
    support: KernelSupport,
    /// Empty twins stand in for the programs (the benchmark's floor).
    empty_programs: bool,
}

impl LoadedProbes {
    /// Checks the host, loads the programs and attaches the tracepoints. A program of an
    /// optional feature that the kernel refuses turns that feature off with one warning; only
    /// a refused capture program stops the agent.
    pub fn load(options: &ProbeOptions) -> Result<Self, ProbeError> {
        preflight::run()?;
        let mode = if options.empty_programs {
            tracing::warn!("empty programs attached in place of the probes: nothing is captured");
            Mode::Empty
        } else {
            Mode::Run
        };
        let probes = load_preferring_bpf_loop(options, mode)?;
        for feature in probes.support.refused() {
            if let FeatureState::Off { program, reason } = probes.support.state(feature) {
                tracing::warn!(
                    feature = feature.name(),
                    program,
                    kernel = probes.support.kernel,
                    reason,
                    without = feature.without(),
                    "the kernel refused a program: the agent runs without this feature"
                );
            }
        }
        tracing::info!(
            tracepoints = programs::tracepoint_count(),
            capture_bytes = options.capture_bytes.min(MAX_CAPTURE_BYTES as u32),
            ring_buffer_bytes = options.ring_buffer_bytes,
            "probes attached"
        );
        Ok(probes)
    }

    /// `sightline check`: the host checks, then every program the agent would load, loaded
    /// and unloaded again, each tracepoint looked up. An error means the agent cannot start.
    pub fn check(options: &ProbeOptions) -> Result<KernelSupport, ProbeError> {
        preflight::run()?;
        Ok(load_preferring_bpf_loop(options, Mode::Check)?.support)
    }

    /// What this kernel let the agent load.
    pub fn support(&self) -> &KernelSupport {
        &self.support
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
        let name = self.program_name(program);
        uprobe(&mut self.ebpf, name)?
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
        let name = self.program_name(program);
        uprobe(&mut self.ebpf, name)?
            .take_link(link)
            .map_err(|source| ProbeError::Program {
                name: program.to_string(),
                source: Box::new(source),
            })
    }

    /// The program attached for `program`: itself, or its empty twin for the benchmark.
    fn program_name<'a>(&self, program: &'a str) -> &'a str {
        if self.empty_programs {
            programs::empty_twin(program)
        } else {
            program
        }
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
    typed_program(ebpf, name)
}

/// A program of the object in its typed form (`TracePoint`, `UProbe`).
pub(super) fn typed_program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, ProbeError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
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

/// Loads with the `bpf_loop` iovec copy where the kernel has the helper (5.17+); should the
/// verifier refuse a capture program in that form, loads again with the unrolled copy (16
/// iovecs per syscall) rather than not at all.
fn load_preferring_bpf_loop(
    options: &ProbeOptions,
    mode: Mode,
) -> Result<LoadedProbes, ProbeError> {
    let bpf_loop = preflight::kernel_at_least(5, 17) && !simulate::no_bpf_loop();
    match load_object(options, mode, bpf_loop) {
        Err(ProbeError::Refused {
            program, reason, ..
        }) if bpf_loop => {
            tracing::warn!(
                program,
                reason,
                "the kernel refused the bpf_loop form of a capture program; loading the \
                 unrolled form (at most 16 iovecs copied per syscall)"
            );
            load_object(options, mode, false)
        }
        other => other,
    }
}

fn load_object(
    options: &ProbeOptions,
    mode: Mode,
    bpf_loop: bool,
) -> Result<LoadedProbes, ProbeError> {
    let offsets: KernelOffsets = offsets::from_btf_file(preflight::VMLINUX_BTF)?;
    tracing::debug!(?offsets, "kernel struct offsets from BTF");
    let settings = Settings {
        agent_tgid: std::process::id(),
        capture_bytes: options.capture_bytes.min(MAX_CAPTURE_BYTES as u32),
        filter_flags: options.filters.flags(),
        wakeup_bytes: options.wakeup_bytes,
        features: if bpf_loop {
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
    let mut support = KernelSupport::new(kernel_release(), bpf_loop);
    load_programs(&mut ebpf, options.tls, mode, &mut support)?;
    Ok(LoadedProbes {
        ebpf,
        support,
        empty_programs: mode == Mode::Empty,
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
