//! Wires the stages: probes -> ring-buffer reader -> tracker (connections, HTTP, identity) ->
//! sinks, over bounded channels, and runs them until SIGINT or SIGTERM (SIGHUP reads the
//! config file again: `config::reload`).

use std::{fs::File, io::BufWriter, sync::Arc, time::Duration};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
    task::JoinHandle,
};

use crate::{
    capture::{self, clock::Clock, dump::EventDump, event::CaptureEvent},
    config::{
        OutputFormat, RunConfig,
        reload::{LiveSettings, Reloader},
    },
    conn::Tracker,
    credentials::{
        fingerprint::{Fingerprinter, KeyError},
        stage::CredentialsStage,
    },
    findings::{rules::settings::SettingsError, stage::FindingsStage},
    health,
    identity::{
        self,
        kubernetes::{self, KubeError, KubeOptions, KubeStore},
        resolver::{Resolver, ResolverConfig},
        runtime_names::RuntimeRoots,
    },
    inventory::{InventoryLimits, changes::Change, spec_source::SpecSource},
    probes::{LoadedProbes, ProbeError, loader::KernelCounters},
    sink::{
        self, Record, Sink,
        json::JsonLines,
        otlp::{
            self, AgentResource,
            metrics::{HealthSources, Metrics, MetricsSink},
            settings::OtlpSettings,
        },
        terminal::Terminal,
    },
    stats::Stats,
    store::{InventoryStage, StoreError},
    tls::{Attacher, Request as TlsRequest},
};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Probes(#[from] ProbeError),
    #[error("opening {path}: {source}")]
    Output {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("watching for signals: {0}")]
    Signals(#[source] std::io::Error),
    #[error("starting the TLS attach thread: {0}")]
    TlsThread(#[source] std::io::Error),
    #[error("reading the ring buffer: {0}")]
    Reader(#[source] std::io::Error),
    #[error(transparent)]
    Kubernetes(#[from] KubeError),
    #[error(transparent)]
    Inventory(#[from] StoreError),
    #[error(transparent)]
    Findings(#[from] SettingsError),
    #[error(transparent)]
    FingerprintKey(#[from] KeyError),
    #[error("OTLP settings: {0}")]
    OtlpSettings(#[from] otlp::settings::SettingsError),
    #[error(transparent)]
    Otlp(#[from] otlp::transport::TransportError),
    #[error(transparent)]
    Health(#[from] crate::health::HealthError),
}

/// How often idle connections are swept and counters logged.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Events taken from the capture queue at once: one wakeup and one `select!` per batch, not per
/// event (the reader fills the queue in bursts, one per ring-buffer drain).
const EVENT_BATCH: usize = 256;
const STATS_INTERVAL: Duration = Duration::from_secs(60);

/// Runs until SIGINT or SIGTERM.
pub async fn run(config: RunConfig) -> Result<(), PipelineError> {
    run_until(config, std::future::pending::<()>())
        .await
        .map(drop)
}

/// Runs until SIGINT or SIGTERM, or until `done` completes once capture has started (its
/// output is returned; `None` when a signal came first). Either way everything captured is
/// drained to the sinks and the database before it returns.
pub async fn run_until<T>(
    config: RunConfig,
    done: impl std::future::Future<Output = T>,
) -> Result<Option<T>, PipelineError> {
    // Taken over first: SIGHUP's default action would end the agent while it starts.
    let hangups = signal(SignalKind::hangup()).map_err(PipelineError::Signals)?;
    let stats = Arc::new(Stats::default());
    let mut sinks = open_sinks(&config)?;
    let otlp_settings = OtlpSettings::resolve(&config.file.otlp, &|name| std::env::var(name).ok())?;

    let dump = open_dump(&config)?;
    let mut probes = LoadedProbes::load(&config.probes)?;
    // After the probes: a host or user that cannot run the agent hears that first.
    let (resolver, kube, watchers, agent) = start_identity(&config, &stats).await?;
    let (inventory, credentials, findings) = analysis_stages(&config, &stats)?;
    let support = Arc::new(probes.support().clone());
    let ring = probes.take_ring_buffer()?;
    let counters = Arc::new(probes.take_counters()?);
    let (attacher, probes) = start_attacher(probes, &config, &stats)?;
    let sources = HealthSources {
        stats: stats.clone(),
        kernel: Some(counters.clone()),
        inventory: inventory.counts(),
        findings: inventory.finding_series(),
        tls: attacher.as_ref().map(|a| a.statuses()),
        probes: support,
    };
    let exports = start_exports(&config, otlp_settings.as_ref(), &agent, sources, &mut sinks);
    let (metrics, otlp) = exports?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let health = Arc::new(health::Health::default());
    let health_server = match config.health {
        Some(at) => Some(health::start(at, health.clone(), metrics, shutdown_rx.clone()).await?),
        None => None,
    };
    let (event_tx, event_rx) = mpsc::channel(config.capture_queue);
    let (record_tx, record_rx) = mpsc::channel(config.sink_queue);
    // The newest reload wins: two SIGHUPs before the processor looks apply the second.
    let (reload_tx, reload_rx) = watch::channel(None);

    let reader = tokio::spawn(capture::reader::run(
        ring,
        event_tx,
        stats.clone(),
        shutdown_rx,
    ));
    let processor = tokio::spawn(process(
        event_rx,
        reload_rx,
        record_tx,
        Stages {
            tracker: Tracker::new(
                config.tracker,
                Clock::new(),
                stats.clone(),
                &config.proc_root,
            ),
            resolver,
            kube,
            inventory,
            credentials,
            findings,
        },
        dump,
        attacher.clone(),
        stats.clone(),
    ));
    let writer = spawn_sink_writer(record_rx, sinks, stats.clone())?;
    let reporter = tokio::spawn(report(stats.clone(), counters.clone()));

    health.set_ready();
    tracing::info!("capture started");
    crate::allocator::started();
    let reloader = Reloader::new(config.config_path.clone(), config.file.clone());
    let finished = tokio::select! {
        signal = wait_for_signal(hangups, reloader, reload_tx, &stats) => {
            signal?;
            None
        }
        output = done => Some(output),
    };
    health.set_stopping();
    tracing::info!("stopping");

    Running {
        shutdown: shutdown_tx,
        reader,
        processor,
        writer,
        otlp,
        reporter,
        watchers,
        attacher,
        probes,
        health_server,
    }
    .stop(&stats, &counters)
    .await?;
    Ok(finished)
}

/// What runs once the agent captures, stopped in this order: no event is lost between
/// the reader and the sinks, and the probes go last.
struct Running {
    shutdown: watch::Sender<bool>,
    reader: JoinHandle<std::io::Result<()>>,
    processor: JoinHandle<()>,
    writer: std::thread::JoinHandle<()>,
    otlp: Option<otlp::OtlpHandle>,
    reporter: JoinHandle<()>,
    watchers: Vec<JoinHandle<()>>,
    attacher: Option<Arc<Attacher>>,
    /// The probes when no TLS attach thread owns them.
    probes: Option<LoadedProbes>,
    health_server: Option<JoinHandle<()>>,
}

impl Running {
    async fn stop(self, stats: &Stats, counters: &KernelCounters) -> Result<(), PipelineError> {
        let _ = self.shutdown.send(true);
        let read_result = self.reader.await;
        let _ = self.processor.await;
        let _ = self.writer.join();
        if let Some(otlp) = self.otlp {
            otlp.finish().await;
        }
        self.reporter.abort();
        for watcher in self.watchers {
            watcher.abort();
        }
        if let Some(attacher) = self.attacher.and_then(Arc::into_inner) {
            tokio::task::block_in_place(|| attacher.stop());
        }
        log_summary(stats, Some(counters));
        drop(self.probes); // Detaches every program.
        if let Some(server) = self.health_server {
            server.abort();
        }
        match read_result {
            Ok(Err(e)) => Err(PipelineError::Reader(e)),
            _ => Ok(()),
        }
    }
}

/// The metrics, aggregated when something reads them (the OTLP export, or Prometheus at the
/// health port's /metrics), and the OTLP exporter when configured; their sinks join the others.
fn start_exports(
    config: &RunConfig,
    settings: Option<&OtlpSettings>,
    agent: &AgentResource,
    health: HealthSources,
    sinks: &mut Vec<Box<dyn Sink>>,
) -> Result<(Option<Arc<Metrics>>, Option<otlp::OtlpHandle>), PipelineError> {
    let stats = health.stats.clone();
    let wanted = config.health.is_some() || settings.is_some_and(|s| s.metrics.is_some());
    let metrics = wanted.then(|| Arc::new(otlp::new_metrics(settings, agent, health)));
    if let Some(metrics) = &metrics {
        sinks.push(Box::new(MetricsSink(metrics.clone())));
    }
    let Some(settings) = settings else {
        return Ok((metrics, None));
    };
    let (sink, handle) = otlp::start(settings, agent, metrics.as_deref(), stats)?;
    sinks.push(Box::new(sink));
    Ok((metrics, Some(handle)))
}

/// The event dump (`--dump-events`), when asked for.
fn open_dump(config: &RunConfig) -> Result<Option<EventDump<BufWriter<File>>>, PipelineError> {
    let Some(path) = &config.dump_events else {
        return Ok(None);
    };
    Ok(Some(EventDump::new(BufWriter::new(open_output(
        path, false,
    )?))))
}

/// The sinks run on a thread of their own: a slow terminal or file never holds the processor.
fn spawn_sink_writer(
    records: mpsc::Receiver<Record>,
    sinks: Vec<Box<dyn sink::Sink>>,
    stats: Arc<Stats>,
) -> Result<std::thread::JoinHandle<()>, PipelineError> {
    std::thread::Builder::new()
        .name("sightline-sink".to_string())
        .spawn(move || sink::run(records, sinks, stats))
        .map_err(PipelineError::Signals)
}

/// The stages after identity: the inventory (with its database and the findings it stored),
/// credentials, findings.
fn analysis_stages(
    config: &RunConfig,
    stats: &Arc<Stats>,
) -> Result<(InventoryStage, CredentialsStage, FindingsStage), PipelineError> {
    let (mut inventory, stored_findings) = InventoryStage::start(
        config.inventory_db.as_deref(),
        InventoryLimits {
            quiet_after_ns: config
                .file
                .inventory
                .quiet_after_seconds
                .saturating_mul(1_000_000_000),
            ..InventoryLimits::default()
        },
        SpecSource::load(config.file.api_specs.clone(), stats),
        stats.clone(),
    )?;
    inventory.set_trusted_proxies(config.file.inventory.trusted_proxies.clone());
    let credentials = CredentialsStage::new(
        config.file.findings.credential_names(),
        fingerprints(config)?,
    );
    let mut findings = FindingsStage::new(&config.file.findings, stats.clone())?;
    findings.restore(stored_findings);
    Ok((inventory, credentials, findings))
}

/// The TLS attach thread owns the probes from here on and detaches them when it stops.
/// Without TLS capture they stay with the caller, attached until the end.
fn start_attacher(
    probes: LoadedProbes,
    config: &RunConfig,
    stats: &Arc<Stats>,
) -> Result<(Option<Arc<Attacher>>, Option<LoadedProbes>), PipelineError> {
    let Some(tls) = config.tls.clone() else {
        return Ok((None, Some(probes)));
    };
    let stats = stats.clone();
    let attacher = tokio::task::block_in_place(|| Attacher::start(probes, tls, stats))
        .map_err(PipelineError::TlsThread)?;
    Ok((Some(Arc::new(attacher)), None))
}

/// The fingerprint key: the configured file, else `fingerprint.key` beside the inventory
/// database (or in the default state directory). A key that cannot be created (a read-only
/// disk) gives way to one for this run only; a key file that exists but is unusable is an
/// error (fingerprints would silently change).
fn fingerprints(config: &RunConfig) -> Result<Fingerprinter, PipelineError> {
    let path = match (
        &config.file.findings.fingerprint_key_file,
        &config.inventory_db,
    ) {
        (Some(path), _) => path.clone(),
        (None, Some(db)) => db.with_file_name("fingerprint.key"),
        (None, None) => std::path::PathBuf::from(crate::cli::DEFAULT_FINGERPRINT_KEY),
    };
    match Fingerprinter::load_or_create(&path) {
        Ok(f) => Ok(f),
        Err(error @ KeyError::Create { .. }) => {
            tracing::warn!(
                %error,
                "fingerprints of credentials are valid for this run only"
            );
            Ok(Fingerprinter::ephemeral()?)
        }
        Err(error) => Err(error.into()),
    }
}

/// The identity stage, and the Kubernetes watchers when Kubernetes is configured.
async fn start_identity(
    config: &RunConfig,
    stats: &Arc<Stats>,
) -> Result<
    (
        Resolver,
        Option<Arc<KubeStore>>,
        Vec<tokio::task::JoinHandle<()>>,
        AgentResource,
    ),
    PipelineError,
> {
    let file = &config.file;
    let host_name = file
        .identity
        .host_name
        .clone()
        .unwrap_or_else(identity::kernel_host_name);
    let node_name = file
        .kubernetes
        .node_name
        .clone()
        .or_else(|| std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| host_name.clone());
    let options = KubeOptions {
        mode: file.kubernetes.mode,
        kubeconfig: file.kubernetes.kubeconfig.clone(),
    };
    let store = Arc::new(KubeStore::new(Default::default()));
    let watchers = kubernetes::start(&options, &node_name, store.clone(), stats.clone()).await?;
    let kube = watchers.is_some().then_some(store);
    let agent = AgentResource {
        host_name: host_name.clone(),
        node_name: kube.is_some().then(|| node_name.clone()),
    };
    let resolver = Resolver::new(
        ResolverConfig {
            rules: file.service_rules.clone(),
            host_name,
            node_name: kube.is_some().then_some(node_name),
            runtime_roots: RuntimeRoots {
                docker: file.identity.docker_root.clone(),
                podman: file.identity.podman_root.clone(),
                containerd: file.identity.containerd_state.clone(),
                crio: file.identity.crio_state.clone(),
            },
            proc_root: config.proc_root.clone(),
        },
        kube.clone(),
        stats.clone(),
    );
    Ok((resolver, kube, watchers.unwrap_or_default(), agent))
}

fn open_sinks(config: &RunConfig) -> Result<Vec<Box<dyn Sink>>, PipelineError> {
    let out: Box<dyn std::io::Write + Send> = match &config.output_file {
        Some(path) => Box::new(BufWriter::new(open_output(path, true)?)),
        None => Box::new(BufWriter::new(std::io::stdout())),
    };
    let color =
        config.output_file.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout());
    Ok(match config.output {
        OutputFormat::Terminal => vec![Box::new(Terminal::new(out, color))],
        OutputFormat::Json => vec![Box::new(JsonLines::new(out))],
        OutputFormat::None => Vec::new(),
    })
}

/// Output files are created 0600 (calls name services, clients and routes); an existing file
/// keeps the mode its owner gave it.
/// `append`: the calls file (kept across runs); otherwise truncated (the event dump).
fn open_output(path: &std::path::Path, append: bool) -> Result<File, PipelineError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    File::options()
        .write(true)
        .create(true)
        .append(append)
        .truncate(!append)
        .mode(0o600)
        .open(path)
        .map_err(|source| PipelineError::Output {
            path: path.display().to_string(),
            source,
        })
}

/// The stages that run on the processor task, one after the other for each event.
struct Stages {
    tracker: Tracker,
    resolver: Resolver,
    kube: Option<Arc<KubeStore>>,
    inventory: InventoryStage,
    credentials: CredentialsStage,
    findings: FindingsStage,
}

/// The tracker, identity, credentials, inventory and findings stages: events in, calls and
/// findings out.
/// Ends when the reader ends (its sender drops).
async fn process(
    mut events: mpsc::Receiver<CaptureEvent>,
    mut reloads: watch::Receiver<Option<LiveSettings>>,
    records: mpsc::Sender<Record>,
    stages: Stages,
    mut dump: Option<EventDump<BufWriter<File>>>,
    attacher: Option<Arc<Attacher>>,
    stats: Arc<Stats>,
) {
    let Stages {
        mut tracker,
        mut resolver,
        kube,
        mut inventory,
        mut credentials,
        mut findings,
    } = stages;
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    let mut out = Vec::new();
    let mut batch = Vec::with_capacity(EVENT_BATCH);
    loop {
        tokio::select! {
            received = events.recv_many(&mut batch, EVENT_BATCH) => {
                if received == 0 { break }
                for event in batch.drain(..) {
                    if let Some(dump) = dump.as_mut()
                        && let Err(error) = dump.write(&event)
                    {
                        tracing::warn!(%error, "writing the event dump failed");
                    }
                    if let Some(attacher) = &attacher {
                        forward_to_attacher(attacher, &event);
                    }
                    if let CaptureEvent::CgroupCreated { id, path, .. } = &event {
                        resolver.learn_cgroup(*id, path);
                    }
                    tracker.handle(event, &mut out);
                    if let Some(attacher) = &attacher {
                        for observation in tracker.take_tls_observations() {
                            attacher.send(TlsRequest::Observed(observation));
                        }
                    }
                }
                if events.is_empty() && let Some(dump) = dump.as_mut() {
                    let _ = dump.flush();
                }
            }
            Ok(()) = reloads.changed() => {
                let Some(live) = reloads.borrow_and_update().clone() else { continue };
                inventory.replace_spec_entries(live.api_specs);
                credentials.set_names(live.findings.credential_names());
                if let Err(error) = findings.reconfigure(&live.findings) {
                    // Checked when the file loaded: not expected.
                    tracing::error!(%error, "findings settings not reloaded");
                }
            }
            _ = sweep.tick() => {
                tracker.sweep(Clock::now_monotonic(), &mut out);
                let flushed = inventory.flush(findings.take_changed());
                findings.requeue(flushed.unwritten);
                send_changes(&records, flushed.changes, &stats);
                if let Some(kube) = &kube {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as u64);
                    kube.write(|state| state.prune(now));
                }
            }
        }
        for mut call in out.drain(..) {
            resolver.resolve(&mut call);
            // Secrets leave the call here, before any other stage reads it.
            credentials.prepare(&mut call);
            inventory.observe(&mut call);
            let shown = findings.evaluate(&mut call);
            credentials.seal(&mut call);
            let records_out = std::iter::once(Record::Call(call))
                .chain(shown.into_iter().map(|f| Record::Finding(Box::new(f))));
            for record in records_out {
                if records.try_send(record).is_err() {
                    Stats::inc(&stats.sink_queue_full);
                }
            }
        }
    }
    if let Some(dump) = dump.as_mut() {
        let _ = dump.flush();
    }
    let last = findings.take_changed();
    let changes = tokio::task::block_in_place(|| inventory.finish(last));
    send_changes(&records, changes, &stats);
}

/// Hands endpoint changes (already given to the database writer) to the sinks.
fn send_changes(records: &mpsc::Sender<Record>, changes: Vec<Change>, stats: &Stats) {
    for change in changes {
        if records.try_send(Record::Change(Box::new(change))).is_err() {
            Stats::inc(&stats.sink_queue_full);
        }
    }
}

/// Program and library loads are what the TLS attach thread scans for; exits end bookkeeping.
fn forward_to_attacher(attacher: &Attacher, event: &CaptureEvent) {
    match event {
        CaptureEvent::Exec { task, .. } => attacher.send(TlsRequest::Exec(task.tgid)),
        CaptureEvent::ExecMapping { task } => attacher.send(TlsRequest::Scan(task.tgid)),
        CaptureEvent::Exit { task } => attacher.send(TlsRequest::Exited(task.tgid)),
        CaptureEvent::Data(_) | CaptureEvent::Conn { .. } | CaptureEvent::CgroupCreated { .. } => {}
    }
}

/// Logs the counters periodically (as a warning when something was dropped).
async fn report(stats: Arc<Stats>, counters: Arc<KernelCounters>) {
    let mut tick = tokio::time::interval(STATS_INTERVAL);
    tick.tick().await;
    let mut last_drops = 0;
    loop {
        tick.tick().await;
        let kernel_drops: u64 = counters
            .read()
            .iter()
            .filter(|(c, _)| c.is_drop())
            .map(|(_, n)| n)
            .sum();
        let drops = kernel_drops + stats.drops();
        let summary = format_counters(&stats, Some(&counters));
        if drops > last_drops {
            tracing::warn!(counters = %summary, "events were dropped");
        } else {
            tracing::debug!(counters = %summary, "counters");
        }
        last_drops = drops;
    }
}

fn log_summary(stats: &Stats, counters: Option<&KernelCounters>) {
    tracing::info!(counters = %format_counters(stats, counters), "stopped");
}

fn format_counters(stats: &Stats, counters: Option<&KernelCounters>) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(counters) = counters {
        parts.extend(
            counters
                .read()
                .iter()
                .map(|(c, n)| format!("kernel.{}={n}", c.name())),
        );
    }
    parts.extend(
        stats
            .snapshot()
            .iter()
            .map(|(name, n)| format!("{name}={n}")),
    );
    parts.join(" ")
}

/// Until SIGTERM or SIGINT; each SIGHUP reads the config file again and hands what loaded to
/// the processor (a SIGHUP during start-up waits in `hangups` until then).
async fn wait_for_signal(
    mut hangups: tokio::signal::unix::Signal,
    mut reloader: Reloader,
    reloads: watch::Sender<Option<LiveSettings>>,
    stats: &Stats,
) -> Result<(), PipelineError> {
    let mut term = signal(SignalKind::terminate()).map_err(PipelineError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(PipelineError::Signals)?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hangups.recv() => {
                // The spec files are read on the processor task (it owns the inventory).
                if let Some(live) = tokio::task::block_in_place(|| reloader.reload(stats)) {
                    let _ = reloads.send(Some(live));
                }
            }
        }
    }
}
