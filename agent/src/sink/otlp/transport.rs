//! The OTLP exporters of opentelemetry-otlp for metrics and logs, over gRPC (tonic) or
//! HTTP/protobuf (reqwest), given the resolved connection (endpoint, headers, timeout,
//! compression) and TLS (certificate authorities, client certificate); and the same TLS,
//! metadata and HTTP client for the agent's own span client (`trace_client`). Exporters retry
//! transient failures themselves (the crate's recommended policy); the export queues keep what
//! still fails and try again later.

use std::collections::HashMap;

use opentelemetry_otlp::{
    LogExporter, MetricExporter, WithExportConfig, WithHttpConfig, WithTonicConfig,
    tonic_types::{
        metadata::MetadataMap,
        transport::{Certificate, ClientTlsConfig, Identity},
    },
};

use super::settings::{Protocol, SignalSettings};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("the OTLP {signal} exporter: {source}")]
    Build {
        signal: &'static str,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error("the OTLP {signal} endpoint: {message}")]
    Endpoint {
        signal: &'static str,
        message: String,
    },
    #[error("the OTLP {signal} exporter: header {name:?}: not a valid header")]
    Header { signal: &'static str, name: String },
    #[error("the OTLP {signal} exporter's TLS settings: {source}")]
    Tls {
        signal: &'static str,
        #[source]
        source: reqwest::Error,
    },
}

/// `span_exporter`, `metric_exporter`, `log_exporter`: the same construction for each
/// signal's exporter type (their builders share traits, not a type).
macro_rules! exporter {
    ($name:ident, $exporter:ty) => {
        pub fn $name(signal: &SignalSettings) -> Result<$exporter, TransportError> {
            let built = match signal.protocol {
                Protocol::Grpc => tonic(<$exporter>::builder().with_tonic(), signal)?.build(),
                Protocol::HttpProtobuf => http(<$exporter>::builder().with_http(), signal)?.build(),
            };
            built.map_err(|source| TransportError::Build {
                signal: signal.signal.name(),
                source,
            })
        }
    };
}

exporter!(metric_exporter, MetricExporter);
exporter!(log_exporter, LogExporter);

/// What every builder shares: endpoint and timeout.
fn common<B: WithExportConfig>(builder: B, signal: &SignalSettings) -> B {
    builder
        .with_endpoint(signal.connection.endpoint.clone())
        .with_timeout(signal.connection.timeout)
}

fn tonic<B: WithExportConfig + WithTonicConfig>(
    builder: B,
    signal: &SignalSettings,
) -> Result<B, TransportError> {
    let mut builder = common(builder, signal).with_metadata(metadata(signal)?);
    if signal.connection.gzip {
        builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
    }
    if let Some(tls) = tonic_tls(signal) {
        builder = builder.with_tls_config(tls);
    }
    Ok(builder)
}

/// The request headers as gRPC metadata.
pub fn metadata(signal: &SignalSettings) -> Result<MetadataMap, TransportError> {
    let mut headers = http::HeaderMap::new();
    for (key, value) in &signal.connection.headers {
        let bad = || TransportError::Header {
            signal: signal.signal.name(),
            name: key.clone(),
        };
        let key = http::HeaderName::from_bytes(key.as_bytes()).map_err(|_| bad())?;
        let value = http::HeaderValue::from_str(value).map_err(|_| bad())?;
        headers.insert(key, value);
    }
    Ok(MetadataMap::from_headers(headers))
}

/// TLS for an `https://` endpoint: the configured certificate authority or the system's
/// roots (tonic's own default has none), and the client certificate for mTLS.
pub fn tonic_tls(signal: &SignalSettings) -> Option<ClientTlsConfig> {
    let https = signal.connection.https();
    if !https && (signal.certificate.is_some() || signal.client_identity.is_some()) {
        tracing::warn!(
            signal = signal.signal.name(),
            "the OTLP endpoint is not https: its certificate settings are not used"
        );
    }
    if !https {
        return None;
    }
    let mut tls = ClientTlsConfig::new();
    tls = match &signal.certificate {
        Some(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
        None => tls.with_enabled_roots(),
    };
    if let Some((cert, key)) = &signal.client_identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Some(tls)
}

fn http<B: WithExportConfig + WithHttpConfig>(
    builder: B,
    signal: &SignalSettings,
) -> Result<B, TransportError> {
    let mut builder = common(builder, signal);
    if !signal.connection.headers.is_empty() {
        let headers: HashMap<String, String> = signal.connection.headers.iter().cloned().collect();
        builder = builder.with_headers(headers);
    }
    if signal.connection.gzip {
        builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
    }
    Ok(builder.with_http_client(http_client(signal)?))
}

/// An async reqwest client (the exports run on the agent's tokio runtime) using rustls with
/// ring, the provider the rest of the agent (the Kubernetes client) already uses.
pub fn http_client(signal: &SignalSettings) -> Result<reqwest::Client, TransportError> {
    // Ignored when already installed (by an earlier exporter).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls_error = |source| TransportError::Tls {
        signal: signal.signal.name(),
        source,
    };
    let mut client = reqwest::Client::builder();
    if let Some(pem) = &signal.certificate {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(tls_error)?;
        client = client.tls_certs_only(certs);
    }
    if let Some((cert, key)) = &signal.client_identity {
        let mut pem = cert.clone();
        pem.push(b'\n');
        pem.extend_from_slice(key);
        client = client.identity(reqwest::Identity::from_pem(&pem).map_err(tls_error)?);
    }
    client.build().map_err(tls_error)
}
