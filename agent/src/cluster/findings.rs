//! The cluster's findings, read from the metrics store: one per rule, endpoint and client,
//! with the calls of every node added, the highest severity any node gave it, first and last
//! seen anywhere, and the nodes that raised it (as its evidence: the evidence itself stays in
//! each node's database, `sightline findings` there).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{
    inventory::{endpoint_key, first_and_last, millis},
    prometheus_api::{Prometheus, QueryError, Sample},
};
use crate::findings::model::{Finding, FindingKey, Rule, Severity};

const KEYS: &str = "sightline_finding_rule_id, service_name, service_namespace, \
                    sightline_endpoint_direction, http_request_method, http_route, \
                    sightline_finding_client";

pub async fn read(prometheus: &Prometheus) -> Result<Vec<Finding>, QueryError> {
    let calls = prometheus.query("sightline_finding_calls_total").await?;
    let (first, last) = first_and_last(prometheus, "sightline_finding", KEYS).await?;
    Ok(assemble(&calls, &first, &last))
}

fn finding_key(sample: &Sample) -> Option<FindingKey> {
    Some(FindingKey {
        rule: Rule::parse(sample.labels.get("sightline_finding_rule_id")?)?,
        endpoint: endpoint_key(sample)?,
        client: sample
            .labels
            .get("sightline_finding_client")
            .cloned()
            .unwrap_or_default(),
    })
}

/// Joins the query results; most severe first, then the most recent.
pub fn assemble(calls: &[Sample], first: &[Sample], last: &[Sample]) -> Vec<Finding> {
    let mut findings: BTreeMap<FindingKey, Finding> = BTreeMap::new();
    for sample in calls {
        let Some(key) = finding_key(sample) else {
            continue;
        };
        let severity = sample
            .labels
            .get("sightline_finding_severity")
            .and_then(|s| Severity::parse(s))
            .unwrap_or(key.rule.default_severity());
        let node = sample.labels.get("instance").cloned().unwrap_or_default();
        let finding = findings.entry(key.clone()).or_insert_with(|| Finding {
            client: key.client.clone(),
            key,
            severity,
            first_seen_unix_nano: 0,
            last_seen_unix_nano: 0,
            count: 0,
            evidence: serde_json::Map::new(),
        });
        finding.severity = finding.severity.max(severity);
        finding.count += sample.value as u64;
        let nodes = finding
            .evidence
            .entry("nodes")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = nodes
            && !list.contains(&Value::from(node.clone()))
        {
            list.push(Value::from(node));
            list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
        }
    }
    for (samples, first) in [(first, true), (last, false)] {
        for sample in samples {
            if let Some(f) = finding_key(sample).and_then(|k| findings.get_mut(&k)) {
                let at = millis(sample.value) * 1_000_000;
                if first {
                    f.first_seen_unix_nano = at;
                } else {
                    f.last_seen_unix_nano = at;
                }
            }
        }
    }
    let mut list: Vec<Finding> = findings.into_values().collect();
    list.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.last_seen_unix_nano.cmp(&a.last_seen_unix_nano))
    });
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(route: &str, node: &str, severity: &str, value: f64) -> Sample {
        let labels = [
            ("sightline_finding_rule_id", "SL-AUTH-001"),
            ("service_name", "demo"),
            ("sightline_endpoint_direction", "served"),
            ("http_request_method", "POST"),
            ("http_route", route),
            ("sightline_finding_client", "curl"),
            ("sightline_finding_severity", severity),
            ("instance", node),
        ];
        Sample {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        }
    }

    #[test]
    fn one_finding_per_rule_endpoint_and_client_across_nodes() {
        let calls = [
            sample("/items", "a", "medium", 2.0),
            sample("/items", "b", "high", 3.0),
            sample("/other", "b", "medium", 1.0),
        ];
        let first = [sample("/items", "", "", 100.5)];
        let last = [sample("/items", "", "", 200.25)];
        let findings = assemble(&calls, &first, &last);
        assert_eq!(findings.len(), 2);
        let items = &findings[0];
        assert_eq!(items.key.endpoint.route, "/items");
        assert_eq!((items.severity, items.count), (Severity::High, 5));
        assert_eq!(items.evidence["nodes"], serde_json::json!(["a", "b"]));
        assert_eq!(
            (items.first_seen_unix_nano, items.last_seen_unix_nano),
            (100_500_000_000, 200_250_000_000)
        );
    }
}
