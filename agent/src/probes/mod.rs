//! Loading the kernel programs and attaching them: start-up checks (`preflight`), kernel
//! struct offsets from BTF (`offsets`), filters (`filters`), the programs and the feature each
//! gives (`programs`), what the kernel accepted (`support`) and the loading itself (`loader`).

pub mod capabilities;
pub mod filters;
pub mod loader;
pub mod offsets;
pub mod preflight;
mod program_load;
pub mod programs;
pub mod simulate;
pub mod support;

pub use loader::{LoadedProbes, ProbeOptions};

/// Errors while preparing or attaching the probes. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Preflight(String),
    #[error("reading kernel type information from {path}: {reason}")]
    Btf { path: String, reason: String },
    #[error("loading the eBPF programs failed: {0}")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("kernel {kernel} refused program {program}, which the capture needs: {reason}")]
    Refused {
        program: String,
        kernel: String,
        reason: String,
    },
    #[error("program {name} is missing from the eBPF object (build mismatch)")]
    MissingProgram { name: String },
    #[error("map {name} is missing from the eBPF object (build mismatch)")]
    MissingMap { name: String },
    #[error("attaching {program} to tracepoint {category}/{tracepoint} failed: {source}")]
    Attach {
        program: String,
        category: String,
        tracepoint: String,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("attaching {program} to {path} at offset {offset:#x} failed: {source}")]
    AttachUprobe {
        program: String,
        path: String,
        offset: u64,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("loading program {name} failed: {source}")]
    Program {
        name: String,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("map {name}: {source}")]
    Map {
        name: String,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    #[error("cgroup {path}: {source}")]
    Cgroup {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
