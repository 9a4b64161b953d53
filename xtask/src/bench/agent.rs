//! The agent under test: started fresh for each measured run (release build, in one of the
//! `Variant`s, the SQLite inventory on), timed until ready, stopped with SIGINT; its counters
//! come from the summary line it logs when it stops, and what it exported from the receiver.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    Settings, bpf, proc,
    sink::{self, Received, Sink},
    variant::{Export, Variant},
};

/// Where the benchmark's agent serves its readiness check.
const HEALTH: &str = "127.0.0.1:19467";

/// How long start-up may take before the benchmark gives up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running agent.
pub struct Agent {
    child: Child,
    /// The OTLP receiver, for the export variants.
    sink: Option<Sink>,
    log: std::path::PathBuf,
    /// From spawn to `/readyz` answering 200.
    pub startup: Duration,
    /// Peak RSS once ready (start-up's peak: loading and attaching the probes).
    pub startup_peak_rss: u64,
    /// The BPF programs it loaded.
    pub programs: BTreeSet<u64>,
}

/// What the agent counted, by name (`kernel.*` for the kernel's counters), and what the OTLP
/// receiver got from it.
#[derive(Clone, Debug, Default)]
pub struct Counters(pub BTreeMap<String, u64>, pub Option<Received>);

/// Counters that count lost events, kernel and userspace.
const DROP_COUNTERS: &[&str] = &[
    "kernel.ringbuf_full_data",
    "kernel.ringbuf_full_control",
    "kernel.pending_table_full",
    "kernel.tls_no_socket",
    "kernel.tls_table_full",
    "kernel.tls_user_read_failed",
    "capture_queue_full",
    "sink_queue_full",
    "tls_requests_dropped",
    "otlp_spans_dropped",
    "otlp_logs_dropped",
];

impl Counters {
    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// Calls the agent reported (each observing end of a request is one call).
    pub fn calls(&self) -> u64 {
        self.get("calls_emitted")
    }

    /// Every drop counter that is not zero.
    pub fn drops(&self) -> BTreeMap<String, u64> {
        DROP_COUNTERS
            .iter()
            .filter(|name| self.get(name) > 0)
            .map(|name| (name.to_string(), self.get(name)))
            .collect()
    }

    /// Reads the `counters=...` field of the agent's "stopped" log line.
    fn from_log(log: &str) -> anyhow::Result<Self> {
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains("stopped") && l.contains("counters="))
            .context("the agent logged no counters when it stopped")?;
        let fields = line
            .split_once("counters=")
            .map(|(_, rest)| rest.trim_matches('"'))
            .unwrap_or_default();
        let map = fields
            .split_whitespace()
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.to_string(), v.trim_matches('"').parse().ok()?))
            })
            .collect();
        Ok(Self(map, None))
    }
}

impl Agent {
    /// Starts the agent in `variant` capturing connections of `port`, writing its files into
    /// `dir` (and the receiver first, when the variant exports).
    pub fn start(
        settings: &Settings,
        variant: Variant,
        port: u16,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let log = dir.join(format!("agent-{port}.log"));
        let log_file = std::fs::File::create(&log)?;
        let programs_before = bpf::program_ids()?;
        let sink = match variant.export() {
            Some(_) => Some(Sink::start(&settings.sink)?),
            None => None,
        };
        let mut command = Command::new(&settings.agent);
        match variant.export() {
            Some(Export::Grpc) => command.env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc").env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{}", sink::GRPC_PORT),
            ),
            Some(Export::Http) => command
                .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
                .env(
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    format!("http://127.0.0.1:{}", sink::HTTP_PORT),
                ),
            None => &mut command,
        };
        let begun = Instant::now();
        let child = command
            .args(variant.agent_args())
            .args(["--port", &port.to_string(), "--health-listen", HEALTH])
            .arg("--inventory-db")
            .arg(dir.join("inventory.db"))
            .arg("--tls-report")
            .arg(dir.join("tls-report.json"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", settings.agent.display()))?;
        let mut agent = Self {
            child,
            sink,
            log,
            startup: Duration::ZERO,
            startup_peak_rss: 0,
            programs: BTreeSet::new(),
        };
        loop {
            if let Some(status) = agent.child.try_wait()? {
                bail!(
                    "the agent exited during start-up ({status}): {}",
                    std::fs::read_to_string(&agent.log).unwrap_or_default()
                );
            }
            if ready() {
                break;
            }
            if begun.elapsed() > START_TIMEOUT {
                bail!("the agent was not ready after {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        agent.startup = begun.elapsed();
        agent.startup_peak_rss = proc::memory(agent.pid())?.peak;
        agent.programs = &bpf::program_ids()? - &programs_before;
        if agent.programs.is_empty() {
            bail!("no new BPF program appeared when the agent started");
        }
        Ok(agent)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the agent (SIGINT: a clean stop, probes detached, what it holds exported) and
    /// returns its counters, with the receiver's.
    pub fn stop(mut self) -> anyhow::Result<Counters> {
        super::signal(self.pid(), "INT")?;
        let status = self.child.wait()?;
        let log = std::fs::read_to_string(&self.log)?;
        if !status.success() {
            bail!("the agent failed ({status}): {log}");
        }
        let mut counters = Counters::from_log(&log)?;
        if let Some(sink) = self.sink.take() {
            counters.1 = Some(sink.stop()?);
        }
        Ok(counters)
    }
}

/// Whether the agent's `/readyz` answers 200.
fn ready() -> bool {
    let Ok(address) = HEALTH.parse::<SocketAddr>() else {
        return false;
    };
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_counters_of_the_stop_line() {
        let log = "2026 INFO sightline::pipeline: stopped counters=\"kernel.ringbuf_full_data=3 calls_emitted=42 capture_queue_full=0\"\n";
        let counters = Counters::from_log(log).expect("counters");
        assert_eq!(counters.calls(), 42);
        assert_eq!(counters.drops().get("kernel.ringbuf_full_data"), Some(&3));
        assert_eq!(counters.drops().len(), 1);
    }
}
