//! Start-up checks that turn the usual ways a host can't run the agent into one clear line:
//! missing privileges, a kernel without BTF or ring buffers, tracefs not mounted (which we fix).

use std::path::Path;

use super::{ProbeError, capabilities};

/// Where the kernel publishes its own type information.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

/// Runs every check, mounting tracefs when needed.
pub fn run() -> Result<(), ProbeError> {
    check_capabilities()?;
    check_kernel_version()?;
    check_btf()?;
    ensure_tracefs()?;
    raise_memlock();
    Ok(())
}

/// The essential capabilities (or CAP_SYS_ADMIN, which covers them on kernels before 5.8) are
/// required; each other one missing is a warning saying what the agent cannot do without it.
fn check_capabilities() -> Result<(), ProbeError> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| ProbeError::Preflight(format!("cannot read /proc/self/status: {e}")))?;
    let effective = parse_cap_eff(&status).ok_or_else(|| {
        ProbeError::Preflight("cannot find CapEff in /proc/self/status".to_string())
    })?;
    let missing = capabilities::missing(effective);
    let sys_admin = !missing.iter().any(|c| c.name == "SYS_ADMIN");
    if !sys_admin && missing.iter().any(|c| c.essential) {
        return Err(ProbeError::Preflight(
            "missing capabilities: sightline needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) to \
             load its probes; run it as root (sudo sightline) or grant them (`sightline \
             capabilities` lists what it uses)"
                .to_string(),
        ));
    }
    for capability in missing.iter().filter(|c| !c.essential) {
        tracing::warn!(
            capability = format!("CAP_{}", capability.name),
            needed_to = capability.why,
            "missing capability: capture continues without what it allows"
        );
    }
    Ok(())
}

/// The effective capability mask from the text of /proc/self/status.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

fn check_kernel_version() -> Result<(), ProbeError> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    match parse_kernel_version(&release) {
        Some(version) if version >= (5, 8) => Ok(()),
        Some((major, minor)) => Err(ProbeError::Preflight(format!(
            "kernel {major}.{minor} is too old: sightline needs Linux 5.8 or newer (BPF ring buffers)"
        ))),
        None => Ok(()), // Unknown format: let the loader report what really fails.
    }
}

/// Whether the running kernel is at least `major.minor` (unknown: no).
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    parse_kernel_version(&release).is_some_and(|v| v >= (major, minor))
}

/// (major, minor) from a kernel release string such as "6.18.44-fc-v669".
pub fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn check_btf() -> Result<(), ProbeError> {
    if Path::new(VMLINUX_BTF).exists() {
        return Ok(());
    }
    Err(ProbeError::Preflight(format!(
        "this kernel has no BTF type information ({VMLINUX_BTF} is missing): sightline needs a \
         kernel built with CONFIG_DEBUG_INFO_BTF=y (the default of current distributions)"
    )))
}

/// Tracepoints are attached through tracefs, which a fresh host may not have mounted.
fn ensure_tracefs() -> Result<(), ProbeError> {
    if Path::new(TRACEFS).join("events").exists()
        || Path::new(DEBUGFS_TRACING).join("events").exists()
    {
        return Ok(());
    }
    tracing::info!(path = TRACEFS, "tracefs is not mounted; mounting it");
    let status = std::process::Command::new("mount")
        .args(["-t", "tracefs", "nodev", TRACEFS])
        .status();
    match status {
        Ok(s) if s.success() && Path::new(TRACEFS).join("events").exists() => Ok(()),
        Ok(s) => Err(ProbeError::Preflight(format!(
            "tracefs is not mounted and `mount -t tracefs nodev {TRACEFS}` failed ({s}); mount it \
             (or give the agent CAP_SYS_ADMIN) and start again"
        ))),
        Err(e) => Err(ProbeError::Preflight(format!(
            "tracefs is not mounted and running `mount` failed: {e}; run `mount -t tracefs nodev \
             {TRACEFS}` and start again"
        ))),
    }
}

/// Whether tracefs lists the tracepoint (`sightline check` looks it up without attaching).
pub fn tracepoint_exists(category: &str, name: &str) -> Result<(), String> {
    let found = [TRACEFS, DEBUGFS_TRACING].iter().any(|root| {
        Path::new(root)
            .join("events")
            .join(category)
            .join(name)
            .join("id")
            .exists()
    });
    if found {
        Ok(())
    } else {
        Err("this kernel has no such tracepoint".to_string())
    }
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; newer ones ignore it. Raising it is
/// harmless either way, and failing to is only worth a debug line.
fn raise_memlock() {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let unlimited = Rlimit {
        current: None,
        maximum: None,
    };
    if setrlimit(Resource::Memlock, unlimited).is_err() {
        tracing::debug!("could not raise RLIMIT_MEMLOCK");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_effective_capabilities() {
        let status = "Name:\tsightline\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(status), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_cap_eff("Name: x\n"), None);
    }

    #[test]
    fn reads_kernel_versions() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v669\n"), Some((6, 18)));
        assert_eq!(parse_kernel_version("5.4.0-150-generic"), Some((5, 4)));
        assert_eq!(parse_kernel_version("garbage"), None);
    }
}
