//! `cargo xtask bench`: what the agent costs, measured the way a user would. Real servers
//! (nginx plaintext, TLS and HTTP/2; a Go service) under real load generators (wrk, h2load,
//! oha), each load run without the agent, with it in each output (JSON lines, OTLP/gRPC,
//! OTLP/HTTP), and with empty programs at the same hooks (the floor), in alternating rounds;
//! then sustained load for drops, and 10,000 open connections for memory. Writes `report.json`, `report.md` and
//! one latency plot per scenario into the output directory (root: it loads the probes).

mod agent;
mod bpf;
mod conns;
mod load;
mod phases;
mod plot;
mod proc;
mod profile;
mod report;
mod scenario;
mod servers;
mod sink;
mod summary;
mod variant;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, bail};

use crate::{setup, shell};

/// oha, the fixed-rate load generator (not in Debian): installed from crates.io at this version.
const OHA_VERSION: &str = "1.16.0";

/// Programs the benchmark drives: (program, Debian package).
const PROGRAMS: &[(&str, &str)] = &[
    ("nginx", "nginx-light"),
    ("wrk", "wrk"),
    ("h2load", "nghttp2-client"),
    ("go", "golang-go"),
    ("openssl", "openssl"),
    ("bpftool", "bpftool"),
];

/// What the command line asked for.
#[derive(Clone, Debug, clap::Args)]
pub struct Options {
    /// Rounds of (without, with) per scenario; the order alternates between rounds.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Seconds per load run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Requests per second of the fixed-rate runs (latency, CPU per call, BPF time).
    #[arg(long, default_value_t = 5_000)]
    pub rate: u32,
    /// Seconds of the sustained 20,000 calls/s run (0 skips it).
    #[arg(long, default_value_t = 60)]
    pub sustain_seconds: u64,
    /// Only the scenarios and runs whose name contains this (scenarios: nginx-http,
    /// nginx-https, nginx-h2-tls, go-http; runs: sustained, connections).
    #[arg(long)]
    pub only: Option<String>,
    /// Also write a perf profile of the agent per scenario (an extra run, not measured).
    #[arg(long)]
    pub profile: bool,
    /// Also measure the agent at `--cpu-priority idle` (JSON lines).
    #[arg(long)]
    pub idle: bool,
    /// Where the report and the plots go.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
}

/// What every run needs.
pub struct Settings {
    pub agent: PathBuf,
    /// The OTLP receiver (`otlp_sink`).
    pub sink: PathBuf,
    /// How the agent runs, each measured in every round.
    pub variants: Vec<variant::Variant>,
    pub oha: PathBuf,
    pub rounds: u32,
    pub seconds: Duration,
    pub rate: u32,
    pub sustain: Duration,
    /// Where perf profiles go, when asked for.
    pub profile_to: Option<PathBuf>,
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    if !shell::is_root() {
        bail!("the benchmark loads the agent's eBPF programs: run `cargo xtask bench` as root");
    }
    setup::run()?;
    shell::ensure_debian_programs(PROGRAMS)?;
    refuse_other_agents()?;
    let root = shell::workspace_root();
    let settings = Settings {
        agent: crate::run::build_release_agent()?,
        sink: sink::build()?,
        variants: variant::Variant::DEFAULT
            .into_iter()
            .chain(options.idle.then_some(variant::Variant::JsonIdle))
            .collect(),
        oha: install_oha(&root)?,
        rounds: options.rounds.max(1),
        seconds: Duration::from_secs(options.seconds.max(1)),
        rate: options.rate,
        sustain: Duration::from_secs(options.sustain_seconds),
        profile_to: options.profile.then(|| root.join(&options.out)),
    };
    let out = root.join(&options.out);
    let work = out.join("work");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    let assets = servers::Assets::prepare(&work)?;
    let _stats = bpf::StatsEnabled::new()?;

    let mut runs = Vec::new();
    let chosen = |name: &str| {
        options
            .only
            .as_deref()
            .is_none_or(|only| name.contains(only))
    };
    for (i, s) in scenario::SCENARIOS.iter().enumerate() {
        if !chosen(s.name) {
            continue;
        }
        runs.push(scenario::run(
            s,
            &settings,
            &assets,
            18_600 + i as u16,
            &work,
        )?);
    }
    let sustained = if chosen("sustained") && settings.sustain > Duration::ZERO {
        println!("bench: sustained load for {} s", settings.sustain.as_secs());
        Some(phases::sustained(&settings, &assets, 18_650, &work)?)
    } else {
        None
    };
    let connections = if chosen("connections") {
        println!("bench: 10,000 open connections");
        Some(phases::connections(&settings, &assets, 18_651, &work)?)
    } else {
        None
    };

    let summaries: Vec<_> = runs
        .iter()
        .flat_map(|run| {
            settings
                .variants
                .iter()
                .map(|v| summary::summarise(run, *v))
        })
        .collect();
    let startup = report::startup(&runs);
    let targets = report::targets(
        &summaries,
        &startup,
        sustained.as_ref(),
        connections.as_ref(),
    );
    let report = report::Report {
        date: shell::output(Command::new("date").args(["-u", "+%Y-%m-%d"]))?
            .trim()
            .to_string(),
        commit: commit(&root),
        machine: machine()?,
        rounds: settings.rounds,
        seconds_per_run: settings.seconds.as_secs(),
        fixed_rate_rps: settings.rate,
        summaries,
        startup,
        sustained,
        connections,
        targets,
        runs,
    };
    let mut markdown = report::markdown(&report);
    markdown.push('\n');
    for run in &report.runs {
        let name = plot::latency(run, settings.rate, &out)?;
        markdown.push_str(&format!("![{} latency]({name})\n", run.name));
    }
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(out.join("report.md"), &markdown)?;
    println!("{markdown}");
    println!("bench: report in {}", out.display());
    Ok(())
}

/// Another agent on the machine would be measured with ours (and would trace our load).
fn refuse_other_agents() -> anyhow::Result<()> {
    for entry in std::fs::read_dir("/proc")? {
        let path = entry?.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() == "sightline" {
            bail!(
                "a sightline agent runs already ({}): stop it first, it would skew every number",
                path.display()
            );
        }
    }
    Ok(())
}

fn install_oha(root: &Path) -> anyhow::Result<PathBuf> {
    let tools = root.join("target/bench-tools");
    let oha = tools.join("bin/oha");
    let installed = shell::output(Command::new(&oha).arg("--version"))
        .map(|v| v.contains(OHA_VERSION))
        .unwrap_or(false);
    if !installed {
        println!("bench: installing oha {OHA_VERSION} (cargo install)");
        shell::run(
            Command::new("cargo")
                .args([
                    "install",
                    "oha",
                    "--locked",
                    "--version",
                    OHA_VERSION,
                    "--root",
                ])
                .arg(&tools),
        )?;
    }
    Ok(oha)
}

fn commit(root: &Path) -> String {
    let head =
        shell::output(
            Command::new("git")
                .current_dir(root)
                .args(["rev-parse", "--short", "HEAD"]),
        )
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string());
    let dirty = shell::output(Command::new("git").current_dir(root).args([
        "status",
        "--porcelain",
        "--untracked-files=no",
    ]))
    .map(|s| !s.trim().is_empty())
    .unwrap_or(false);
    if dirty {
        format!("{head}+changes")
    } else {
        head
    }
}

fn machine() -> anyhow::Result<report::Machine> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Ok(report::Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_string())
            .unwrap_or_default(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .context("reading the kernel release")?
            .trim()
            .to_string(),
        memory_mib: meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024),
    })
}

/// Sends a signal with kill(1) (no unsafe code for one syscall).
pub fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
    shell::run(
        Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string()),
    )
}
