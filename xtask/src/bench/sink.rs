//! The OTLP receiver of the export variants: `otlp_sink` (tests/src/bin), a process of its own
//! started with each agent, which decodes and counts what it receives and keeps nothing.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, ChildStdout, Command, Stdio},
};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::shell;

/// Where the receiver listens: gRPC, then HTTP.
pub const GRPC_PORT: u16 = 19_317;
pub const HTTP_PORT: u16 = 19_318;

/// What the receiver counted.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize)]
pub struct Received {
    pub spans: u64,
    pub log_records: u64,
    pub metric_exports: u64,
    pub export_requests: u64,
    pub wire_bytes: u64,
    pub undecodable: u64,
}

pub struct Sink {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

/// Builds the receiver (release) and returns its path.
pub fn build() -> anyhow::Result<std::path::PathBuf> {
    let root = shell::workspace_root();
    shell::run(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "sightline-tests",
        "--bin",
        "otlp_sink",
    ]))?;
    Ok(root.join("target/release/otlp_sink"))
}

impl Sink {
    /// Starts the receiver and waits until it listens.
    pub fn start(binary: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .args([GRPC_PORT.to_string(), HTTP_PORT.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut stdout = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        if line.trim() != "listening" {
            let _ = child.kill();
            bail!("the OTLP receiver did not start: {line:?}");
        }
        Ok(Self { child, stdout })
    }

    /// Stops the receiver and returns what it counted.
    pub fn stop(mut self) -> anyhow::Result<Received> {
        super::signal(self.child.id(), "INT")?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        self.child.wait()?;
        serde_json::from_str(&line)
            .with_context(|| format!("the OTLP receiver's totals do not parse: {line:?}"))
    }
}

/// A receiver left running by an error in between is stopped with it.
impl Drop for Sink {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
