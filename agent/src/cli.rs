//! Command line. `sightline` alone runs the agent; `sightline check` only checks the host.

use std::path::PathBuf;

use agent_common::event::{DEFAULT_CAPTURE_BYTES, MAX_CAPTURE_BYTES};
use clap::{Args, Parser, Subcommand};

use crate::{
    config::{
        OutputFormat, RunConfig,
        file::{ConfigError, FileConfig},
    },
    conn::TrackerLimits,
    probes::{ProbeOptions, filters::Filters},
    tls::{AttachConfig, report::DEFAULT_REPORT_PATH},
};

#[derive(Debug, Parser)]
#[command(
    name = "sightline",
    version,
    about = "eBPF agent for API observability and API security"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // Parsed once at start; boxing buys nothing.
pub enum Command {
    /// Capture API calls and show them (the default).
    Run(RunArgs),
    /// Check that this host can run the agent: privileges, kernel, BTF, tracefs, then every
    /// program the agent would load with these options, loaded and unloaded (the kernel's
    /// verifier is the judge). Exit 1 when the agent cannot start.
    Check(CheckArgs),
    /// Show which processes' TLS traffic is captured, through which library, or why not (read
    /// from the running agent's coverage report).
    Tls(TlsArgs),
    /// Show the API inventory: every endpoint seen, per service (read from the agent's
    /// database; works while it runs).
    Inventory(InventoryArgs),
    /// Show the security findings (read from the agent's inventory database; works while it
    /// runs), most severe first.
    Findings(FindingsArgs),
    /// Show what changed in the inventory's endpoints, and when (read from the agent's
    /// database; works while it runs), oldest first.
    Changes(ChangesArgs),
    /// Write an OpenAPI 3.1 document reconstructed from a service's traffic (from the
    /// inventory database) to stdout.
    Openapi(OpenapiArgs),
    /// List the Linux capabilities the agent uses, and why (what a deployment grants it).
    Capabilities,
    /// Ask a running agent whether it is ready (exit 0) or not (exit 1): a probe command.
    Health(HealthArgs),
    /// Run a command (a service's tests) under capture: only its process tree is recorded,
    /// into a database of its own; its output and exit status pass through unchanged.
    Record(RecordArgs),
    /// Judge a recorded run (or the agent's database): exit 1 when a `--fail-on` condition
    /// holds for a result the baseline does not accept; write SARIF, JUnit XML and JSON.
    Gate(GateArgs),
}

/// Where `sightline record` keeps a run and `sightline gate` reads it unless told otherwise.
pub const DEFAULT_RECORD_DB: &str = "sightline-record.sqlite";

#[derive(Clone, Debug, Args)]
pub struct RecordArgs {
    /// The run's database (replaced at each run; `sightline gate --db` reads it).
    #[arg(long, visible_alias = "inventory-db", value_name = "PATH", default_value = DEFAULT_RECORD_DB)]
    pub db: PathBuf,
    /// An API spec to compare the run with (repeatable): short for an `[[api_specs]]` entry.
    #[arg(long = "spec", value_name = "PATH")]
    pub specs: Vec<PathBuf>,
    /// The `service.name` the specs document (one for all, or one per `--spec`). With one
    /// service, the command's processes that serve calls are named so.
    #[arg(long = "service", value_name = "NAME")]
    pub services: Vec<String>,
    /// Config file, as for the agent (naming rules, specs, findings settings).
    #[arg(long, value_name = "PATH", env = "SIGHTLINE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Also show the calls (default: nothing but the command's own output).
    #[arg(long, value_enum)]
    pub output: Option<OutputFormat>,
    /// Write the shown calls to this file (appends).
    #[arg(long, value_name = "PATH")]
    pub output_file: Option<PathBuf>,
    /// Do not attach uprobes to TLS libraries.
    #[arg(long)]
    pub no_tls: bool,
    /// Run the command as root even under sudo (by default it runs as the user who invoked
    /// sudo: SUDO_UID, SUDO_GID).
    #[arg(long)]
    pub as_root: bool,
    /// Seconds the processes the command leaves behind get to end before they are killed.
    #[arg(long, default_value_t = 10)]
    pub wait_secs: u64,
    /// The command and its arguments (after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

impl RecordArgs {
    /// The agent's options for the run (the rest as the agent's defaults).
    pub fn agent_options(&self) -> RunArgs {
        let mut run = Cli::parse_from(["sightline"]).run;
        run.config = self.config.clone();
        if let Some(output) = self.output {
            run.output = output;
        }
        run.output_file = self.output_file.clone();
        run.no_tls = self.no_tls;
        run
    }
}

#[derive(Clone, Debug, Args)]
pub struct GateArgs {
    /// The database to judge: a `sightline record` run's, or the agent's.
    #[arg(long, visible_alias = "inventory-db", value_name = "PATH", default_value = DEFAULT_RECORD_DB)]
    pub db: PathBuf,
    /// Fail on these, comma-separated: shadow, suspected-shadow, zombie, unused, any rule name
    /// or id (unauthenticated-success, SL-JWT-001, ...), severity>=LEVEL.
    #[arg(long, value_name = "CONDITIONS", value_parser = crate::gate::check::parse_terms)]
    pub fail_on: Option<crate::gate::check::Terms>,
    /// Only results not in this baseline fail.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Write every result of this run as the accepted baseline, and pass.
    #[arg(long, value_name = "FILE")]
    pub write_baseline: Option<PathBuf>,
    /// Write the results as SARIF 2.1.0 (GitHub code scanning, GitLab).
    #[arg(long, value_name = "FILE")]
    pub sarif: Option<PathBuf>,
    /// Write a JUnit XML report: a suite per condition, a case per endpoint.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write the results and the decision as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

#[derive(Clone, Debug, Args)]
pub struct CheckArgs {
    /// Also exit 1 when the agent would run without some feature (a program the kernel
    /// refused: TLS, Go TLS, process events, library loads).
    #[arg(long)]
    pub strict: bool,
    /// The options the agent would run with (`--no-tls`, `--config`, ...).
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Clone, Debug, Args)]
pub struct HealthArgs {
    /// The agent's --health-listen address.
    #[arg(long, default_value = crate::health::DEFAULT_ADDRESS)]
    pub address: std::net::SocketAddr,
    /// Liveness (the agent runs) instead of readiness (its probes are attached).
    #[arg(long)]
    pub live: bool,
}

#[derive(Clone, Debug, Args)]
pub struct OpenapiArgs {
    /// The agent's inventory database (its --inventory-db); repeat it to merge several (copied
    /// from several nodes, or runs) into one document.
    #[arg(long, visible_alias = "inventory-db", value_name = "PATH", default_value = DEFAULT_INVENTORY_DB)]
    pub db: Vec<PathBuf>,
    /// The service (`service.name`), or the host of an API called.
    #[arg(long)]
    pub service: String,
}

#[derive(Clone, Debug, Args)]
pub struct FindingsArgs {
    /// The agent's inventory database (its --inventory-db).
    #[arg(long, visible_alias = "inventory-db", value_name = "PATH", default_value = DEFAULT_INVENTORY_DB)]
    pub db: PathBuf,
    /// Only this service's findings (`service.name`, or the host of an API called).
    #[arg(long)]
    pub service: Option<String>,
    /// Only findings at least this severe (info, low, medium, high, critical).
    #[arg(long, value_parser = parse_severity)]
    pub min_severity: Option<crate::findings::model::Severity>,
    /// Only this rule (name or id).
    #[arg(long, value_parser = parse_rule)]
    pub rule: Option<crate::findings::model::Rule>,
    /// Read the whole cluster's findings from this Prometheus (or anything answering its
    /// query API) instead of this node's database.
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
    /// Table for people, or JSON.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

fn parse_severity(text: &str) -> Result<crate::findings::model::Severity, String> {
    crate::findings::model::Severity::parse(text)
        .ok_or_else(|| "one of info, low, medium, high, critical".to_string())
}

fn parse_rule(text: &str) -> Result<crate::findings::model::Rule, String> {
    crate::findings::model::Rule::parse(text).ok_or_else(|| {
        let names: Vec<&str> = crate::findings::model::Rule::ALL
            .iter()
            .map(|r| r.name())
            .collect();
        format!("one of {}", names.join(", "))
    })
}

#[derive(Clone, Debug, Args)]
pub struct ChangesArgs {
    /// The agent's inventory database (its --inventory-db).
    #[arg(long, visible_alias = "inventory-db", value_name = "PATH", default_value = DEFAULT_INVENTORY_DB)]
    pub db: PathBuf,
    /// Only changes this recent (`30m`, `12h`, `7d`).
    #[arg(long, value_parser = parse_age, default_value = "7d")]
    pub since: std::time::Duration,
    /// Only this service's changes (`service.name`, or the host of an API called).
    #[arg(long)]
    pub service: Option<String>,
    /// Table for people, or JSON.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (for example 30m, 12h, 7d)"))
}

#[derive(Clone, Debug, Args)]
pub struct InventoryArgs {
    /// The agent's inventory database (its --inventory-db).
    #[arg(long, visible_alias = "inventory-db", value_name = "PATH", default_value = DEFAULT_INVENTORY_DB)]
    pub db: PathBuf,
    /// Only this service's endpoints (`service.name`, or the host of an API called).
    #[arg(long)]
    pub service: Option<String>,
    /// A spec operation is unused when no call matched it in this many days.
    #[arg(long, default_value_t = 30)]
    pub unused_days: u64,
    /// Order: by API and route, or riskiest first.
    #[arg(long, value_enum, default_value_t = InventoryOrder::Route)]
    pub sort: InventoryOrder,
    /// Only endpoints whose risk score (0 to 10) is at least this.
    #[arg(long, value_name = "SCORE")]
    pub min_risk: Option<f64>,
    /// Read the whole cluster's inventory from this Prometheus (or Mimir, Thanos: anything
    /// answering its query API) instead of this node's database: every node's endpoints,
    /// unused judged over all of them.
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
    /// Table for people, or JSON.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InventoryOrder {
    Route,
    Risk,
}

/// Where the agent keeps its inventory unless told otherwise.
pub const DEFAULT_INVENTORY_DB: &str = "/var/lib/sightline/inventory.sqlite";
/// Where the fingerprint key is kept when there is no inventory database to keep it beside.
pub const DEFAULT_FINGERPRINT_KEY: &str = "/var/lib/sightline/fingerprint.key";

#[derive(Clone, Debug, Args)]
pub struct TlsArgs {
    /// The coverage report the agent writes (its --tls-report).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_REPORT_PATH)]
    pub report: PathBuf,
    /// Also list processes with a TLS library but no TLS connection seen yet.
    #[arg(long)]
    pub all: bool,
    /// Table for people, or the report as JSON.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
}

#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// Config file, TOML or YAML (identity, Kubernetes, service naming rules; see the README).
    #[arg(long, value_name = "PATH", env = "SIGHTLINE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Serve liveness (/healthz) and readiness (/readyz) on this address (loopback, such as
    /// 127.0.0.1:9467, which `sightline health` asks); `off`: no listening socket at all.
    #[arg(long, value_name = "ADDR", default_value = "off", value_parser = parse_listen)]
    pub health_listen: Listen,
    /// CPU priority of the agent's threads: `normal`, or `idle` (SCHED_IDLE: only CPU time the
    /// applications leave, so it never delays them; on a saturated host it falls behind and
    /// counts what it drops).
    #[arg(long, value_enum, default_value_t = crate::priority::CpuPriority::Normal, env = "SIGHTLINE_CPU_PRIORITY")]
    pub cpu_priority: crate::priority::CpuPriority,
    /// How to show calls.
    #[arg(long, value_enum, default_value_t = OutputFormat::Terminal, env = "SIGHTLINE_OUTPUT")]
    pub output: OutputFormat,
    /// Write the output to this file instead of stdout (appends).
    #[arg(long, value_name = "PATH")]
    pub output_file: Option<PathBuf>,
    /// Payload bytes copied from each socket syscall (headers must fit for a call to parse).
    #[arg(long, default_value_t = DEFAULT_CAPTURE_BYTES, value_parser = clap::value_parser!(u32).range(64..=MAX_CAPTURE_BYTES as i64))]
    pub capture_bytes: u32,
    /// Size of the kernel ring buffer in MiB (a power of two). Resident memory, counted twice
    /// in RSS (the kernel maps it twice for records that wrap); the reader empties it every
    /// 20 ms or at an eighth full, and 8 MiB drops nothing at 20,000 calls/s
    /// (`cargo xtask bench`, sustained run).
    #[arg(long, default_value_t = 8, value_parser = parse_ring_mib)]
    pub ring_buffer_mib: u32,
    /// Only capture these processes (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Never capture these processes (repeatable).
    #[arg(long = "exclude-pid", value_name = "PID")]
    pub exclude_pids: Vec<u32>,
    /// Only capture processes in these cgroup v2 directories (path under /sys/fs/cgroup; repeatable).
    #[arg(long = "cgroup", value_name = "PATH")]
    pub cgroups: Vec<String>,
    /// Never capture processes in these cgroups (repeatable).
    #[arg(long = "exclude-cgroup", value_name = "PATH")]
    pub exclude_cgroups: Vec<String>,
    /// Only capture connections with this local or remote port (repeatable).
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,
    /// Never capture connections with this local or remote port (repeatable).
    #[arg(long = "exclude-port", value_name = "PORT")]
    pub exclude_ports: Vec<u16>,
    /// Most connections tracked at once; past it the least recently active is dropped.
    #[arg(long, default_value_t = 65_536)]
    pub max_connections: usize,
    /// Seconds after which an idle connection is forgotten.
    #[arg(long, default_value_t = 300)]
    pub idle_timeout_secs: u64,
    /// Write one JSON line of metadata per kernel event to this file (diagnostics; no payloads).
    #[arg(long, value_name = "PATH")]
    pub dump_events: Option<PathBuf>,
    /// Do not attach uprobes to TLS libraries (TLS connections are then only counted).
    #[arg(long)]
    pub no_tls: bool,
    /// Let new programs start without waiting for their TLS probes. By default the first exec
    /// of each program file the agent has not seen waits (fanotify, at most 500 ms, usually
    /// the inspection plus ~10 ms) until its probes are attached, so a short-lived client is
    /// captured from its first call; later execs of the file do not wait.
    #[arg(long)]
    pub no_exec_hold: bool,
    /// Where to keep the TLS coverage report that `sightline tls` reads.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_REPORT_PATH)]
    pub tls_report: PathBuf,
    /// Seconds between full rescans of every process for TLS libraries (catches anything a
    /// dropped exec or mmap event hid).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub tls_rescan_secs: u64,
    /// Seconds a TLS library stays probed after the last process mapping it is gone.
    #[arg(long, default_value_t = 600)]
    pub tls_detach_after_secs: u64,
    /// The API inventory's SQLite database (kept across restarts).
    #[arg(long, visible_alias = "db", value_name = "PATH", default_value = DEFAULT_INVENTORY_DB)]
    pub inventory_db: PathBuf,
    /// Keep no inventory database (routes and findings are still computed, in memory).
    #[arg(long)]
    pub no_inventory: bool,
    /// Benchmark only: attach empty programs at every tracepoint and uprobe instead of the
    /// probes (the cost of the hooks alone; nothing is captured). `cargo xtask bench` floor.
    #[arg(long, hide = true)]
    pub bench_empty_programs: bool,
}

fn parse_ring_mib(text: &str) -> Result<u32, String> {
    let mib: u32 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if !(1..=1024).contains(&mib) || !mib.is_power_of_two() {
        return Err("must be a power of two between 1 and 1024".to_string());
    }
    Ok(mib)
}

impl RunArgs {
    /// The run's settings; reads the config file when one is given.
    pub fn into_config(self) -> Result<RunConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let ring_buffer_bytes = self.ring_buffer_mib << 20;
        // Probes of the agent's health port (`sightline health`, every few seconds in a pod)
        // are not API traffic: never captured, unless asked for by port.
        let mut exclude_ports = self.exclude_ports;
        if let Some(health) = self.health_listen.0
            && !self.ports.contains(&health.port())
        {
            exclude_ports.push(health.port());
        }
        Ok(RunConfig {
            probes: ProbeOptions {
                capture_bytes: self.capture_bytes,
                ring_buffer_bytes,
                // Wake the reader once an eighth of the ring fills; the timed poll does the rest.
                wakeup_bytes: ring_buffer_bytes / 8,
                filters: Filters {
                    pids: self.pids,
                    exclude_pids: self.exclude_pids,
                    cgroups: self.cgroups,
                    exclude_cgroups: self.exclude_cgroups,
                    ports: self.ports,
                    exclude_ports,
                },
                tls: !self.no_tls,
                empty_programs: self.bench_empty_programs,
            },
            tracker: TrackerLimits {
                max_connections: self.max_connections.max(1),
                idle_timeout_ns: self.idle_timeout_secs.saturating_mul(1_000_000_000),
                ..TrackerLimits::default()
            },
            health: self.health_listen.0,
            output: self.output,
            output_file: self.output_file,
            dump_events: self.dump_events,
            capture_queue: 65_536,
            sink_queue: 16_384,
            proc_root: "/proc".to_string(),
            tls: (!self.no_tls).then(|| AttachConfig {
                report_path: Some(self.tls_report),
                rescan_interval: std::time::Duration::from_secs(self.tls_rescan_secs),
                detach_after: std::time::Duration::from_secs(self.tls_detach_after_secs),
                hold_execs: !self.no_exec_hold,
                ..AttachConfig::default()
            }),
            inventory_db: (!self.no_inventory).then_some(self.inventory_db),
            config_path: self.config,
            file,
        })
    }
}

/// An address to listen on, or none (`off`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listen(pub Option<std::net::SocketAddr>);

fn parse_listen(text: &str) -> Result<Listen, String> {
    if text == "off" {
        return Ok(Listen(None));
    }
    text.parse()
        .map(|a| Listen(Some(a)))
        .map_err(|_| format!("{text:?} is not an address such as 127.0.0.1:9467, or off"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_is_the_default_command() {
        let cli = Cli::try_parse_from(["sightline", "--output", "json", "--port", "8080"])
            .expect("parses");
        assert!(cli.command.is_none());
        assert_eq!(cli.run.output, OutputFormat::Json);
        assert_eq!(cli.run.ports, vec![8080]);
        let cli = Cli::try_parse_from(["sightline", "check"]).expect("parses");
        assert!(matches!(cli.command, Some(Command::Check(_))));
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(Cli::try_parse_from(["sightline", "--ring-buffer-mib", "3"]).is_err());
        assert!(Cli::try_parse_from(["sightline", "--capture-bytes", "999999"]).is_err());
    }
}
