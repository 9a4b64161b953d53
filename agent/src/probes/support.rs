//! What the running kernel let the agent load: each feature on, turned off by the
//! configuration, or refused (with the program and the verifier's reason). Read by
//! `sightline check`, the start-up warnings, the TLS coverage report and the health metric.

use super::programs::Feature;

/// One feature's state on this kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeatureState {
    On,
    /// Not asked for (`--no-tls`): nothing of it was loaded.
    Disabled,
    /// The kernel refused one of its programs (or a tracepoint it needs is missing).
    Off {
        program: String,
        reason: String,
    },
}

impl FeatureState {
    pub fn name(&self) -> &'static str {
        match self {
            FeatureState::On => "on",
            FeatureState::Disabled => "disabled",
            FeatureState::Off { .. } => "off",
        }
    }
}

/// Every feature's state, in [`Feature::ALL`] order, and the kernel it was found on.
#[derive(Clone, Debug)]
pub struct KernelSupport {
    pub kernel: String,
    /// Whether the iovec copy runs through `bpf_loop` (5.17+) or its 16-iovec unrolled form.
    pub bpf_loop: bool,
    pub features: Vec<(Feature, FeatureState)>,
}

impl KernelSupport {
    pub fn new(kernel: String, bpf_loop: bool) -> Self {
        Self {
            kernel,
            bpf_loop,
            features: Feature::ALL
                .iter()
                .map(|f| (*f, FeatureState::On))
                .collect(),
        }
    }

    pub fn state(&self, feature: Feature) -> &FeatureState {
        self.features
            .iter()
            .find(|(f, _)| *f == feature)
            .map(|(_, s)| s)
            .unwrap_or(&FeatureState::On)
    }

    pub fn is_on(&self, feature: Feature) -> bool {
        *self.state(feature) == FeatureState::On
    }

    /// Why `feature` is not on, in words for a report; `None` when it is on.
    pub fn why_not(&self, feature: Feature) -> Option<String> {
        match self.state(feature) {
            FeatureState::On => None,
            FeatureState::Disabled => Some(format!("{} is turned off", feature.name())),
            FeatureState::Off { program, reason } => Some(format!(
                "kernel {} refused {program}: {reason}",
                self.kernel
            )),
        }
    }

    /// Marks `feature` as set; the first refusal of a feature is the one kept.
    pub fn set(&mut self, feature: Feature, state: FeatureState) {
        if let Some((_, current)) = self.features.iter_mut().find(|(f, _)| *f == feature)
            && !matches!(current, FeatureState::Off { .. })
        {
            *current = state;
        }
    }

    /// Features the kernel refused.
    pub fn refused(&self) -> impl Iterator<Item = Feature> + '_ {
        self.features
            .iter()
            .filter(|(_, s)| matches!(s, FeatureState::Off { .. }))
            .map(|(f, _)| *f)
    }
}

/// The verifier's reason for refusing a program: the last line of its log that is not one of
/// the statistics lines it ends with. The log's first line is often a harmless note (kernels
/// before 6.3 say "reg type unsupported for arg#0" about every context argument); the error
/// that stopped the verification is the last thing it printed.
pub fn verifier_reason(log: &str) -> String {
    const STATISTICS: &[&str] = &["verification time", "stack depth", "processed "];
    log.lines()
        .map(str::trim)
        .rev()
        .find(|line| !line.is_empty() && !STATISTICS.iter().any(|s| line.starts_with(s)))
        .unwrap_or("the verifier gave no reason")
        .to_string()
}

/// `sightline check`'s table: the kernel, what the start-up checks found (they passed, or
/// the check would have stopped with their error), then each feature.
pub fn render_check(support: &KernelSupport) -> String {
    let mut out = format!("kernel          {}\n", support.kernel);
    out.push_str("privileges      ok (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)\n");
    out.push_str("btf             ok (/sys/kernel/btf/vmlinux)\n");
    out.push_str("tracefs         ok\n");
    out.push_str("ring_buffer     ok (Linux 5.8+)\n");
    out.push_str(if support.bpf_loop {
        "bpf_loop        ok (every iovec of a syscall is copied)\n"
    } else {
        "bpf_loop        no (Linux 5.17+): at most 16 iovecs are copied per syscall\n"
    });
    for (feature, state) in &support.features {
        let line = match state {
            FeatureState::On => "on".to_string(),
            FeatureState::Disabled => "disabled by the options".to_string(),
            FeatureState::Off { program, reason } => format!(
                "off: the kernel refused {program}: {reason}; {}",
                feature.without()
            ),
        };
        out.push_str(&format!("{:<16}{line}\n", feature.name()));
    }
    out
}

/// The running kernel's release (`uname -r`), or "unknown".
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The end of the log Debian 12's kernel (6.1.0-57) gave for `tls_return` before it was
    /// fixed: its first line is the harmless note about the context argument.
    const LOG_6_1: &str = "reg type unsupported for arg#0 function tls_return#60\n\
        0: R1=ctx(off=0,imm=0) R10=fp0\n\
        931: (85) call bpf_probe_read_user#112\n\
        R2 unbounded memory access, use 'var &= const' or 'if (var < const)'\n\
        verification time 31074 usec\n\
        stack depth 240+0\n\
        processed 1254 insns (limit 1000000) max_states_per_insn 5 total_states 71 peak_states 71 mark_read 38\n";

    #[test]
    fn the_reason_is_the_last_line_before_the_statistics() {
        assert_eq!(
            verifier_reason(LOG_6_1),
            "R2 unbounded memory access, use 'var &= const' or 'if (var < const)'"
        );
        assert_eq!(verifier_reason(""), "the verifier gave no reason");
    }

    #[test]
    fn the_first_refusal_of_a_feature_is_kept() {
        let mut support = KernelSupport::new("6.1.0".to_string(), true);
        let off = |program: &str| FeatureState::Off {
            program: program.to_string(),
            reason: "no".to_string(),
        };
        support.set(Feature::GoTls, off("go_tls_return"));
        support.set(Feature::GoTls, off("go_tls_read_enter"));
        support.set(Feature::GoTls, FeatureState::On);
        assert_eq!(*support.state(Feature::GoTls), off("go_tls_return"));
        assert!(support.is_on(Feature::Capture));
        assert_eq!(support.refused().collect::<Vec<_>>(), [Feature::GoTls]);
        assert_eq!(
            support.why_not(Feature::GoTls).as_deref(),
            Some("kernel 6.1.0 refused go_tls_return: no")
        );
    }
}
