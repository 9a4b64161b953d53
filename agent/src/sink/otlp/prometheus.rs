//! The agent's metrics in Prometheus' text exposition format (0.0.4), served at `GET /metrics`
//! on the health port: the convention of node agents (node-exporter, Cilium, Beyla), so a
//! Prometheus or a PodMonitor scrapes every node without a collector. The same instruments as
//! the OTLP export (read from the same aggregation), named as the OpenTelemetry-to-Prometheus
//! compatibility rules name them: `.` and other characters become `_`, the unit is a suffix
//! (`s` -> `_seconds`, `By` -> `_bytes`; `1` and `{annotations}` none), counters end in
//! `_total`, attributes are labels, and the resource is `target_info`.

use std::{collections::HashSet, fmt::Write as _};

use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::data::{
    AggregatedMetrics, Histogram, Metric, MetricData, ResourceMetrics,
};

/// The exposition's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn render(metrics: &ResourceMetrics) -> String {
    let mut out = String::new();
    let resource: Vec<KeyValue> = metrics
        .resource()
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    out.push_str(
        "# HELP target_info The agent (OpenTelemetry resource)\n# TYPE target_info gauge\n",
    );
    let _ = writeln!(out, "target_info{} 1", labels(&resource, None));
    let mut seen = HashSet::new();
    for scope in metrics.scope_metrics() {
        for metric in scope.metrics() {
            // One family per name: a second scope's instrument of the same name is left out.
            if seen.insert(metric.name().to_string()) {
                family(&mut out, metric);
            }
        }
    }
    out
}

fn family(out: &mut String, metric: &Metric) {
    let base = metric_name(metric.name(), metric.unit());
    match metric.data() {
        AggregatedMetrics::F64(data) => points(out, metric, &base, data),
        AggregatedMetrics::U64(data) => points(out, metric, &base, data),
        AggregatedMetrics::I64(data) => points(out, metric, &base, data),
    }
}

fn points<T: Copy + Into<Number>>(
    out: &mut String,
    metric: &Metric,
    base: &str,
    data: &MetricData<T>,
) {
    let header = |out: &mut String, name: &str, kind: &str| {
        let _ = writeln!(out, "# HELP {name} {}", escape_help(metric.description()));
        let _ = writeln!(out, "# TYPE {name} {kind}");
    };
    match data {
        MetricData::Gauge(gauge) => {
            header(out, base, "gauge");
            for p in gauge.data_points() {
                sample(
                    out,
                    base,
                    &p.attributes().cloned().collect::<Vec<_>>(),
                    None,
                    p.value().into(),
                );
            }
        }
        MetricData::Sum(sum) => {
            let counter = sum.is_monotonic();
            let name = if counter && !base.ends_with("_total") {
                format!("{base}_total")
            } else {
                base.to_string()
            };
            header(out, &name, if counter { "counter" } else { "gauge" });
            for p in sum.data_points() {
                sample(
                    out,
                    &name,
                    &p.attributes().cloned().collect::<Vec<_>>(),
                    None,
                    p.value().into(),
                );
            }
        }
        MetricData::Histogram(histogram) => {
            header(out, base, "histogram");
            histogram_points(out, base, histogram);
        }
        // No instrument of the agent aggregates this way.
        MetricData::ExponentialHistogram(_) => {}
    }
}

fn histogram_points<T: Copy + Into<Number>>(
    out: &mut String,
    base: &str,
    histogram: &Histogram<T>,
) {
    for p in histogram.data_points() {
        let attributes: Vec<KeyValue> = p.attributes().cloned().collect();
        let mut cumulative = 0u64;
        let bounds: Vec<f64> = p.bounds().collect();
        for (i, count) in p.bucket_counts().enumerate() {
            cumulative += count;
            let le = bounds
                .get(i)
                .map_or("+Inf".to_string(), |b| format_float(*b));
            sample(
                out,
                &format!("{base}_bucket"),
                &attributes,
                Some(&le),
                Number::U(cumulative),
            );
        }
        sample(
            out,
            &format!("{base}_sum"),
            &attributes,
            None,
            p.sum().into(),
        );
        sample(
            out,
            &format!("{base}_count"),
            &attributes,
            None,
            Number::U(p.count()),
        );
    }
}

/// A data point's value.
#[derive(Clone, Copy)]
pub enum Number {
    U(u64),
    I(i64),
    F(f64),
}

impl From<u64> for Number {
    fn from(v: u64) -> Self {
        Self::U(v)
    }
}
impl From<i64> for Number {
    fn from(v: i64) -> Self {
        Self::I(v)
    }
}
impl From<f64> for Number {
    fn from(v: f64) -> Self {
        Self::F(v)
    }
}

fn sample(out: &mut String, name: &str, attributes: &[KeyValue], le: Option<&str>, value: Number) {
    let value = match value {
        Number::U(v) => v.to_string(),
        Number::I(v) => v.to_string(),
        Number::F(v) => format_float(v),
    };
    let _ = writeln!(out, "{name}{} {value}", labels(attributes, le));
}

fn labels(attributes: &[KeyValue], le: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = attributes
        .iter()
        .map(|kv| (sanitize(kv.key.as_str()), kv.value.as_str().into_owned()))
        .collect();
    // Two keys that sanitize alike (`a.b`, `a_b`) are joined, as the compatibility rules say.
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs.dedup_by(|later, earlier| {
        let same = later.0 == earlier.0;
        if same {
            earlier.1 = format!("{};{}", earlier.1, later.1);
        }
        same
    });
    if let Some(le) = le {
        pairs.push(("le".to_string(), le.to_string()));
    }
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_value(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// `http.server.request.duration` + `s` -> `http_server_request_duration_seconds`.
pub fn metric_name(name: &str, unit: &str) -> String {
    let mut out = sanitize(name);
    let suffix = match unit {
        "s" => "seconds",
        "ms" => "milliseconds",
        "By" => "bytes",
        "" | "1" => "",
        braced if braced.starts_with('{') => "",
        other => return format!("{out}_{}", sanitize(other)),
    };
    if !suffix.is_empty() && !out.ends_with(suffix) {
        out.push('_');
        out.push_str(suffix);
    }
    out
}

/// Characters Prometheus names cannot hold become `_`; a leading digit gets one before it.
fn sanitize(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn escape_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::{
        Resource,
        metrics::{ManualReader, SdkMeterProvider, reader::MetricReader},
    };

    use super::*;

    #[test]
    fn counters_histograms_and_gauges_render_as_prometheus_reads_them() {
        let reader = std::sync::Arc::new(ManualReader::builder().build());
        let provider = SdkMeterProvider::builder()
            .with_resource(
                Resource::builder_empty()
                    .with_attribute(KeyValue::new("host.name", "node-a"))
                    .build(),
            )
            .with_reader(crate::sink::otlp::metrics::SharedReader(reader.clone()))
            .build();
        let meter = provider.meter("test");
        let calls = meter
            .u64_counter("sightline.findings.calls")
            .with_unit("{call}")
            .with_description("Calls")
            .build();
        calls.add(3, &[KeyValue::new("service.name", "demo \"x\"")]);
        let duration = meter
            .f64_histogram("http.server.request.duration")
            .with_unit("s")
            .with_description("Duration")
            .with_boundaries(vec![0.1, 1.0])
            .build();
        duration.record(0.05, &[KeyValue::new("http.route", "/a")]);
        duration.record(0.5, &[KeyValue::new("http.route", "/a")]);
        duration.record(5.0, &[KeyValue::new("http.route", "/a")]);
        let _gauge = meter
            .u64_observable_gauge("sightline.inventory.endpoint.info")
            .with_unit("1")
            .with_description("An endpoint")
            .with_callback(|o| o.observe(1, &[KeyValue::new("http.request.method", "GET")]))
            .build();
        let mut collected = ResourceMetrics::default();
        reader.collect(&mut collected).unwrap();
        let text = render(&collected);
        for expected in [
            "target_info{host_name=\"node-a\"} 1\n",
            "# TYPE sightline_findings_calls_total counter\nsightline_findings_calls_total{service_name=\"demo \\\"x\\\"\"} 3\n",
            "# TYPE http_server_request_duration_seconds histogram\n",
            "http_server_request_duration_seconds_bucket{http_route=\"/a\",le=\"0.1\"} 1\n",
            "http_server_request_duration_seconds_bucket{http_route=\"/a\",le=\"1\"} 2\n",
            "http_server_request_duration_seconds_bucket{http_route=\"/a\",le=\"+Inf\"} 3\n",
            "http_server_request_duration_seconds_sum{http_route=\"/a\"} 5.55\n",
            "http_server_request_duration_seconds_count{http_route=\"/a\"} 3\n",
            "# TYPE sightline_inventory_endpoint_info gauge\nsightline_inventory_endpoint_info{http_request_method=\"GET\"} 1\n",
        ] {
            assert!(text.contains(expected), "{expected:?} not in:\n{text}");
        }
    }

    #[test]
    fn names_take_their_unit_once() {
        assert_eq!(
            metric_name("process.cpu.time", "s"),
            "process_cpu_time_seconds"
        );
        assert_eq!(metric_name("a.duration_seconds", "s"), "a_duration_seconds");
        assert_eq!(
            metric_name("process.memory.usage", "By"),
            "process_memory_usage_bytes"
        );
        assert_eq!(metric_name("x", "{call}"), "x");
        assert_eq!(metric_name("9x", "1"), "_9x");
    }
}
