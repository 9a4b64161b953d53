//! Running commands with clear errors.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

/// Runs a command, failing with its command line when it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// Test totals, summed over every `test result:` line of cargo test.
#[derive(Clone, Copy, Debug, Default)]
pub struct TestTotals {
    pub passed: u64,
    pub failed: u64,
}

/// Runs `cargo test ...`, passing its output through, and adds up its test results.
pub fn run_tests(cmd: &mut Command, totals: &mut TestTotals) -> anyhow::Result<()> {
    use std::io::{BufRead as _, BufReader};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {cmd:?}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        // A guest's console ends its lines with \r\n.
        let line = line.trim_end_matches('\r');
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            totals.passed += count_before(rest, " passed");
            totals.failed += count_before(rest, " failed");
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// The number just before `label` in "ok. 5 passed; 0 failed; ...".
fn count_before(text: &str, label: &str) -> u64 {
    text.split(';')
        .find(|part| part.contains(label))
        .and_then(|part| part.split_whitespace().rev().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Runs a command and returns its standard output.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether a program is on PATH (or in the sbin directories, which a non-login PATH may lack).
pub fn has_program(name: &str) -> bool {
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false);
    on_path
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|dir| std::path::Path::new(dir).join(name).is_file())
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|u| u.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Installs Debian packages for the programs that are missing: (program, package) pairs.
pub fn ensure_debian_programs(needed: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<(&str, &str)> = needed
        .iter()
        .copied()
        .filter(|(p, _)| !has_program(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|(_, pkg)| *pkg).collect();
    let programs: Vec<&str> = missing.iter().map(|(p, _)| *p).collect();
    if !has_program("apt-get") || !is_root() {
        bail!(
            "missing programs {programs:?}: install the Debian packages {packages:?} (as root: apt-get install {})",
            packages.join(" ")
        );
    }
    eprintln!("xtask: installing {}", packages.join(" "));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    // No service of these packages may start (nginx on :80, Prometheus scraping itself every
    // 15 s): the tests' agents see all of the host's HTTP, and counts must be exact.
    let policy = std::path::Path::new("/usr/sbin/policy-rc.d");
    let own_policy = !policy.exists()
        && std::fs::write(
            policy,
            "#!/bin/sh\n# xtask: no service starts during the install\nexit 101\n",
        )
        .is_ok();
    if own_policy {
        let _ = run(Command::new("chmod").args(["0755", "/usr/sbin/policy-rc.d"]));
    }
    let installed = run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&packages)
        .env("DEBIAN_FRONTEND", "noninteractive"));
    if own_policy {
        let _ = std::fs::remove_file(policy);
    }
    installed?;
    for program in programs {
        if !has_program(program) {
            bail!("{program} is still missing after installing {packages:?}");
        }
    }
    Ok(())
}
