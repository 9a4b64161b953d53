//! OTLP metrics, cumulative (a failed export loses nothing: the next one carries the totals):
//! - `http.server.request.duration` and `http.client.request.duration` (seconds, the semantic
//!   conventions' buckets) by the observing end's `service.name`/`service.namespace`,
//!   `http.request.method`, `http.route`, `http.response.status_code` (and `server.address`,
//!   `peer.service` for clients). One agent observes many services, so the service is a data
//!   point attribute; the resource is the agent's own.
//! - `sightline.inventory.endpoints`: endpoints by service, direction and class; and a series
//!   per endpoint and spec operation (`inventory_metrics`).
//! - `sightline.findings.raised` (new or more severe findings) and `sightline.findings.calls`
//!   (calls that matched a rule), by rule and severity.
//! - The agent's health: events captured, dropped (per stage: kernel ring buffer and tables,
//!   each userspace queue, exports), parse errors, export failures, TLS status per process,
//!   memory and CPU, and every internal counter as `sightline.agent.counter`.
//!
//! The SDK aggregates (bounded by its cardinality limit per instrument, past which data points
//! go to an `otel.metric.overflow` series); a task collects through a manual reader and exports
//! every interval, counting failures.

use std::{
    sync::{Arc, Weak, atomic::AtomicU64},
    time::Duration,
};

use opentelemetry::{
    InstrumentationScope, KeyValue, StringValue,
    metrics::{Counter, Histogram, Meter, MeterProvider as _},
};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    metrics::{
        InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality,
        data::ResourceMetrics, exporter::PushMetricExporter, reader::MetricReader,
    },
};
use tokio::sync::watch;

use crate::{
    call::{ApiCall, SpanKind},
    findings::model::Finding,
    inventory::counts::InventoryCounts,
    probes::{
        loader::KernelCounters,
        support::{FeatureState, KernelSupport},
    },
    stats::Stats,
    tls::TlsStatuses,
};

/// Bucket bounds of the HTTP duration histograms (seconds), from the semantic conventions.
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// What the health metrics read.
#[derive(Clone)]
pub struct HealthSources {
    pub stats: Arc<Stats>,
    pub kernel: Option<Arc<KernelCounters>>,
    pub inventory: Arc<InventoryCounts>,
    pub findings: Arc<crate::findings::series::FindingSeries>,
    pub tls: Option<Arc<TlsStatuses>>,
    /// What the kernel let the agent load.
    pub probes: Arc<KernelSupport>,
}

/// The instruments recorded per call and per finding, on the sink thread.
pub struct CallMetrics {
    server_duration: Histogram<f64>,
    client_duration: Histogram<f64>,
    rpc_server_duration: Histogram<f64>,
    rpc_client_duration: Histogram<f64>,
    findings_raised: Counter<u64>,
    finding_calls: Counter<u64>,
}

impl CallMetrics {
    fn new(meter: &Meter) -> Self {
        let duration = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build()
        };
        Self {
            server_duration: duration(
                "http.server.request.duration",
                "Duration of HTTP server requests",
            ),
            client_duration: duration(
                "http.client.request.duration",
                "Duration of HTTP client requests",
            ),
            rpc_server_duration: duration(
                "rpc.server.call.duration",
                "Duration of RPCs served (gRPC)",
            ),
            rpc_client_duration: duration(
                "rpc.client.call.duration",
                "Duration of RPCs made (gRPC)",
            ),
            findings_raised: meter
                .u64_counter("sightline.findings.raised")
                .with_unit("{finding}")
                .with_description("Findings raised (new, or more severe than before)")
                .build(),
            finding_calls: meter
                .u64_counter("sightline.findings.calls")
                .with_unit("{call}")
                .with_description("Calls that matched a finding rule")
                .build(),
        }
    }

    pub fn record(&self, call: &ApiCall) {
        let local = call.local.identity.as_deref();
        let mut attributes = Vec::with_capacity(10);
        // Shared strings: no copy per call.
        if let Some(name) = local.and_then(|i| i.service_name.clone()) {
            attributes.push(KeyValue::new("service.name", StringValue::from(name)));
        }
        if let Some(namespace) = local.and_then(|i| i.service_namespace.clone()) {
            attributes.push(KeyValue::new(
                "service.namespace",
                StringValue::from(namespace),
            ));
        }
        let service_attributes = attributes.len();
        attributes.push(KeyValue::new("http.request.method", call.method.clone()));
        if let Some(route) = call.route() {
            attributes.push(KeyValue::new("http.route", route.to_string()));
        }
        match call.status {
            Some(status) => {
                attributes.push(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
                let failed = status >= 500 || (status >= 400 && call.kind == SpanKind::Client);
                if failed {
                    attributes.push(KeyValue::new("error.type", status.to_string()));
                }
            }
            None => attributes.push(KeyValue::new("error.type", "no_response")),
        }
        attributes.push(KeyValue::new(
            "url.scheme",
            if call.tls.is_some() { "https" } else { "http" },
        ));
        attributes.push(KeyValue::new(
            "network.protocol.version",
            call.protocol_version,
        ));
        let seconds = call.duration_ns() as f64 / 1e9;
        if let Some(grpc) = &call.grpc {
            self.record_rpc(call, grpc, &attributes[..service_attributes], seconds);
        }
        match call.kind {
            SpanKind::Server => self.server_duration.record(seconds, &attributes),
            SpanKind::Client => {
                let (address, port) = crate::call::address::server_address(call);
                attributes.push(KeyValue::new("server.address", address));
                attributes.push(KeyValue::new("server.port", i64::from(port)));
                if let Some(peer) = call
                    .peer
                    .identity
                    .as_deref()
                    .and_then(|i| i.service_name.clone())
                {
                    attributes.push(KeyValue::new("peer.service", StringValue::from(peer)));
                }
                self.client_duration.record(seconds, &attributes)
            }
        }
        if !call.findings.is_empty() {
            let service = local.and_then(|i| i.service_name.clone());
            for rule in &call.findings {
                let mut attributes = vec![
                    KeyValue::new("sightline.finding.rule_id", rule.id()),
                    KeyValue::new("sightline.finding.rule", rule.name()),
                ];
                if let Some(service) = &service {
                    attributes.push(KeyValue::new(
                        "service.name",
                        StringValue::from(service.clone()),
                    ));
                }
                self.finding_calls.add(1, &attributes);
            }
        }
    }

    /// `rpc.{server,client}.call.duration` by service, RPC and gRPC status.
    fn record_rpc(
        &self,
        call: &ApiCall,
        grpc: &crate::protocol::http2::GrpcExchange,
        service: &[KeyValue],
        seconds: f64,
    ) {
        let mut attributes = service.to_vec();
        attributes.push(KeyValue::new("rpc.system", "grpc"));
        if let Some(name) = &grpc.service {
            attributes.push(KeyValue::new("rpc.service", name.clone()));
        }
        if let Some(method) = &grpc.method {
            attributes.push(KeyValue::new("rpc.method", method.clone()));
        }
        match grpc.status {
            Some(code) => {
                attributes.push(KeyValue::new("rpc.grpc.status_code", i64::from(code)));
                if super::traces::grpc_error(code, call.kind) {
                    attributes.push(KeyValue::new("error.type", code.to_string()));
                }
            }
            None => attributes.push(KeyValue::new("error.type", "no_status")),
        }
        match call.kind {
            SpanKind::Server => self.rpc_server_duration.record(seconds, &attributes),
            SpanKind::Client => self.rpc_client_duration.record(seconds, &attributes),
        }
    }

    pub fn finding(&self, finding: &Finding) {
        let rule = finding.key.rule;
        let endpoint = &finding.key.endpoint;
        self.findings_raised.add(
            1,
            &[
                KeyValue::new("sightline.finding.rule_id", rule.id()),
                KeyValue::new("sightline.finding.rule", rule.name()),
                KeyValue::new("sightline.finding.severity", finding.severity.name()),
                KeyValue::new("service.name", endpoint.api.clone()),
            ],
        );
    }
}

/// Records each call and finding into the metrics (one sink, whether they are exported over
/// OTLP, served to Prometheus, or both).
pub struct MetricsSink(pub Arc<Metrics>);

impl crate::sink::Sink for MetricsSink {
    fn write(&mut self, call: &ApiCall) -> std::io::Result<()> {
        self.0.calls.record(call);
        Ok(())
    }

    fn write_finding(&mut self, finding: &Finding) -> std::io::Result<()> {
        self.0.calls.finding(finding);
        Ok(())
    }

    /// Changes are log records and database rows, not metrics.
    fn write_change(&mut self, _: &crate::inventory::changes::Change) -> std::io::Result<()> {
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The meter provider with its reader, and the per-call instruments.
pub struct Metrics {
    provider: SdkMeterProvider,
    reader: Arc<ManualReader>,
    pub calls: CallMetrics,
}

impl Metrics {
    pub fn new(resource: Resource, scope: InstrumentationScope, sources: HealthSources) -> Self {
        let reader = Arc::new(
            ManualReader::builder()
                .with_temporality(Temporality::Cumulative)
                .build(),
        );
        let provider = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(SharedReader(reader.clone()))
            .with_view(super::inventory_metrics::cardinality_view)
            .with_view(super::finding_metrics::cardinality_view)
            .build();
        let meter = provider.meter_with_scope(scope);
        register_health(&meter, sources);
        Self {
            calls: CallMetrics::new(&meter),
            provider,
            reader,
        }
    }

    /// Every metric now, in Prometheus' text format (`GET /metrics`).
    pub fn prometheus_text(&self) -> String {
        let mut metrics = ResourceMetrics::default();
        if let Err(error) = self.reader.collect(&mut metrics) {
            tracing::warn!(%error, "collecting metrics failed");
        }
        super::prometheus::render(&metrics)
    }

    /// Collects and exports every `interval` until `shutdown`, then once more.
    pub fn start_export<E: PushMetricExporter>(
        &self,
        exporter: E,
        interval: Duration,
        stats: Arc<Stats>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let reader = self.reader.clone();
        // The provider shuts its reader down when its last handle goes (with the sink): the
        // task keeps one for its last collection.
        let provider = self.provider.clone();
        tokio::spawn(async move {
            let _provider = provider;
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            let mut failures = 0u64;
            loop {
                let stopping = tokio::select! {
                    _ = tick.tick() => false,
                    _ = shutdown.changed() => true,
                };
                let mut metrics = ResourceMetrics::default();
                if let Err(error) = reader.collect(&mut metrics) {
                    tracing::warn!(%error, "collecting metrics failed");
                } else {
                    match exporter.export(&metrics).await {
                        Ok(()) => {
                            Stats::inc(&stats.otlp_metric_exports);
                            if failures > 0 {
                                tracing::info!(failures, "OTLP metrics export recovered");
                                failures = 0;
                            }
                        }
                        Err(error) => {
                            Stats::inc(&stats.otlp_metric_export_failures);
                            failures += 1;
                            if failures == 1 {
                                tracing::warn!(%error, "OTLP metrics export failed; the next export carries the totals");
                            }
                        }
                    }
                }
                if stopping {
                    break;
                }
            }
        })
    }
}

/// The manual reader, shared between the provider (which registers with it) and the export
/// task (which collects from it).
#[derive(Debug)]
pub(crate) struct SharedReader(pub(crate) Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(std::sync::atomic::Ordering::Relaxed)
}

/// A counter of [`Stats`] with the attribute value it is exported under.
type Named = (&'static str, fn(&Stats) -> &AtomicU64);

/// Userspace drop counters by the stage they happen in.
const USERSPACE_DROPS: &[Named] = &[
    ("capture_queue", |s| &s.capture_queue_full),
    ("sink_queue", |s| &s.sink_queue_full),
    ("tls_attach_queue", |s| &s.tls_requests_dropped),
    ("otlp_traces", |s| &s.otlp_spans_dropped),
    ("otlp_logs", |s| &s.otlp_logs_dropped),
    ("findings_table", |s| &s.findings_dropped),
    ("calls_abandoned", |s| &s.calls_abandoned),
    ("http2_streams", |s| &s.http2_streams_dropped),
];

const PARSE_ERRORS: &[Named] = &[
    ("http_framing", |s| &s.http_parse_errors),
    ("http_header_too_large", |s| &s.http_header_too_large),
    ("http_unpaired_response", |s| &s.http_unpaired_responses),
    ("event_undecodable", |s| &s.events_undecodable),
    ("http2_desync", |s| &s.http2_desyncs),
    ("http2_hpack", |s| &s.http2_hpack_errors),
    ("http2_header_block_lost", |s| &s.http2_header_blocks_lost),
    ("http2_unattributed_stream", |s| {
        &s.http2_streams_unattributed
    }),
];

const EXPORT_FAILURES: &[Named] = &[
    ("traces", |s| &s.otlp_trace_export_failures),
    ("metrics", |s| &s.otlp_metric_export_failures),
    ("logs", |s| &s.otlp_log_export_failures),
];

/// A counter whose data points are counters of [`Stats`] (and, for drops, of the kernel), told
/// apart by one attribute.
struct Family {
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    attribute: &'static str,
    counters: &'static [Named],
    /// Also the kernel's drop counters, as `kernel_<name>`.
    kernel_drops: bool,
}

const FAMILIES: &[Family] = &[
    Family {
        name: "sightline.events.dropped",
        unit: "{event}",
        description: "Events, calls and records dropped, by the stage that dropped them",
        attribute: "sightline.drop.stage",
        counters: USERSPACE_DROPS,
        kernel_drops: true,
    },
    Family {
        name: "sightline.parse.errors",
        unit: "{error}",
        description: "Streams the parsers could not follow, by kind",
        attribute: "sightline.parse.error",
        counters: PARSE_ERRORS,
        kernel_drops: false,
    },
    Family {
        name: "sightline.export.failures",
        unit: "{attempt}",
        description: "Failed OTLP export attempts, by signal",
        attribute: "sightline.signal",
        counters: EXPORT_FAILURES,
        kernel_drops: false,
    },
];

fn register_family(
    meter: &Meter,
    family: &'static Family,
    stats: Arc<Stats>,
    kernel: Option<Arc<KernelCounters>>,
) {
    meter
        .u64_observable_counter(family.name)
        .with_unit(family.unit)
        .with_description(family.description)
        .with_callback(move |o| {
            if family.kernel_drops
                && let Some(kernel) = &kernel
            {
                for (counter, n) in kernel.read().into_iter().filter(|(c, _)| c.is_drop()) {
                    let value = format!("kernel_{}", counter.name());
                    o.observe(n, &[KeyValue::new(family.attribute, value)]);
                }
            }
            for (value, counter) in family.counters {
                o.observe(
                    load(counter(&stats)),
                    &[KeyValue::new(family.attribute, *value)],
                );
            }
        })
        .build();
}

/// `sightline.tls.process.status`: each process using TLS, by its coverage status.
fn register_tls_statuses(meter: &Meter, tls: Arc<TlsStatuses>) {
    meter
        .u64_observable_gauge("sightline.tls.process.status")
        .with_unit("{process}")
        .with_description("TLS capture status of each process using TLS (1 per process, by status)")
        .with_callback(move |o| {
            for (pid, executable, status) in tls.snapshot() {
                o.observe(
                    1,
                    &[
                        KeyValue::new("process.pid", i64::from(pid)),
                        KeyValue::new("process.executable.name", executable),
                        KeyValue::new("sightline.tls.status", status.name()),
                    ],
                );
            }
        })
        .build();
}

/// `sightline.probes.feature`: what the kernel let the agent load, one series per feature.
fn register_probe_features(meter: &Meter, probes: Arc<KernelSupport>) {
    meter
        .u64_observable_gauge("sightline.probes.feature")
        .with_unit("{feature}")
        .with_description(
            "Each capture feature of the agent on this kernel: 1 when on, 0 when refused by the \
             kernel or turned off (sightline.probes.feature.state says which)",
        )
        .with_callback(move |o| {
            for (feature, state) in &probes.features {
                o.observe(
                    u64::from(*state == FeatureState::On),
                    &[
                        KeyValue::new("sightline.probes.feature", feature.name()),
                        KeyValue::new("sightline.probes.feature.state", state.name()),
                    ],
                );
            }
        })
        .build();
}

fn register_health(meter: &Meter, sources: HealthSources) {
    let HealthSources {
        stats,
        kernel,
        inventory,
        findings,
        tls,
        probes,
    } = sources;
    register_probe_features(meter, probes);
    {
        let stats = stats.clone();
        meter
            .u64_observable_counter("sightline.events.captured")
            .with_unit("{event}")
            .with_description("Events read from the kernel ring buffer")
            .with_callback(move |o| o.observe(load(&stats.events_read), &[]))
            .build();
    }
    for family in FAMILIES {
        register_family(meter, family, stats.clone(), kernel.clone());
    }
    {
        let stats = stats.clone();
        let kernel = kernel.clone();
        meter
            .u64_observable_counter("sightline.agent.counter")
            .with_description("Every internal counter of the agent, by name (as in its logs)")
            .with_callback(move |o| {
                if let Some(kernel) = &kernel {
                    for (counter, n) in kernel.read() {
                        let name = format!("kernel.{}", counter.name());
                        o.observe(n, &[KeyValue::new("sightline.counter", name)]);
                    }
                }
                for (name, n) in stats.snapshot() {
                    o.observe(n, &[KeyValue::new("sightline.counter", name)]);
                }
            })
            .build();
    }
    super::inventory_metrics::register(meter, inventory.clone());
    super::finding_metrics::register(meter, findings);
    meter
        .u64_observable_gauge("sightline.inventory.endpoints")
        .with_unit("{endpoint}")
        .with_description("Endpoints of the inventory, by service, direction and class")
        .with_callback(move |o| {
            for ((api, namespace, direction, class), n) in inventory.snapshot() {
                let mut attributes = vec![
                    KeyValue::new("service.name", api),
                    KeyValue::new("sightline.endpoint.direction", direction.name()),
                    KeyValue::new("sightline.inventory.class", class.name()),
                ];
                if !namespace.is_empty() {
                    attributes.push(KeyValue::new("service.namespace", namespace));
                }
                o.observe(n, &attributes);
            }
        })
        .build();
    if let Some(tls) = tls {
        register_tls_statuses(meter, tls);
    }
    meter
        .i64_observable_up_down_counter("process.memory.usage")
        .with_unit("By")
        .with_description("The agent's resident memory")
        .with_callback(|o| {
            if let Some(rss) = own_rss_bytes() {
                o.observe(rss, &[]);
            }
        })
        .build();
    meter
        .f64_observable_counter("process.cpu.time")
        .with_unit("s")
        .with_description("CPU time the agent used, by mode")
        .with_callback(|o| {
            if let Some((user, system)) = own_cpu_seconds() {
                o.observe(user, &[KeyValue::new("cpu.mode", "user")]);
                o.observe(system, &[KeyValue::new("cpu.mode", "system")]);
            }
        })
        .build();
}

/// Resident set size, from /proc/self/status (`VmRSS`, in kB).
fn own_rss_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The unit of /proc's CPU times: USER_HZ, 100 on every Linux architecture's ABI.
const USER_HZ: f64 = 100.0;

/// User and system CPU seconds, from /proc/self/stat.
fn own_cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start past its closing parenthesis:
    // state is the first, utime and stime the 12th and 13th.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let seconds = |i: usize| Some(fields.get(i)?.parse::<f64>().ok()? / USER_HZ);
    Some((seconds(11)?, seconds(12)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_memory_and_cpu() {
        assert!(own_rss_bytes().unwrap() > 0);
        let (user, system) = own_cpu_seconds().unwrap();
        assert!(user >= 0.0 && system >= 0.0);
    }
}
