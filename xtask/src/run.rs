//! `cargo xtask run`: set up, build the release binary, run it (through sudo when not root:
//! loading eBPF programs needs privileges).

use std::process::Command;

use crate::{setup, shell};

pub fn run(args: &[String]) -> anyhow::Result<()> {
    setup::run()?;
    let binary = build_release_agent()?;
    let mut cmd = if shell::is_root() {
        Command::new(&binary)
    } else {
        eprintln!("xtask: the agent loads eBPF programs; running it with sudo");
        let mut sudo = Command::new("sudo");
        sudo.arg(&binary);
        sudo
    };
    shell::run(cmd.args(args))
}

/// Builds the agent in release mode; returns the binary's path.
pub fn build_release_agent() -> anyhow::Result<std::path::PathBuf> {
    let root = shell::workspace_root();
    shell::run(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "--package",
        "sightline",
    ]))?;
    Ok(root.join("target/release/sightline"))
}
