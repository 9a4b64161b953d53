//! The findings as metrics that add up across nodes (`sightline findings --prometheus` reads
//! them back): per finding (rule, endpoint, client)
//! - `sightline.finding.calls`: the calls (or bursts) that matched, with the rule, its id, the
//!   severity, the endpoint and the client as attributes;
//! - `sightline.finding.first_seen`, `.last_seen` (Unix seconds, to the millisecond): the
//!   same without the severity (it can rise; the times stay one series).
//!
//! Bounded by the findings table (10,000): the cardinality limit is raised to that.

use std::sync::Arc;

use opentelemetry::{KeyValue, metrics::Meter};
use opentelemetry_sdk::metrics::{Instrument, Stream};

use super::inventory_metrics::unix_seconds_to_ms;
use crate::findings::{model::Finding, series::FindingSeries, stage::MAX_FINDINGS};

pub const CALLS: &str = "sightline.finding.calls";
pub const FIRST_SEEN: &str = "sightline.finding.first_seen";
pub const LAST_SEEN: &str = "sightline.finding.last_seen";

pub fn cardinality_view(instrument: &Instrument) -> Option<Stream> {
    [CALLS, FIRST_SEEN, LAST_SEEN]
        .contains(&instrument.name())
        .then(|| {
            Stream::builder()
                .with_cardinality_limit(MAX_FINDINGS + 1)
                .build()
                .ok()
        })
        .flatten()
}

fn attributes(finding: &Finding) -> Vec<KeyValue> {
    let e = &finding.key.endpoint;
    let mut attributes = vec![
        KeyValue::new("sightline.finding.rule_id", finding.key.rule.id()),
        KeyValue::new("sightline.finding.rule", finding.key.rule.name()),
        KeyValue::new("service.name", e.api.clone()),
        KeyValue::new("sightline.endpoint.direction", e.direction.name()),
        KeyValue::new("http.request.method", e.method.clone()),
        KeyValue::new("http.route", e.route.clone()),
        KeyValue::new("sightline.finding.client", finding.client.clone()),
    ];
    if !e.namespace.is_empty() {
        attributes.push(KeyValue::new("service.namespace", e.namespace.clone()));
    }
    attributes
}

pub fn register(meter: &Meter, findings: Arc<FindingSeries>) {
    let source = findings.clone();
    meter
        .u64_observable_counter(CALLS)
        .with_unit("{call}")
        .with_description("Calls (or bursts) that matched a finding, per finding")
        .with_callback(move |o| {
            for finding in source.snapshot() {
                let mut attributes = attributes(&finding);
                attributes.push(KeyValue::new(
                    "sightline.finding.severity",
                    finding.severity.name(),
                ));
                o.observe(finding.count, &attributes);
            }
        })
        .build();
    for (name, description, first) in [
        (
            FIRST_SEEN,
            "When the finding was first seen (Unix time)",
            true,
        ),
        (
            LAST_SEEN,
            "When the finding was last seen (Unix time)",
            false,
        ),
    ] {
        let source = findings.clone();
        meter
            .f64_observable_gauge(name)
            .with_unit("s")
            .with_description(description)
            .with_callback(move |o| {
                for finding in source.snapshot() {
                    let at = if first {
                        finding.first_seen_unix_nano
                    } else {
                        finding.last_seen_unix_nano
                    };
                    o.observe(unix_seconds_to_ms(at), &attributes(&finding));
                }
            })
            .build();
    }
}
