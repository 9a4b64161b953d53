//! Loading the programs one by one, so that a kernel's refusal costs only the feature of the
//! refused program (`programs::Feature`); a refused capture program is the one fatal case.

use aya::{
    Ebpf,
    programs::{ProgramError, TracePoint, UProbe},
};

use super::{
    ProbeError,
    loader::typed_program,
    preflight,
    programs::{self, Feature, Hook, PROGRAMS, Program},
    simulate,
    support::{self, FeatureState, KernelSupport},
};

/// Whether programs are attached (the agent) or only loaded and their tracepoints looked up
/// (`sightline check`, which must leave nothing behind and tries every program).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    Run,
    Check,
    /// The benchmark's floor: each program's empty twin (`programs::empty_twin`) attached in
    /// its place, at the same tracepoints (and by `crate::tls`, the same uprobes).
    Empty,
}

/// Why a program could not be used.
enum Refusal {
    /// The kernel's doing: the verifier's reason, or a tracepoint missing or not attachable.
    Kernel(String),
    /// Not the kernel's doing (a build mismatch): always fatal.
    Other(ProbeError),
}

/// Loads (and for the agent, attaches) every program, marking in `support` each feature the
/// options leave out or the kernel refuses. In `Run` and `Empty` modes a refused feature's
/// programs are unloaded and its later programs not tried.
pub(super) fn load_programs(
    ebpf: &mut Ebpf,
    tls: bool,
    mode: Mode,
    support: &mut KernelSupport,
) -> Result<(), ProbeError> {
    for program in PROGRAMS {
        let feature = program.feature;
        if feature.is_tls() && !tls {
            support.set(feature, FeatureState::Disabled);
            continue;
        }
        if mode != Mode::Check && !support.is_on(feature) {
            continue;
        }
        let loaded = match simulate::refusal(program.name) {
            Some(reason) => Err(Refusal::Kernel(reason)),
            None if mode == Mode::Empty => load_empty_twin(ebpf, program),
            None => load_program(ebpf, program, mode),
        };
        let reason = match loaded {
            Ok(()) => continue,
            Err(Refusal::Kernel(reason)) => reason,
            Err(Refusal::Other(error)) => return Err(error),
        };
        if feature == Feature::Capture {
            return Err(ProbeError::Refused {
                program: program.name.to_string(),
                kernel: support.kernel.clone(),
                reason,
            });
        }
        let program = program.name.to_string();
        support.set(feature, FeatureState::Off { program, reason });
        if mode != Mode::Check {
            unload_feature(ebpf, feature);
        }
    }
    Ok(())
}

/// Loads one program and, for the agent, attaches its tracepoints.
fn load_program(ebpf: &mut Ebpf, program: &Program, mode: Mode) -> Result<(), Refusal> {
    let verifier = |source: ProgramError| match source {
        ProgramError::LoadError {
            verifier_log,
            io_error,
        } => {
            let log = verifier_log.to_string();
            tracing::debug!(program = program.name, log, "verifier log");
            Refusal::Kernel(format!("{} ({io_error})", support::verifier_reason(&log)))
        }
        source => Refusal::Other(ProbeError::Program {
            name: program.name.to_string(),
            source: Box::new(source),
        }),
    };
    // An empty twin stands in for several programs: loaded by the first of them.
    let loaded = mode == Mode::Empty && ebpf.program(program.name).is_some_and(|p| p.fd().is_ok());
    match program.hook {
        Hook::Uprobe if loaded => Ok(()),
        Hook::Uprobe => typed_program::<UProbe>(ebpf, program.name)
            .map_err(Refusal::Other)?
            .load()
            .map_err(verifier),
        Hook::Tracepoints(points) => {
            let prog = typed_program::<TracePoint>(ebpf, program.name).map_err(Refusal::Other)?;
            if !loaded {
                prog.load().map_err(verifier)?;
            }
            for (category, name) in points {
                let attached = match mode {
                    Mode::Run | Mode::Empty => prog
                        .attach(category, name)
                        .map(drop)
                        .map_err(|e| e.to_string()),
                    Mode::Check => preflight::tracepoint_exists(category, name),
                };
                attached.map_err(|e| {
                    Refusal::Kernel(format!(
                        "attaching to tracepoint {category}/{name} failed: {e}"
                    ))
                })?;
            }
            Ok(())
        }
    }
}

/// Loads a program's empty twin (once: a twin stands in for several programs) and attaches it
/// at the program's tracepoints.
fn load_empty_twin(ebpf: &mut Ebpf, program: &Program) -> Result<(), Refusal> {
    let twin = Program {
        name: programs::empty_twin(program.name),
        ..*program
    };
    load_program(ebpf, &twin, Mode::Empty)
}

/// Unloads (and so detaches) every program of a feature the kernel refused in part.
fn unload_feature(ebpf: &mut Ebpf, feature: Feature) {
    for program in PROGRAMS.iter().filter(|p| p.feature == feature) {
        let unloaded = match program.hook {
            Hook::Uprobe => typed_program::<UProbe>(ebpf, program.name).map(|p| p.unload()),
            Hook::Tracepoints(_) => {
                typed_program::<TracePoint>(ebpf, program.name).map(|p| p.unload())
            }
        };
        // Not loaded (the refused one, or those after it) is the usual answer here.
        if let Ok(Err(error)) = unloaded {
            tracing::debug!(program = program.name, %error, "not unloaded");
        }
    }
}
