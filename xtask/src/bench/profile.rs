//! Where the agent's own CPU goes: a perf profile of the agent (symbols, self time) during one
//! extra fixed-rate run per scenario and output (JSON lines, OTLP/gRPC), not counted in the
//! measurements (`--profile`).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use super::{
    Settings,
    agent::Agent,
    load::{self, RateOptions},
    variant::Variant,
};
use crate::shell;

/// Profiles the agent in `variant` while `url` gets the fixed rate; writes
/// `profile-{name}-{variant}.txt` into `out`.
#[allow(clippy::too_many_arguments)]
pub fn agent(
    settings: &Settings,
    variant: Variant,
    name: &str,
    url: &str,
    options: RateOptions,
    port: u16,
    work: &Path,
    out: &Path,
) -> anyhow::Result<PathBuf> {
    if !shell::has_program("perf") {
        anyhow::bail!("--profile needs perf (Debian: apt-get install linux-perf)");
    }
    let agent = Agent::start(settings, variant, port, work)?;
    let name = format!("{name}-{}", variant.name());
    let data = work.join(format!("perf-{name}.data"));
    let mut perf = Command::new("perf")
        .args([
            "record",
            "-q",
            "-F",
            "2000",
            "-p",
            &agent.pid().to_string(),
            "-o",
        ])
        .arg(&data)
        .spawn()
        .context("starting perf record")?;
    let run = load::oha(&settings.oha, url, settings.rate, settings.seconds, options);
    super::signal(perf.id(), "INT")?;
    perf.wait()?;
    agent.stop()?;
    run?;
    let report = shell::output(
        Command::new("perf")
            .args([
                "report",
                "--stdio",
                "--sort",
                "dso,symbol",
                "--percent-limit",
                "0.7",
                "-i",
            ])
            .arg(&data),
    )?;
    let path = out.join(format!("profile-{name}.txt"));
    let lines: Vec<&str> = report
        .lines()
        // perf pads each line with empty columns ("-").
        .map(|l| l.trim_end_matches([' ', '-']))
        .filter(|l| !l.trim().is_empty() && !l.starts_with("# ") && *l != "#")
        .collect();
    std::fs::write(
        &path,
        format!(
            "perf profile of the agent (self time) during {} s at {} requests/s: {name}\n\n{}\n",
            settings.seconds.as_secs(),
            settings.rate,
            lines.join("\n")
        ),
    )?;
    Ok(path)
}
