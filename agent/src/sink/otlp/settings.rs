//! Where and how to export: the `[otlp]` section of the config file, completed by the standard
//! `OTEL_*` environment variables. A value in the config file wins over the environment (as a
//! programmatic setting does in every OpenTelemetry SDK); what neither sets keeps the
//! OpenTelemetry default.
//!
//! Endpoints, headers, timeouts and compression are resolved by `connection` (the spans do not
//! go through the exporter crate, which would otherwise read them). This module also reads what
//! the OpenTelemetry crates do not give us:
//! - whether to export at all, and over which protocol (the exporter crate's protocol
//!   resolution is private to it, and the protocol decides which builder takes the TLS
//!   settings);
//! - `OTEL_EXPORTER_OTLP_*CERTIFICATE` and `*CLIENT_KEY` (not read by the exporter crate);
//! - the sampler's name: the SDK turns `OTEL_TRACES_SAMPLER` into a sampler only inside a tracer
//!   provider (which the agent does not use: it builds spans itself) and replaces an invalid
//!   value silently; the agent refuses it with one clear line, as it does a config value;
//! - `OTEL_RESOURCE_ATTRIBUTES`: the SDK's detector does not percent-decode values, which the
//!   specification requires (`team=a%20b`).

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::Deserialize;

use opentelemetry_sdk::trace::Sampler;

use super::connection::{self, Connection};

/// The `[otlp]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpSection {
    /// Export at all. Default: yes when an endpoint is set here or in an
    /// `OTEL_EXPORTER_OTLP_*ENDPOINT` variable.
    pub enabled: Option<bool>,
    /// The collector's base URL (`http://collector:4317` for gRPC, `http://collector:4318`
    /// for HTTP, where `/v1/traces`, `/v1/metrics` and `/v1/logs` are appended).
    pub endpoint: Option<String>,
    pub protocol: Option<Protocol>,
    /// Request headers (an API key of a hosted backend, a tenant id).
    pub headers: BTreeMap<String, String>,
    pub timeout_seconds: Option<u64>,
    pub compression: Option<Compression>,
    /// PEM file of the certificate authorities that sign the collector's certificate.
    pub certificate: Option<PathBuf>,
    /// PEM files of the agent's own certificate and key, for a collector that wants mTLS.
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub traces: bool,
    pub metrics: bool,
    pub logs: bool,
    pub metrics_interval_seconds: Option<u64>,
    /// Spans waiting for export (memory bound while the collector is slow or down); past it,
    /// new spans are dropped and counted.
    pub span_queue: usize,
    /// Log records (findings, inventory changes) waiting for export.
    pub log_queue: usize,
    /// Spans or log records per export request (one request is in flight at a time, so this
    /// bounds the throughput: 2048 spans per round trip keep up with tens of thousands of calls
    /// a second).
    pub batch_size: usize,
    /// Which calls get a span (`OTEL_TRACES_SAMPLER` names); default `parentbased_always_on`.
    pub sampler: Option<String>,
    /// The ratio of `traceidratio` samplers.
    pub sampler_arg: Option<f64>,
    /// Attributes added to every resource (`k8s.cluster.name`, `deployment.environment.name`),
    /// with those of `OTEL_RESOURCE_ATTRIBUTES`.
    pub resource_attributes: BTreeMap<String, String>,
}

impl Default for OtlpSection {
    fn default() -> Self {
        Self {
            enabled: None,
            endpoint: None,
            protocol: None,
            headers: BTreeMap::new(),
            timeout_seconds: None,
            compression: None,
            certificate: None,
            client_certificate: None,
            client_key: None,
            traces: true,
            metrics: true,
            logs: true,
            metrics_interval_seconds: None,
            span_queue: 8192,
            log_queue: 4096,
            batch_size: 2048,
            sampler: None,
            sampler_arg: None,
            resource_attributes: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Protocol {
    #[serde(rename = "grpc")]
    Grpc,
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl Protocol {
    fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "grpc" => Some(Self::Grpc),
            "http/protobuf" => Some(Self::HttpProtobuf),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    None,
}

/// The three OTLP signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Self::Traces => "traces",
            Self::Metrics => "metrics",
            Self::Logs => "logs",
        }
    }

    /// `OTEL_EXPORTER_OTLP_<SIGNAL>_<suffix>`.
    pub(super) fn variable(self, suffix: &str) -> String {
        format!(
            "OTEL_EXPORTER_OTLP_{}_{suffix}",
            self.name().to_ascii_uppercase()
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{variable}={value:?}: the protocol must be grpc or http/protobuf")]
    Protocol { variable: String, value: String },
    #[error("{variable}={value:?}: not a number of milliseconds")]
    Interval { variable: String, value: String },
    #[error("{variable}={value:?}: the compression must be gzip or none")]
    Compression { variable: String, value: String },
    #[error("the OTLP endpoint {endpoint:?} must start with http:// or https://")]
    Endpoint { endpoint: String },
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("a client certificate needs its key and the key its certificate")]
    ClientIdentity,
    #[error("{source_name}: {message}")]
    Sampler {
        source_name: &'static str,
        message: String,
    },
}

/// How one signal is exported, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignalSettings {
    pub signal: Signal,
    pub protocol: Protocol,
    /// Endpoint, headers, timeout, compression.
    pub connection: Connection,
    /// PEM bytes of the collector's certificate authorities.
    pub certificate: Option<Vec<u8>>,
    /// PEM bytes of the agent's certificate and key.
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Everything the exports need, resolved.
#[derive(Clone, Debug)]
pub struct OtlpSettings {
    pub traces: Option<SignalSettings>,
    pub metrics: Option<SignalSettings>,
    pub logs: Option<SignalSettings>,
    pub metrics_interval: Duration,
    pub span_queue: usize,
    pub log_queue: usize,
    pub batch_size: usize,
    pub sampler: Sampler,
    /// From the config file and `OTEL_RESOURCE_ATTRIBUTES`.
    pub resource_attributes: Vec<(String, String)>,
}

/// The metrics interval when neither the config file nor `OTEL_METRIC_EXPORT_INTERVAL` sets
/// one: shorter than the specification's 60 s, to match a usual 15 s scrape and rate windows.
const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(15);

impl OtlpSettings {
    /// The settings, or `None` when export is off. `env` reads an environment variable
    /// (`std::env::var` in the agent, a table in tests).
    pub fn resolve(
        section: &OtlpSection,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, SettingsError> {
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let signals = [Signal::Traces, Signal::Metrics, Signal::Logs];
        let endpoint_in_env = env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
            || signals
                .iter()
                .any(|s| env(&s.variable("ENDPOINT")).is_some());
        let enabled = section
            .enabled
            .unwrap_or(section.endpoint.is_some() || endpoint_in_env);
        if !enabled {
            return Ok(None);
        }
        let mut resolved = [None, None, None];
        for (slot, signal) in resolved.iter_mut().zip(signals) {
            let on = match signal {
                Signal::Traces => section.traces,
                Signal::Metrics => section.metrics,
                Signal::Logs => section.logs,
            };
            let exporter = format!("OTEL_{}_EXPORTER", signal.name().to_ascii_uppercase());
            if on && env(&exporter).as_deref().map(str::trim) != Some("none") {
                *slot = Some(signal_settings(section, signal, &env)?);
            }
        }
        let [traces, metrics, logs] = resolved;
        let metrics_interval = match section.metrics_interval_seconds {
            Some(seconds) => Duration::from_secs(seconds.max(1)),
            None => match env("OTEL_METRIC_EXPORT_INTERVAL") {
                Some(value) => Duration::from_millis(value.trim().parse().map_err(|_| {
                    SettingsError::Interval {
                        variable: "OTEL_METRIC_EXPORT_INTERVAL".into(),
                        value: value.clone(),
                    }
                })?)
                .max(Duration::from_millis(100)),
                None => DEFAULT_METRICS_INTERVAL,
            },
        };
        let sampler = sampler(section, &env)?;
        let mut resource_attributes: Vec<(String, String)> = env("OTEL_RESOURCE_ATTRIBUTES")
            .map(|list| parse_pairs(&list))
            .unwrap_or_default();
        for (key, value) in &section.resource_attributes {
            resource_attributes.retain(|(k, _)| k != key);
            resource_attributes.push((key.clone(), value.clone()));
        }
        Ok(Some(Self {
            traces,
            metrics,
            logs,
            metrics_interval,
            span_queue: section.span_queue.max(1),
            log_queue: section.log_queue.max(1),
            batch_size: section.batch_size.max(1),
            sampler,
            resource_attributes,
        }))
    }
}

/// The config file's sampler, else `OTEL_TRACES_SAMPLER` (with `OTEL_TRACES_SAMPLER_ARG`).
fn sampler(
    section: &OtlpSection,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Sampler, SettingsError> {
    let (name, source_name) = match &section.sampler {
        Some(name) => (name.clone(), "[otlp] sampler"),
        None => match env("OTEL_TRACES_SAMPLER") {
            Some(name) => (name, "OTEL_TRACES_SAMPLER"),
            None => return Ok(default_sampler()),
        },
    };
    let arg = match section.sampler_arg {
        Some(arg) => Some(arg),
        None => match env("OTEL_TRACES_SAMPLER_ARG") {
            Some(text) => Some(text.trim().parse().map_err(|_| SettingsError::Sampler {
                source_name: "OTEL_TRACES_SAMPLER_ARG",
                message: format!("{text:?} is not a number"),
            })?),
            None => None,
        },
    };
    sampler_named(&name, arg).map_err(|message| SettingsError::Sampler {
        source_name,
        message,
    })
}

/// OpenTelemetry's default: a request with a `traceparent` follows its sampled flag, every
/// other call is sampled.
fn default_sampler() -> Sampler {
    Sampler::ParentBased(Box::new(Sampler::AlwaysOn))
}

/// The SDK sampler an `OTEL_TRACES_SAMPLER` name stands for, with its ratio (1.0 when absent).
fn sampler_named(name: &str, ratio: Option<f64>) -> Result<Sampler, String> {
    let (parent_based, root) = match name.trim().strip_prefix("parentbased_") {
        Some(root) => (true, root),
        None => (false, name.trim()),
    };
    let root = match root {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => {
            let ratio = ratio.unwrap_or(1.0);
            if !(0.0..=1.0).contains(&ratio) {
                return Err(format!("the sampler ratio {ratio} is not between 0 and 1"));
            }
            Sampler::TraceIdRatioBased(ratio)
        }
        _ => {
            return Err(format!(
                "unknown sampler {name:?} (always_on, always_off, traceidratio, \
                 parentbased_always_on, parentbased_always_off, parentbased_traceidratio)"
            ));
        }
    };
    Ok(if parent_based {
        Sampler::ParentBased(Box::new(root))
    } else {
        root
    })
}

fn signal_settings(
    section: &OtlpSection,
    signal: Signal,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SignalSettings, SettingsError> {
    let protocol = match section.protocol {
        Some(protocol) => protocol,
        None => {
            let specific = signal.variable("PROTOCOL");
            match [specific.as_str(), "OTEL_EXPORTER_OTLP_PROTOCOL"]
                .into_iter()
                .find_map(|name| env(name).map(|value| (name, value)))
            {
                Some((variable, value)) => {
                    Protocol::parse(&value).ok_or_else(|| SettingsError::Protocol {
                        variable: variable.to_string(),
                        value,
                    })?
                }
                None => Protocol::Grpc,
            }
        }
    };
    let connection = connection::resolve(section, signal, protocol, env)?;
    let file = |configured: &Option<PathBuf>, suffix: &str| -> Option<PathBuf> {
        configured.clone().or_else(|| {
            env(&signal.variable(suffix))
                .or_else(|| env(&format!("OTEL_EXPORTER_OTLP_{suffix}")))
                .map(PathBuf::from)
        })
    };
    let certificate = file(&section.certificate, "CERTIFICATE")
        .map(|p| read(&p))
        .transpose()?;
    let client_identity = match (
        file(&section.client_certificate, "CLIENT_CERTIFICATE"),
        file(&section.client_key, "CLIENT_KEY"),
    ) {
        (Some(cert), Some(key)) => Some((read(&cert)?, read(&key)?)),
        (None, None) => None,
        _ => return Err(SettingsError::ClientIdentity),
    };
    Ok(SignalSettings {
        signal,
        protocol,
        connection,
        certificate,
        client_identity,
    })
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, SettingsError> {
    std::fs::read(path).map_err(|source| SettingsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// `k1=v1,k2=v2` (W3C baggage-like, as `OTEL_RESOURCE_ATTRIBUTES` is written), values
/// percent-decoded.
pub(super) fn parse_pairs(list: &str) -> Vec<(String, String)> {
    list.split(',')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let key = key.trim();
            (!key.is_empty()).then(|| (key.to_string(), percent_decode(value.trim())))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(section: &OtlpSection, vars: &[(&str, &str)]) -> Option<OtlpSettings> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        OtlpSettings::resolve(section, &|name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
        .unwrap()
    }

    #[test]
    fn off_without_an_endpoint_on_with_one() {
        assert!(resolve(&OtlpSection::default(), &[]).is_none());
        let on = resolve(
            &OtlpSection::default(),
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")],
        )
        .unwrap();
        let traces = on.traces.unwrap();
        assert_eq!(
            (traces.protocol, traces.connection.endpoint.as_str()),
            (Protocol::Grpc, "http://c:4317")
        );
        assert!(!traces.connection.https());
        let signal_only = resolve(
            &OtlpSection::default(),
            &[("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://c:4318/v1/logs")],
        );
        assert!(signal_only.is_some());
        let forced_off = OtlpSection {
            enabled: Some(false),
            endpoint: Some("http://c:4317".into()),
            ..OtlpSection::default()
        };
        assert!(resolve(&forced_off, &[]).is_none());
    }

    #[test]
    fn config_wins_over_environment_and_http_gets_signal_paths() {
        let section = OtlpSection {
            endpoint: Some("https://collector:4318/".into()),
            protocol: Some(Protocol::HttpProtobuf),
            ..OtlpSection::default()
        };
        let settings = resolve(&section, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap();
        let logs = settings.logs.unwrap();
        assert_eq!(logs.protocol, Protocol::HttpProtobuf);
        assert_eq!(logs.connection.endpoint, "https://collector:4318/v1/logs");
        assert!(logs.connection.https());
        let from_env = resolve(
            &OtlpSection::default(),
            &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "HTTPS://c:4317")],
        )
        .unwrap();
        assert!(from_env.traces.unwrap().connection.https());
        assert!(!from_env.metrics.unwrap().connection.https());
    }

    #[test]
    fn signal_variables_win_over_general_ones_and_signals_turn_off() {
        let settings = resolve(
            &OtlpSection::default(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
                ("OTEL_LOGS_EXPORTER", "none"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "2500"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "k8s.cluster.name=prod,team=a%20b",
                ),
            ],
        )
        .unwrap();
        assert_eq!(settings.traces.unwrap().protocol, Protocol::Grpc);
        assert_eq!(settings.metrics.unwrap().protocol, Protocol::HttpProtobuf);
        assert!(settings.logs.is_none());
        assert_eq!(settings.metrics_interval, Duration::from_millis(2500));
        assert_eq!(
            format!("{:?}", settings.sampler),
            format!("{:?}", default_sampler())
        );
        assert_eq!(
            settings.resource_attributes,
            vec![
                ("k8s.cluster.name".to_string(), "prod".to_string()),
                ("team".to_string(), "a b".to_string())
            ]
        );
    }

    #[test]
    fn bad_values_are_named() {
        let env =
            |name: &str| (name == "OTEL_EXPORTER_OTLP_PROTOCOL").then(|| "http/json".to_string());
        let section = OtlpSection {
            enabled: Some(true),
            ..OtlpSection::default()
        };
        let error = OtlpSettings::resolve(&section, &env).unwrap_err();
        assert_eq!(
            error.to_string(),
            "OTEL_EXPORTER_OTLP_PROTOCOL=\"http/json\": the protocol must be grpc or http/protobuf"
        );
        let section = OtlpSection {
            enabled: Some(true),
            certificate: Some("/nonexistent/ca.pem".into()),
            ..OtlpSection::default()
        };
        let error = OtlpSettings::resolve(&section, &|_| None).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("reading /nonexistent/ca.pem: ")
        );
    }

    /// The SDK's decision for a root span (no parent) or a child of a sampled or unsampled
    /// caller.
    fn keeps(sampler: &Sampler, parent: Option<bool>, trace_id: u128) -> bool {
        use opentelemetry::{
            Context,
            trace::{
                SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
            },
        };
        use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample};
        let parent = parent.map(|sampled| {
            let flags = if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            };
            let caller = SpanContext::new(
                TraceId::from(7u128),
                SpanId::from(9u64),
                flags,
                true,
                TraceState::default(),
            );
            Context::new().with_remote_span_context(caller)
        });
        let result = sampler.should_sample(
            parent.as_ref(),
            TraceId::from(trace_id),
            "",
            &SpanKind::Server,
            &[],
            &[],
        );
        result.decision == SamplingDecision::RecordAndSample
    }

    #[test]
    fn sampler_names_give_the_sdk_samplers() {
        let parent_off = sampler_named("parentbased_always_off", None).unwrap();
        assert!(keeps(&parent_off, Some(true), 1));
        assert!(!keeps(&parent_off, Some(false), 1));
        assert!(!keeps(&parent_off, None, 1));
        let always = sampler_named("always_on", None).unwrap();
        assert!(keeps(&always, Some(false), 1));
        let default = default_sampler();
        assert!(keeps(&default, None, 1) && !keeps(&default, Some(false), 1));
        let ratio = sampler_named("traceidratio", Some(0.25)).unwrap();
        let kept = (0..10_000u64)
            // Spread ids over the range, as random ids are.
            .filter(|i| {
                keeps(
                    &ratio,
                    None,
                    u128::from(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                )
            })
            .count();
        assert!((2_300..2_700).contains(&kept), "{kept}");
        assert!(sampler_named("traceidratio", Some(1.5)).is_err());
        assert_eq!(
            sampler_named("jaeger_remote", None).unwrap_err(),
            "unknown sampler \"jaeger_remote\" (always_on, always_off, traceidratio, \
             parentbased_always_on, parentbased_always_off, parentbased_traceidratio)"
        );
    }
}
