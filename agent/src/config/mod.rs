//! The run's settings: the command line, plus the config file (`file`) for what does not fit
//! on one (identity, Kubernetes, service naming rules).

pub mod file;
pub mod reload;

use std::path::PathBuf;

use crate::{conn::TrackerLimits, probes::ProbeOptions};

/// How calls are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// A readable line per call.
    Terminal,
    /// One JSON object per line (OpenTelemetry attribute names).
    Json,
    /// No local output (export over OTLP only).
    None,
}

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub probes: ProbeOptions,
    /// Where liveness and readiness are served; `None`: nowhere.
    pub health: Option<std::net::SocketAddr>,
    pub tracker: TrackerLimits,
    pub output: OutputFormat,
    /// Write the output here instead of stdout.
    pub output_file: Option<PathBuf>,
    pub dump_events: Option<PathBuf>,
    pub capture_queue: usize,
    pub sink_queue: usize,
    /// Where the host's /proc is.
    pub proc_root: String,
    /// TLS plaintext capture through uprobes; `None` when turned off.
    pub tls: Option<crate::tls::AttachConfig>,
    /// The inventory's database; `None`: no inventory.
    pub inventory_db: Option<PathBuf>,
    /// The config file, read again on SIGHUP; `None`: defaults only.
    pub config_path: Option<PathBuf>,
    /// From the config file (defaults without one).
    pub file: file::FileConfig,
}
