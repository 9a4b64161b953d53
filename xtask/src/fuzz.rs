//! The fuzz targets in `fuzz/` (cargo fuzz, libFuzzer, AddressSanitizer): every parser of
//! untrusted input. `cargo xtask test` runs each for a bounded time from its checked-in seed
//! corpus (`fuzz/corpus/<target>`); `cargo xtask fuzz [TARGET] [--seconds N]` runs longer.
//! New inputs libFuzzer finds go to `target/fuzz-corpus/<target>`, never into the checked-in
//! seeds; a crash fails the run and leaves its input under `fuzz/artifacts/<target>`.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::shell;

/// Every fuzz target (a `[[bin]]` of fuzz/Cargo.toml).
pub const TARGETS: &[&str] = &[
    "http1", "http2", "hpack", "jwt", "openapi", "config", "event", "posture",
];

/// Seconds per target in `cargo xtask test`.
pub const TEST_SECONDS: u32 = 20;

pub fn run(only: Option<&str>, seconds: u32) -> anyhow::Result<()> {
    let targets: Vec<&str> = match only {
        Some(name) if TARGETS.contains(&name) => vec![name],
        Some(name) => bail!(
            "no fuzz target {name}: the targets are {}",
            TARGETS.join(", ")
        ),
        None => TARGETS.to_vec(),
    };
    ensure_cargo_fuzz()?;
    let root = shell::workspace_root();
    shell::run(cargo_fuzz(&root).args(["build", "-O"]))
        .context("building the fuzz targets failed")?;
    for target in targets {
        let work = root.join("target/fuzz-corpus").join(target);
        std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        shell::run(
            cargo_fuzz(&root)
                .args(["run", "-O", target])
                .arg(&work)
                .arg(root.join("fuzz/corpus").join(target))
                .arg("--")
                .arg(format!("-max_total_time={seconds}"))
                .args(["-rss_limit_mb=2048", "-timeout=10", "-print_final_stats=1"]),
        )
        .with_context(|| {
            format!("fuzz target {target} found a crash (input under fuzz/artifacts/{target})")
        })?;
    }
    Ok(())
}

fn cargo_fuzz(root: &std::path::Path) -> Command {
    let mut command = Command::new("cargo");
    command.current_dir(root).args(["+nightly", "fuzz"]);
    command
}

/// Installs cargo-fuzz from crates.io when it is missing.
fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let present = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-fuzz");
    shell::run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
        .context("could not install cargo-fuzz")
}
