//! Where one signal's requests go and how: the full URL, the request headers, the timeout and
//! the compression, resolved from the config file and the `OTEL_EXPORTER_OTLP_*` variables as
//! the OpenTelemetry specification defines them (the signal's variable before the general one;
//! the config file before both).
//!
//! Resolved here rather than left to the exporter crate because the spans do not go through
//! it: they are encoded by the agent and sent by `trace_client`, which needs the same answers
//! the crate's exporters (still used for metrics and logs) would have found. Both take them
//! from here, so the three signals cannot disagree.

use std::time::Duration;

use super::settings::{Compression, OtlpSection, Protocol, SettingsError, Signal, parse_pairs};

/// The specification's default timeout of one export request.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// The full URL: for HTTP with the signal's path (`/v1/traces`).
    pub endpoint: String,
    /// Request headers (gRPC metadata), the config file's over the environment's.
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub gzip: bool,
}

impl Connection {
    /// The endpoint is `https://`: TLS, with the system's certificate authorities unless the
    /// settings name others.
    pub fn https(&self) -> bool {
        self.endpoint.to_ascii_lowercase().starts_with("https://")
    }
}

/// `env` returns only variables with a non-blank value.
pub fn resolve(
    section: &OtlpSection,
    signal: Signal,
    protocol: Protocol,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Connection, SettingsError> {
    // The signal's variable first, then the general one: (name, value).
    let variable = |suffix: &str| {
        let specific = signal.variable(suffix);
        let general = format!("OTEL_EXPORTER_OTLP_{suffix}");
        env(&specific)
            .map(|value| (specific, value))
            .or_else(|| env(&general).map(|value| (general, value)))
    };
    let signal_path = |base: &str| format!("{}/v1/{}", base.trim_end_matches('/'), signal.name());
    let endpoint = match (&section.endpoint, protocol) {
        (Some(base), Protocol::Grpc) => base.clone(),
        (Some(base), Protocol::HttpProtobuf) => signal_path(base),
        (None, _) => match (env(&signal.variable("ENDPOINT")), protocol) {
            (Some(url), _) => url,
            (None, Protocol::Grpc) => {
                env("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or("http://localhost:4317".into())
            }
            (None, Protocol::HttpProtobuf) => signal_path(
                &env("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or("http://localhost:4318".into()),
            ),
        },
    };
    let endpoint = endpoint.trim().to_string();
    let scheme = endpoint
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("http" | "https")) {
        // Shown without what precedes an `@` (credentials in a URL without a scheme).
        let shown = match endpoint.rsplit_once('@') {
            Some((_, host)) => format!("REDACTED@{host}"),
            None => endpoint,
        };
        return Err(SettingsError::Endpoint { endpoint: shown });
    }
    let mut headers: Vec<(String, String)> = variable("HEADERS")
        .map(|(_, list)| parse_pairs(&list))
        .unwrap_or_default();
    for (key, value) in &section.headers {
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case(key));
        headers.push((key.clone(), value.clone()));
    }
    let timeout = match (section.timeout_seconds, variable("TIMEOUT")) {
        (Some(seconds), _) => Duration::from_secs(seconds),
        (None, Some((name, value))) => {
            Duration::from_millis(value.trim().parse().map_err(|_| SettingsError::Interval {
                variable: name,
                value,
            })?)
        }
        (None, None) => DEFAULT_TIMEOUT,
    };
    // The config file's `none` is its default: it leaves the choice to the environment.
    let gzip = match (section.compression, variable("COMPRESSION")) {
        (Some(Compression::Gzip), _) => true,
        (_, Some((name, value))) => match value.trim().to_ascii_lowercase().as_str() {
            "gzip" => true,
            "none" => false,
            _ => {
                return Err(SettingsError::Compression {
                    variable: name,
                    value,
                });
            }
        },
        (_, None) => false,
    };
    Ok(Connection {
        endpoint,
        headers,
        timeout,
        gzip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(
        section: &OtlpSection,
        protocol: Protocol,
        vars: &[(&str, &str)],
    ) -> Result<Connection, SettingsError> {
        let env = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        resolve(section, Signal::Traces, protocol, &env)
    }

    #[test]
    fn defaults_are_the_specifications() {
        let grpc = resolved(&OtlpSection::default(), Protocol::Grpc, &[]).unwrap();
        assert_eq!(
            grpc,
            Connection {
                endpoint: "http://localhost:4317".into(),
                headers: Vec::new(),
                timeout: Duration::from_secs(10),
                gzip: false,
            }
        );
        let http = resolved(&OtlpSection::default(), Protocol::HttpProtobuf, &[]).unwrap();
        assert_eq!(http.endpoint, "http://localhost:4318/v1/traces");
    }

    #[test]
    fn the_signals_variables_win_over_the_general_ones_and_the_file_over_both() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4318/"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=general,tenant=a%20b"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "api-key=traces"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"),
        ];
        let from_env = resolved(&OtlpSection::default(), Protocol::HttpProtobuf, &vars).unwrap();
        assert_eq!(
            from_env,
            Connection {
                endpoint: "http://general:4318/v1/traces".into(),
                headers: vec![("api-key".into(), "traces".into())],
                timeout: Duration::from_millis(2500),
                gzip: false,
            }
        );
        // The signal's endpoint is used as it is.
        let specific = [("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://t:9/x")];
        let own = resolved(&OtlpSection::default(), Protocol::HttpProtobuf, &specific).unwrap();
        assert_eq!(own.endpoint, "https://t:9/x");
        assert!(own.https());
        let section = OtlpSection {
            endpoint: Some("http://file:4317".into()),
            headers: [("API-KEY".to_string(), "file".to_string())].into(),
            timeout_seconds: Some(3),
            compression: Some(Compression::Gzip),
            ..OtlpSection::default()
        };
        let general_headers = [("OTEL_EXPORTER_OTLP_HEADERS", "api-key=env,team=x")];
        let file = resolved(&section, Protocol::Grpc, &general_headers).unwrap();
        assert_eq!(
            file,
            Connection {
                endpoint: "http://file:4317".into(),
                headers: vec![
                    ("team".into(), "x".into()),
                    ("API-KEY".into(), "file".into())
                ],
                timeout: Duration::from_secs(3),
                gzip: true,
            }
        );
    }

    #[test]
    fn bad_values_are_named() {
        let error = |name: &str, value: &str| {
            let vars = [(name, value)];
            resolved(&OtlpSection::default(), Protocol::Grpc, &vars)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "10s"),
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT=\"10s\": not a number of milliseconds"
        );
        assert_eq!(
            error("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
            "OTEL_EXPORTER_OTLP_COMPRESSION=\"zstd\": the compression must be gzip or none"
        );
        let no_scheme = "the OTLP endpoint \"collector:4317\" must start with http:// or https://";
        assert_eq!(
            error("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            no_scheme
        );
        // Credentials in an endpoint without a scheme are not shown.
        assert_eq!(
            error("OTEL_EXPORTER_OTLP_ENDPOINT", "user:s3cret@collector:4317"),
            no_scheme.replace("collector", "REDACTED@collector")
        );
    }
}
