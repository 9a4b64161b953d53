//! `sightline inventory`: the stored endpoints as a table for people or as JSON.

use serde_json::{Value, json};

use super::{
    endpoint::{EndpointKey, EndpointStats},
    posture::Risk,
};

/// One endpoint of the report, with its risk.
pub type Row = (EndpointKey, EndpointStats, Risk);

/// The endpoints of `service` (all when `None`), in the order stored.
pub fn selected(
    endpoints: Vec<(EndpointKey, EndpointStats)>,
    service: Option<&str>,
) -> Vec<(EndpointKey, EndpointStats)> {
    endpoints
        .into_iter()
        .filter(|(key, _)| service.is_none_or(|s| key.api == s))
        .collect()
}

/// Several inventories (of several nodes, or runs) as one: an endpoint they share is one
/// endpoint with their statistics merged, ordered by endpoint.
pub fn merged(
    inventories: Vec<Vec<(EndpointKey, EndpointStats)>>,
) -> Vec<(EndpointKey, EndpointStats)> {
    let mut all: std::collections::BTreeMap<EndpointKey, EndpointStats> = Default::default();
    for (key, stats) in inventories.into_iter().flatten() {
        match all.entry(key) {
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(stats);
            }
            std::collections::btree_map::Entry::Occupied(mut slot) => slot.get_mut().merge(&stats),
        }
    }
    all.into_iter().collect()
}

/// A Unix time in nanoseconds as RFC 3339 with milliseconds.
pub fn rfc3339(unix_ns: u64) -> String {
    humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(unix_ns),
    )
    .to_string()
}

/// A spec operation no call matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unused {
    pub api: String,
    pub method: String,
    pub route: String,
    pub spec_file: String,
}

/// One JSON object per endpoint, then one per unused spec operation (`class` "unused").
pub fn to_json(endpoints: &[Row], unused: &[Unused]) -> Value {
    let unused = unused.iter().map(|u| {
        json!({"api": u.api, "method": u.method, "route": u.route, "class": "unused",
               "calls": 0, "spec_file": u.spec_file})
    });
    Value::Array(
        endpoints
            .iter()
            .map(|(key, s, risk)| {
                let [s1, s2, s3, s4, s5, none] = s.status_classes;
                json!({
                    "api": key.api,
                    "namespace": key.namespace,
                    "direction": key.direction.name(),
                    "method": key.method,
                    "route": key.route,
                    "first_seen": rfc3339(s.first_seen_unix_nano),
                    "last_seen": rfc3339(s.last_seen_unix_nano),
                    "calls": s.calls,
                    "status": {"1xx": s1, "2xx": s2, "3xx": s3, "4xx": s4, "5xx": s5, "none": none},
                    "duration_ms": {
                        "mean": s.duration_sum_ns as f64 / s.calls.max(1) as f64 / 1e6,
                        "p50_at_most": s.duration_quantile_ns(0.5).map(|n| n as f64 / 1e6),
                        "p95_at_most": s.duration_quantile_ns(0.95).map(|n| n as f64 / 1e6),
                        "max": s.duration_max_ns as f64 / 1e6,
                    },
                    "request_content_types": s.request_content_types,
                    "response_content_types": s.response_content_types,
                    "auth_schemes": s.auth_schemes,
                    "clients": s.clients,
                    "more_clients": s.more_clients,
                    "tls_calls": s.tls_calls,
                    "class": s.class.map_or("no-spec", |c| c.name()),
                    "exposure": s.posture.reach,
                    "external": s.posture.external(),
                    "via": s.posture.via,
                    "unauthenticated_successes": s.posture.unauthenticated_successes,
                    "response_body_max_bytes": s.posture.response_body_max,
                    "risk": risk,
                })
            })
            .chain(unused)
            .collect(),
    )
}

/// `850us`, `12.5ms`, `3.2s`.
fn duration(ns: u64) -> String {
    match ns {
        0..1_000_000 => format!("{}us", ns / 1_000),
        1_000_000..1_000_000_000 => format!("{:.1}ms", ns as f64 / 1e6),
        _ => format!("{:.1}s", ns as f64 / 1e9),
    }
}

/// A readable table.
pub fn render_table(endpoints: &[Row], unused: &[Unused]) -> String {
    let mut out = format!(
        "{:<24} {:<7} {:<7} {:<40} {:<10} {:>4}  {:<16} {:>7} {:>6} {:>6} {:>6} {:>9}  {:<20} {}\n",
        "API",
        "DIR",
        "METHOD",
        "ROUTE",
        "CLASS",
        "RISK",
        "EXPOSURE",
        "CALLS",
        "2XX",
        "4XX",
        "5XX",
        "P95",
        "AUTH",
        "CLIENTS"
    );
    for (key, s, risk) in endpoints {
        let api = if key.namespace.is_empty() {
            key.api.clone()
        } else {
            format!("{}/{}", key.namespace, key.api)
        };
        let p95 = s
            .duration_quantile_ns(0.95)
            .map_or("-".to_string(), duration);
        let auth: Vec<&str> = s.auth_schemes.iter().map(String::as_str).collect();
        let clients: Vec<&str> = s.clients.iter().map(String::as_str).collect();
        out.push_str(&format!(
            "{api:<24} {:<7} {:<7} {:<40} {:<10} {:>4.1}  {:<16} {:>7} {:>6} {:>6} {:>6} {:>9}  {:<20} {}{}\n",
            key.direction.name(),
            key.method,
            key.route,
            s.class.map_or("no-spec", |c| c.name()),
            risk.score,
            s.posture.reach_names(),
            s.calls,
            s.status_classes[1],
            s.status_classes[3],
            s.status_classes[4],
            p95,
            auth.join(","),
            clients.join(","),
            if s.more_clients { ",…" } else { "" },
        ));
    }
    for Unused {
        api, method, route, ..
    } in unused
    {
        out.push_str(&format!(
            "{api:<24} {:<7} {method:<7} {route:<40} {:<10} {:>4}  {:<16} {:>7}\n",
            "-", "unused", "-", "-", 0
        ));
    }
    out
}
