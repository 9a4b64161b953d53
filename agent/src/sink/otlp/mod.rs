//! Export to an OpenTelemetry collector over OTLP (gRPC or HTTP/protobuf): a span per call
//! (`traces`), request durations, inventory, findings and the agent's health (`metrics`), and
//! a log record per finding and inventory change (`logs`).
//!
//! The sink thread only converts and queues: spans and log records go to bounded queues
//! (`queue`) whose tasks batch, send, and retry while the collector is away; metrics are
//! aggregated in memory and sent every interval. Nothing here can slow capture: a full queue
//! drops (counted), and the processor never waits on the sink thread either.
//!
//! What the OpenTelemetry crates do, they do: the metric and log exporters (transport, retries
//! of a failed request), the samplers (`ShouldSample`), metric aggregation
//! (`SdkMeterProvider`), log records and their protobuf encoding. Ours, each for a reason given
//! in its module:
//! - spans are built from the call (`traces`, from the fields of `sink::call_fields`), not
//!   through a tracer: a call has ended when it is seen, with its real start and end, its
//!   resource is the observed process (one per workload, not the agent's), and an unsampled
//!   call must cost nothing;
//! - spans are encoded straight into OTLP protobuf bytes (`span_encoding`, `wire`) and sent by
//!   our own client (`trace_client`): the SDK path (span objects, a clone per retry, prost
//!   messages, encoding) was the largest part of the agent's CPU with export on;
//! - the connection settings (`connection`): endpoint, headers, timeout and compression from
//!   the config file and the `OTEL_EXPORTER_OTLP_*` variables, for the span client and the
//!   exporters alike;
//! - the export queues (`queue`): the SDK's batch processors drop a batch once the exporter's
//!   retries are spent; ours keep it while the collector is away (bounded, counted), which the
//!   "collector comes back" tests check;
//! - the settings the crates do not read (`settings`: protocol choice, certificate files,
//!   sampler names with a clear error, percent-decoded resource attributes);
//! - the W3C `traceparent` parsing (`traces`): the SDK's propagator accepts ids of the wrong
//!   length.

pub mod connection;
pub mod finding_metrics;
pub mod inventory_metrics;
pub mod logs;
pub mod metrics;
pub mod prometheus;
pub mod queue;
pub mod settings;
pub mod span_encoding;
pub mod trace_client;
pub mod traces;
pub mod transport;
pub mod wire;

use std::time::Duration;

use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::{Resource, logs::SdkLogRecord};
use tokio::sync::watch;

use self::{
    logs::{LogBatches, LogRecords},
    metrics::{HealthSources, Metrics},
    queue::{QueueCounters, QueueSender},
    settings::OtlpSettings,
    trace_client::TraceClient,
    traces::{SpanBuilder, SpanItem},
    transport::TransportError,
};
use super::Sink;
use crate::{call::ApiCall, findings::model::Finding};

/// How long stopping waits for the last exports.
const FINISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is exporting: the agent's own resource (metrics and logs), with the attributes every
/// resource gets.
#[derive(Clone, Debug)]
pub struct AgentResource {
    pub host_name: String,
    /// The Kubernetes node, when the agent runs in a cluster.
    pub node_name: Option<String>,
}

/// The sink end of the export, moved to the sink thread.
pub struct OtlpSink {
    spans: Option<(SpanBuilder, QueueSender<SpanItem>)>,
    logs: Option<(LogRecords, QueueSender<SdkLogRecord>)>,
}

/// The runtime end: stops the export tasks after their last attempt.
pub struct OtlpHandle {
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Builds the exporters and starts the export tasks (on the current tokio runtime).
fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("sightline")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

fn common_attributes(settings: Option<&OtlpSettings>) -> Vec<KeyValue> {
    settings
        .map(|s| {
            s.resource_attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The metrics (aggregated in the agent), for the OTLP export and the Prometheus endpoint:
/// their resource is the agent's.
pub fn new_metrics(
    settings: Option<&OtlpSettings>,
    agent: &AgentResource,
    health: HealthSources,
) -> Metrics {
    let resource = agent_resource(agent, &common_attributes(settings));
    Metrics::new(resource, scope(), health)
}

/// Starts the export of each signal the settings turn on; metrics are exported from
/// `metrics` (made by [`new_metrics`], recorded by its own sink).
pub fn start(
    settings: &OtlpSettings,
    agent: &AgentResource,
    metrics: Option<&Metrics>,
    stats: std::sync::Arc<crate::stats::Stats>,
) -> Result<(OtlpSink, OtlpHandle), TransportError> {
    let scope = scope();
    let common = common_attributes(Some(settings));
    let agent_resource = agent_resource(agent, &common);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();

    let spans = match &settings.traces {
        Some(signal) => {
            let scope_bytes = span_encoding::scope("sightline", env!("CARGO_PKG_VERSION"));
            let (sender, task) = queue::start(
                TraceClient::new(signal, scope_bytes)?,
                settings.span_queue,
                settings.batch_size,
                "traces",
                QueueCounters::SPANS,
                stats.clone(),
                shutdown_rx.clone(),
            );
            tasks.push(task);
            Some((
                SpanBuilder::new(common.clone(), settings.sampler.clone()),
                sender,
            ))
        }
        None => None,
    };
    let logs = match &settings.logs {
        Some(signal) => {
            let mut exporter = transport::log_exporter(signal)?;
            opentelemetry_sdk::logs::LogExporter::set_resource(&mut exporter, &agent_resource);
            let (sender, task) = queue::start(
                LogBatches {
                    exporter,
                    scope: scope.clone(),
                },
                settings.log_queue,
                settings.batch_size,
                "logs",
                QueueCounters::LOGS,
                stats.clone(),
                shutdown_rx.clone(),
            );
            tasks.push(task);
            Some((LogRecords::new(scope.clone()), sender))
        }
        None => None,
    };
    if let (Some(signal), Some(metrics)) = (&settings.metrics, metrics) {
        let exporter = transport::metric_exporter(signal)?;
        tasks.push(metrics.start_export(
            exporter,
            settings.metrics_interval,
            stats.clone(),
            shutdown_rx,
        ));
    }
    let shown = |signal: &Option<settings::SignalSettings>| {
        signal
            .as_ref()
            .map(|s| without_userinfo(&s.connection.endpoint))
    };
    tracing::info!(
        traces = shown(&settings.traces),
        metrics = shown(&settings.metrics),
        logs = shown(&settings.logs),
        "OTLP export started"
    );
    Ok((OtlpSink { spans, logs }, OtlpHandle { shutdown, tasks }))
}

/// An endpoint for the log: a `user:password@` in it is not written out.
fn without_userinfo(endpoint: &str) -> String {
    match endpoint.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://REDACTED@{}", &rest[at + 1..]),
                None => endpoint.to_string(),
            }
        }
        None => endpoint.to_string(),
    }
}

/// The agent's resource: `service.name` sightline, its version, one instance per node, the
/// host and node.
fn agent_resource(agent: &AgentResource, common: &[KeyValue]) -> Resource {
    let mut attributes = vec![
        KeyValue::new("service.name", "sightline"),
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        // Prometheus's `instance`: without it, every node's series would collide.
        KeyValue::new(
            "service.instance.id",
            agent
                .node_name
                .clone()
                .unwrap_or_else(|| agent.host_name.clone()),
        ),
        KeyValue::new("host.name", agent.host_name.clone()),
        KeyValue::new("process.pid", i64::from(std::process::id())),
    ];
    if let Some(node) = &agent.node_name {
        attributes.push(KeyValue::new("k8s.node.name", node.clone()));
    }
    Resource::builder_empty()
        .with_attributes(common.iter().cloned())
        .with_attributes(attributes)
        .build()
}

impl OtlpHandle {
    /// After the sink thread ended: each task makes its last attempt (metrics: one last
    /// export), bounded by [`FINISH_TIMEOUT`] in all.
    pub async fn finish(self) {
        let _ = self.shutdown.send(true);
        let all = futures::future::join_all(self.tasks);
        if tokio::time::timeout(FINISH_TIMEOUT, all).await.is_err() {
            tracing::warn!("the last OTLP exports did not finish in time");
        }
    }
}

impl Sink for OtlpSink {
    fn write(&mut self, call: &ApiCall) -> std::io::Result<()> {
        if let Some((records, queue)) = &self.logs
            && let Some(record) = records.endpoint(call)
        {
            queue.push(record);
        }
        if let Some((builder, queue)) = &mut self.spans
            && let Some(span) = builder.span(call)
        {
            queue.push(span);
        }
        Ok(())
    }

    fn write_finding(&mut self, finding: &Finding) -> std::io::Result<()> {
        if let Some((records, queue)) = &self.logs {
            queue.push(records.finding(finding));
        }
        Ok(())
    }

    fn write_change(&mut self, change: &crate::inventory::changes::Change) -> std::io::Result<()> {
        if let Some((records, queue)) = &self.logs {
            queue.push(records.change(change));
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_logged_without_credentials() {
        assert_eq!(
            without_userinfo("https://user:s3cret@collector:4318/v1/traces"),
            "https://REDACTED@collector:4318/v1/traces"
        );
        assert_eq!(
            without_userinfo("http://collector:4317"),
            "http://collector:4317"
        );
        assert_eq!(without_userinfo("http://c:4318/a@b"), "http://c:4318/a@b");
    }
}
