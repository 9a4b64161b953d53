//! `cargo xtask <command>`: the developer commands. `setup` installs the eBPF toolchain,
//! `run` builds and starts the agent, `test` runs every test (the kernel matrix included), `lint` checks formatting and
//! clippy for the userspace and eBPF crates, `fuzz` runs the fuzz targets, `bench` measures
//! what the agent costs.

#![allow(clippy::print_stdout)] // A command-line tool: its output is the point.

mod bench;
mod fuzz;
mod kernels;
mod lint;
mod run;
mod setup;
mod shell;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "Sightline developer commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what building the eBPF programs needs (idempotent, quiet when done).
    Setup,
    /// Set up, build in release mode and run the agent (arguments go to `sightline`).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up and run every test: lint, unit tests, integration tests (as root), then the
    /// kernel matrix (the smoke suite in a virtual machine on each kernel Debian offers).
    Test {
        /// Only run tests whose name contains this (the kernel matrix is then left out).
        filter: Option<String>,
        /// Only the kernel matrix, on this kernel series (e.g. 6.1).
        #[arg(long, value_name = "SERIES", conflicts_with = "filter")]
        kernel: Option<String>,
    },
    /// cargo fmt --check and clippy -D warnings on the userspace and eBPF crates.
    Lint,
    /// Run the fuzz targets (cargo fuzz) from their seed corpus, all or one.
    Fuzz {
        target: Option<String>,
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u32,
    },
    /// Measure the agent's overhead against real servers and load (root): with and without,
    /// alternating; writes a JSON report, a Markdown table and latency plots.
    Bench(bench::Options),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Setup => setup::run(),
        Command::Run { args } => run::run(&args),
        Command::Test { filter, kernel } => test::run(filter.as_deref(), kernel.as_deref()),
        Command::Lint => lint::run(),
        Command::Fuzz { target, seconds } => fuzz::run(target.as_deref(), seconds),
        Command::Bench(options) => bench::run(&options),
    }
}
