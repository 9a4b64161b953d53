//! Installs the eBPF toolchain: nightly's rust-src (for -Z build-std=core) and a bpf-linker
//! linked against the nightly toolchain's own LLVM (their major versions must match; there is
//! usually no system LLVM of that version). Idempotent and quiet when there is nothing to do.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

use crate::shell::{self, has_program, output};

const NIGHTLY: &str = "nightly";

pub fn run() -> anyhow::Result<()> {
    if !has_program("rustup") {
        bail!(
            "rustup is missing: install it from the Rust project (rustup.rs), then run `cargo xtask setup` again"
        );
    }
    ensure_nightly()?;
    ensure_rust_src()?;
    ensure_bpf_linker()
}

fn ensure_nightly() -> anyhow::Result<()> {
    ensure_rustup(
        &["toolchain", "list"],
        "nightly",
        &["toolchain", "install", NIGHTLY, "--profile", "minimal"],
        "the nightly Rust toolchain (builds the eBPF programs)",
    )
}

fn ensure_rust_src() -> anyhow::Result<()> {
    ensure_rustup(
        &["component", "list", "--installed", "--toolchain", NIGHTLY],
        "rust-src",
        &["component", "add", "rust-src", "--toolchain", NIGHTLY],
        "rust-src for the nightly toolchain",
    )
}

/// Runs `rustup install_args` unless a line of `rustup list_args` starts with `present`.
fn ensure_rustup(
    list_args: &[&str],
    present: &str,
    install_args: &[&str],
    what: &str,
) -> anyhow::Result<()> {
    let listed = output(Command::new("rustup").args(list_args))?;
    if listed.lines().any(|l| l.starts_with(present)) {
        return Ok(());
    }
    eprintln!("xtask: installing {what}");
    shell::run(Command::new("rustup").args(install_args))
        .with_context(|| format!("could not install {what}"))
}

/// The nightly toolchain's libLLVM and its major version.
struct NightlyLlvm {
    sysroot: PathBuf,
    lib_name: String,
    major: String,
}

fn nightly_llvm() -> anyhow::Result<NightlyLlvm> {
    let sysroot = PathBuf::from(
        output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?.trim(),
    );
    let lib_dir = sysroot.join("lib");
    let lib_name = std::fs::read_dir(&lib_dir)
        .with_context(|| format!("reading {}", lib_dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with("libLLVM.so."))
        .with_context(|| {
            format!(
                "the nightly toolchain ships no libLLVM.so.* in {}",
                lib_dir.display()
            )
        })?;
    let version = output(Command::new("rustc").args(["+nightly", "-vV"]))?;
    let major = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .map(str::to_string)
        .context("rustc +nightly -vV does not say its LLVM version")?;
    Ok(NightlyLlvm {
        sysroot,
        lib_name,
        major,
    })
}

fn ensure_bpf_linker() -> anyhow::Result<()> {
    let llvm = nightly_llvm()?;
    if bpf_linker_matches(&llvm) {
        return Ok(());
    }
    let cache = cache_dir()?;
    let prefix = cache.join("llvm-prefix");
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    let target = llvm.sysroot.join("lib").join(&llvm.lib_name);
    for link in [lib.join("libLLVM.so"), lib.join(&llvm.lib_name)] {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    eprintln!(
        "xtask: building bpf-linker against the nightly toolchain's LLVM {} (about a minute)",
        llvm.major
    );
    shell::run(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--locked",
                "--force",
                "--no-default-features",
                "--features",
            ])
            .arg(format!("llvm-{}", llvm.major))
            .env("LLVM_PREFIX", &prefix),
    )
    .with_context(|| {
        format!(
            "could not build bpf-linker for LLVM {} (bpf-linker 0.13 supports LLVM 21 to 23)",
            llvm.major
        )
    })?;
    if !bpf_linker_matches(&llvm) {
        bail!(
            "bpf-linker was installed but does not load {}",
            llvm.lib_name
        );
    }
    Ok(())
}

/// bpf-linker is installed and its libLLVM resolves to the nightly toolchain's one.
fn bpf_linker_matches(llvm: &NightlyLlvm) -> bool {
    let Some(path) = which("bpf-linker") else {
        return false;
    };
    let Ok(ldd) = output(Command::new("ldd").arg(&path)) else {
        return false;
    };
    ldd.lines().any(|line| {
        let line = line.trim();
        line.starts_with(&llvm.lib_name)
            && line
                .split("=>")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .is_some_and(|resolved| std::path::Path::new(resolved).exists())
    })
}

fn which(program: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Where xtask keeps what it installs for itself (bpf-linker's LLVM prefix, virtme-ng).
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .context("neither XDG_CACHE_HOME nor HOME is set")?;
    Ok(base.join("sightline"))
}
