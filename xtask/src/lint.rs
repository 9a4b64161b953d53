//! `cargo xtask lint`: formatting and clippy, for the userspace crates (stable) and the eBPF
//! crate (nightly, for its bpfel-unknown-none target).

use std::process::Command;

use crate::{setup, shell};

pub fn run() -> anyhow::Result<()> {
    setup::run()?;
    let root = shell::workspace_root();
    shell::run(
        Command::new("cargo")
            .current_dir(&root)
            .args(["fmt", "--all", "--check"]),
    )?;
    shell::run(Command::new("cargo").current_dir(&root).args([
        "clippy",
        "--workspace",
        "--exclude",
        "agent-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    shell::run(
        Command::new("cargo")
            .current_dir(root.join("agent-ebpf"))
            .args([
                "+nightly",
                "clippy",
                "--package",
                "agent-ebpf",
                "--release",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--",
                "-D",
                "warnings",
            ])
            .env_remove("RUSTC")
            .env_remove("RUSTC_WORKSPACE_WRAPPER"),
    )
}
