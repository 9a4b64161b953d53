//! The findings known so far, aggregated: one per rule, endpoint and (for per-client rules)
//! client, with counts and first/last seen. Bounded; what changed goes to the database, what
//! is new (or got worse) goes to the live outputs and the log.

use std::collections::{HashMap, HashSet};

use super::{
    model::{Finding, FindingKey, Scope},
    rules::Hit,
};
use crate::inventory::endpoint::EndpointKey;

#[derive(Debug)]
pub struct FindingsTable {
    findings: HashMap<FindingKey, Finding>,
    changed: HashSet<FindingKey>,
    max: usize,
    /// Findings not kept because the table was full.
    pub dropped: u64,
}

impl FindingsTable {
    pub fn new(max: usize) -> Self {
        Self {
            findings: HashMap::new(),
            changed: HashSet::new(),
            max,
            dropped: 0,
        }
    }

    /// Starts from what a previous run stored (not reported again).
    pub fn restore(&mut self, stored: Vec<Finding>) {
        for finding in stored.into_iter().take(self.max) {
            self.findings.insert(finding.key.clone(), finding);
        }
    }

    pub fn len(&self) -> usize {
        self.findings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.findings.is_empty()
    }

    /// Adds a hit; returns the finding when it is new or its severity rose (worth showing).
    pub fn record(&mut self, hit: Hit, endpoint: &EndpointKey) -> Option<Finding> {
        let key = FindingKey {
            rule: hit.rule,
            endpoint: endpoint.clone(),
            client: match hit.rule.scope() {
                Scope::Endpoint => String::new(),
                Scope::EndpointClient => hit.client.clone(),
            },
        };
        if let Some(f) = self.findings.get_mut(&key) {
            f.count += hit.count;
            f.first_seen_unix_nano = f.first_seen_unix_nano.min(hit.first_seen_unix_nano);
            f.last_seen_unix_nano = f.last_seen_unix_nano.max(hit.last_seen_unix_nano);
            f.evidence.extend(hit.evidence);
            let worse = hit.severity > f.severity;
            f.severity = f.severity.max(hit.severity);
            let shown = worse.then(|| f.clone());
            self.changed.insert(key);
            return shown;
        }
        if self.findings.len() >= self.max {
            self.dropped += 1;
            return None;
        }
        let finding = Finding {
            key: key.clone(),
            severity: hit.severity,
            client: hit.client,
            first_seen_unix_nano: hit.first_seen_unix_nano,
            last_seen_unix_nano: hit.last_seen_unix_nano,
            count: hit.count,
            evidence: hit.evidence,
        };
        self.findings.insert(key.clone(), finding.clone());
        self.changed.insert(key);
        Some(finding)
    }

    /// The findings changed since the last call.
    pub fn take_changed(&mut self) -> Vec<Finding> {
        self.changed
            .drain()
            .filter_map(|key| self.findings.get(&key).cloned())
            .collect()
    }

    /// Findings that could not be written yet: written with the next batch.
    pub fn requeue(&mut self, keys: impl IntoIterator<Item = FindingKey>) {
        self.changed.extend(keys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::{
        model::{Rule, Severity},
        rules::{evidence, tests::endpoint},
    };
    use serde_json::json;

    fn hit(rule: Rule, client: &str, at: u64, severity: Severity) -> Hit {
        Hit {
            rule,
            severity,
            evidence: evidence([("at", json!(at))]),
            client: client.into(),
            first_seen_unix_nano: at,
            last_seen_unix_nano: at,
            count: 1,
        }
    }

    #[test]
    fn hits_aggregate_per_rule_endpoint_and_client() {
        let mut table = FindingsTable::new(3);
        let ep = endpoint("GET", "/u/{id}", "x").key.clone();
        assert!(
            table
                .record(hit(Rule::JwtInUrl, "a", 5, Severity::Medium), &ep)
                .is_some()
        );
        assert!(
            table
                .record(hit(Rule::JwtInUrl, "a", 9, Severity::Medium), &ep)
                .is_none()
        );
        let worse = table
            .record(hit(Rule::JwtInUrl, "a", 7, Severity::High), &ep)
            .unwrap();
        assert_eq!(
            (
                worse.count,
                worse.first_seen_unix_nano,
                worse.last_seen_unix_nano
            ),
            (3, 5, 9)
        );
        assert_eq!(worse.evidence["at"], 7);
        // Per-endpoint rules ignore the client (and keep the first one).
        assert!(
            table
                .record(hit(Rule::ShadowEndpoint, "a", 1, Severity::Low), &ep)
                .is_some()
        );
        assert!(
            table
                .record(hit(Rule::ShadowEndpoint, "b", 2, Severity::Low), &ep)
                .is_none()
        );
        assert!(
            table
                .record(hit(Rule::JwtInUrl, "b", 1, Severity::Medium), &ep)
                .is_some()
        );
        assert_eq!(table.len(), 3);
        // Full: counted, not kept.
        assert!(
            table
                .record(hit(Rule::JwtInUrl, "c", 1, Severity::Medium), &ep)
                .is_none()
        );
        assert_eq!(table.dropped, 1);
        let changed = table.take_changed();
        assert_eq!(changed.len(), 3);
        let shadow = changed
            .iter()
            .find(|f| f.key.rule == Rule::ShadowEndpoint)
            .unwrap();
        assert_eq!((shadow.client.as_str(), shadow.count), ("a", 2));
        assert!(table.take_changed().is_empty());
    }
}
