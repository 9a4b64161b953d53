//! Checks the Grafana dashboards of `deploy/grafana/dashboards` against what a real agent
//! exported: every Prometheus metric and label (as the collector's Prometheus translation names
//! them), every Loki label and structured-metadata field, every Tempo attribute they query.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use serde_json::Value;

use crate::otlp::{Collector, MetricKind};

/// What an export holds, under the names the backends give it.
#[derive(Debug, Default)]
pub struct Exported {
    /// Prometheus series name -> its labels.
    pub metrics: BTreeMap<String, BTreeSet<String>>,
    /// Loki labels (the logs' resource attributes).
    pub log_labels: BTreeSet<String>,
    /// Loki structured metadata (the log records' attributes).
    pub log_fields: BTreeSet<String>,
    pub span_resource: BTreeSet<String>,
    pub span_attributes: BTreeSet<String>,
}

/// `service.name` -> `service_name`.
fn underscored(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The Prometheus name of an OTLP metric (the collector's translation: unit suffix, `_total`
/// for counters; annotations such as `{event}` add nothing).
fn prometheus_name(name: &str, unit: &str) -> String {
    let mut out = underscored(name);
    let suffix = match unit {
        "s" => "seconds",
        "By" => "bytes",
        "ms" => "milliseconds",
        _ => "",
    };
    if !suffix.is_empty() && !out.ends_with(suffix) {
        out.push('_');
        out.push_str(suffix);
    }
    out
}

impl Exported {
    pub fn from(collector: &Collector) -> Exported {
        let mut exported = Exported::default();
        for (name, (unit, kind, keys)) in collector.metric_names() {
            let mut labels: BTreeSet<String> = keys.iter().map(|k| underscored(k)).collect();
            labels.extend(["job".to_string(), "instance".to_string()]);
            let base = prometheus_name(&name, &unit);
            match kind {
                MetricKind::Counter => {
                    exported.metrics.insert(format!("{base}_total"), labels);
                }
                MetricKind::Histogram => {
                    let mut buckets = labels.clone();
                    buckets.insert("le".to_string());
                    exported.metrics.insert(format!("{base}_bucket"), buckets);
                    exported
                        .metrics
                        .insert(format!("{base}_sum"), labels.clone());
                    exported.metrics.insert(format!("{base}_count"), labels);
                }
                _ => {
                    exported.metrics.insert(base, labels);
                }
            }
        }
        for log in collector.logs() {
            exported
                .log_labels
                .extend(log.resource.keys().map(|k| underscored(k)));
            exported
                .log_fields
                .extend(log.attributes.keys().map(|k| underscored(k)));
        }
        for span in collector.spans() {
            exported.span_resource.extend(span.resource.keys().cloned());
            exported
                .span_attributes
                .extend(span.attributes.keys().cloned());
        }
        exported
    }
}

pub fn dashboard_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/dashboards")
}

/// Every problem found in the dashboards (empty: they query only what is exported).
pub fn check(exported: &Exported) -> Vec<String> {
    let mut problems = Vec::new();
    let mut uids = BTreeSet::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dashboard_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "dashboards missing: {files:?}");
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        let dashboard: Value = match serde_json::from_str(&text) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("{name}: not JSON: {e}"));
                continue;
            }
        };
        let uid = dashboard["uid"].as_str().unwrap_or_default().to_string();
        if uid.is_empty() || !uids.insert(uid.clone()) {
            problems.push(format!("{name}: missing or repeated uid {uid:?}"));
        }
        if dashboard["title"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{name}: no title"));
        }
        for variable in dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if variable["type"] == "query" {
                let query = variable["query"]["query"].as_str().unwrap_or_default();
                check_promql(query, exported, &format!("{name} variable"), &mut problems);
            }
        }
        let panels = dashboard["panels"].as_array().cloned().unwrap_or_default();
        if panels.iter().filter(|p| p["type"] != "row").count() == 0 {
            problems.push(format!("{name}: no panels"));
        }
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or_default();
            let place = format!("{name} panel {title:?}");
            if panel["type"] != "row" && panel["targets"].as_array().is_none_or(Vec::is_empty) {
                problems.push(format!("{place}: no query"));
            }
            for target in panel["targets"].as_array().into_iter().flatten() {
                match panel["datasource"]["type"].as_str() {
                    Some("prometheus") => check_promql(
                        target["expr"].as_str().unwrap_or_default(),
                        exported,
                        &place,
                        &mut problems,
                    ),
                    Some("loki") => check_logql(
                        target["expr"].as_str().unwrap_or_default(),
                        exported,
                        &place,
                        &mut problems,
                    ),
                    Some("tempo") => check_traceql(
                        target["query"].as_str().unwrap_or_default(),
                        exported,
                        &place,
                        &mut problems,
                    ),
                    other => problems.push(format!("{place}: data source {other:?}")),
                }
            }
        }
    }
    problems
}

/// PromQL words that are not metric names: keywords, and aggregation operators (which may be
/// followed by `by (...)` before their parenthesis).
const PROMQL_WORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
];

/// Metric names (identifiers not followed by `(`), their `{}` label matchers, and the labels
/// of `by (...)`/`without (...)` (which must belong to one of the expression's metrics).
fn check_promql(expr: &str, exported: &Exported, place: &str, problems: &mut Vec<String>) {
    if expr.trim().is_empty() {
        problems.push(format!("{place}: empty PromQL"));
        return;
    }
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut metrics: Vec<String> = Vec::new();
    let mut grouping: Vec<String> = Vec::new();
    let mut last_metric: Option<String> = None;
    let mut in_label_values = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '$' {
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c == '{' {
            let start = i + 1;
            while i < chars.len() && chars[i] != '}' {
                if chars[i] == '"' {
                    i += 1;
                    while i < chars.len() && chars[i] != '"' {
                        i += 1;
                    }
                }
                i += 1;
            }
            let body: String = chars[start..i.min(chars.len())].iter().collect();
            for label in matcher_labels(&body) {
                match &last_metric {
                    Some(metric) => {
                        if exported
                            .metrics
                            .get(metric)
                            .is_some_and(|l| !l.contains(&label))
                        {
                            problems.push(format!("{place}: {metric} has no label {label}"));
                        }
                    }
                    None => problems.push(format!("{place}: a selector without a metric")),
                }
            }
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j] == ' ' {
                j += 1;
            }
            let called = chars.get(j) == Some(&'(');
            if word == "label_values" {
                in_label_values = true;
            } else if ["by", "without"].contains(&word.as_str()) && called {
                let close = chars[j..]
                    .iter()
                    .position(|c| *c == ')')
                    .map_or(chars.len(), |p| j + p);
                let list: String = chars[j + 1..close].iter().collect();
                grouping.extend(
                    list.split(',')
                        .map(|l| l.trim().to_string())
                        .filter(|l| !l.is_empty()),
                );
                i = close + 1;
            } else if called || PROMQL_WORDS.contains(&word.as_str()) {
            } else if in_label_values && last_metric.is_some() {
                // label_values(metric{...}, label): the second argument is a label.
                grouping.push(word);
            } else {
                if !exported.metrics.contains_key(&word) {
                    problems.push(format!("{place}: metric {word} is not exported"));
                }
                metrics.push(word.clone());
                last_metric = Some(word);
            }
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    for label in grouping {
        let known = metrics
            .iter()
            .any(|m| exported.metrics.get(m).is_some_and(|l| l.contains(&label)));
        if !known {
            problems.push(format!("{place}: label {label} is on none of {metrics:?}"));
        }
    }
}

/// The label names of `a="x", b=~"y"`.
fn matcher_labels(body: &str) -> Vec<String> {
    let mut labels = Vec::new();
    let mut rest = body;
    while let Some(op) = rest.find(['=', '!']) {
        let name = rest[..op].trim().trim_start_matches(',').trim();
        if !name.is_empty() {
            labels.push(name.to_string());
        }
        // Skip past the quoted value.
        let Some(open) = rest[op..].find('"').map(|p| op + p) else {
            break;
        };
        let Some(close) = rest[open + 1..].find('"').map(|p| open + 1 + p) else {
            break;
        };
        rest = &rest[close + 1..];
    }
    labels
}

/// `{labels} | field op "value" | ...`: labels from the logs' resource, fields from their
/// attributes.
fn check_logql(expr: &str, exported: &Exported, place: &str, problems: &mut Vec<String>) {
    let (Some(open), Some(close)) = (expr.find('{'), expr.find('}')) else {
        problems.push(format!("{place}: no stream selector in {expr:?}"));
        return;
    };
    for label in matcher_labels(&expr[open + 1..close]) {
        if !exported.log_labels.contains(&label) {
            problems.push(format!("{place}: Loki label {label} is not exported"));
        }
    }
    for stage in pipeline_stages(&expr[close + 1..]) {
        let Some(op) = stage.find(['=', '!', '<', '>']) else {
            problems.push(format!("{place}: unchecked LogQL stage {stage:?}"));
            continue;
        };
        let field = stage[..op].trim();
        if !exported.log_fields.contains(field) && !exported.log_labels.contains(field) {
            problems.push(format!("{place}: log field {field} is not exported"));
        }
    }
}

/// The stages of a LogQL pipeline: split on `|` outside quoted strings.
fn pipeline_stages(pipeline: &str) -> Vec<&str> {
    let mut stages = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in pipeline.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '|' if !quoted => {
                stages.push(pipeline[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    stages.push(pipeline[start..].trim());
    stages.retain(|s| !s.is_empty());
    stages
}

/// `resource.x` and `span.x` attributes of TraceQL.
fn check_traceql(query: &str, exported: &Exported, place: &str, problems: &mut Vec<String>) {
    let mut rest = query;
    while let Some(at) = rest.find(['.']) {
        let before: String = rest[..at]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let after: String = rest[at + 1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '_')
            .collect();
        let set = match before.as_str() {
            "resource" => Some(&exported.span_resource),
            "span" => Some(&exported.span_attributes),
            _ => None,
        };
        if let Some(set) = set
            && !set.contains(&after)
        {
            problems.push(format!("{place}: {before}.{after} is not exported"));
        }
        rest = &rest[at + 1 + after.len()..];
    }
}

/// The collector configuration's pipelines name only components it defines, and it receives
/// OTLP on the ports the agent defaults to.
pub fn check_collector_config() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/otel-collector/config.yaml");
    let config: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut problems = Vec::new();
    let pipelines = config["service"]["pipelines"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for signal in ["traces", "metrics", "logs"] {
        if !pipelines.contains_key(signal) {
            problems.push(format!("no {signal} pipeline"));
        }
    }
    for (name, pipeline) in &pipelines {
        for (kind, section) in [
            ("receivers", "receivers"),
            ("processors", "processors"),
            ("exporters", "exporters"),
        ] {
            for component in pipeline[kind].as_array().into_iter().flatten() {
                let component = component.as_str().unwrap_or_default();
                if config[section].get(component).is_none() {
                    problems.push(format!(
                        "pipeline {name}: {kind} {component} is not defined"
                    ));
                }
            }
        }
    }
    let otlp = &config["receivers"]["otlp"]["protocols"];
    let ports: BTreeMap<&str, &str> = [("grpc", ":4317"), ("http", ":4318")].into();
    for (protocol, port) in ports {
        if !otlp[protocol]["endpoint"]
            .as_str()
            .is_some_and(|e| e.ends_with(port))
        {
            problems.push(format!("the OTLP {protocol} receiver is not on {port}"));
        }
    }
    problems
}
