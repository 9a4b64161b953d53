//! What a finding is: a rule (stable id, name, OWASP API Security Top 10 2023 category,
//! default severity), where it was seen (service endpoint and client), how often, and evidence
//! that never holds a secret value (names, counts, JSON paths, fingerprints).

use crate::inventory::{endpoint::EndpointKey, report::rfc3339};

pub use crate::call::rule::{Rule, Scope, Severity};

/// Which finding: one rule at one endpoint, for one client when the rule is per client.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FindingKey {
    pub rule: Rule,
    pub endpoint: EndpointKey,
    /// The client, for per-client rules; empty for per-endpoint rules.
    pub client: String,
}

/// A finding with what is known of it so far.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub key: FindingKey,
    pub severity: Severity,
    /// The client of the first call (the key's client for per-client rules).
    pub client: String,
    pub first_seen_unix_nano: u64,
    pub last_seen_unix_nano: u64,
    /// Calls (or, for threshold rules, bursts) that matched.
    pub count: u64,
    /// What was seen, without secret values: names, counts, JSON paths, fingerprints.
    pub evidence: serde_json::Map<String, serde_json::Value>,
}

impl Finding {
    /// A one-line human summary of the evidence, for logs and the terminal.
    pub fn summary(&self) -> String {
        self.evidence
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The finding as JSON (the JSON-lines output, `sightline findings --format json`).
    pub fn to_json(&self) -> serde_json::Value {
        let e = &self.key.endpoint;
        serde_json::json!({
            "event.name": "sightline.finding",
            "sightline.finding.rule_id": self.key.rule.id(),
            "sightline.finding.rule": self.key.rule.name(),
            "sightline.finding.severity": self.severity.name(),
            "sightline.finding.owasp": self.key.rule.owasp(),
            "service.name": e.api,
            "service.namespace": e.namespace,
            "sightline.endpoint.direction": e.direction.name(),
            "http.request.method": e.method,
            "http.route": e.route,
            "sightline.finding.client": self.client,
            "first_seen": rfc3339(self.first_seen_unix_nano),
            "last_seen": rfc3339(self.last_seen_unix_nano),
            "first_seen_unix_nano": self.first_seen_unix_nano,
            "last_seen_unix_nano": self.last_seen_unix_nano,
            "count": self.count,
            "evidence": self.evidence,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_and_names_are_unique_and_parse_back() {
        let ids: std::collections::HashSet<_> = Rule::ALL.iter().map(|r| r.id()).collect();
        let names: std::collections::HashSet<_> = Rule::ALL.iter().map(|r| r.name()).collect();
        assert_eq!((ids.len(), names.len()), (Rule::ALL.len(), Rule::ALL.len()));
        for rule in Rule::ALL {
            assert_eq!(Rule::parse(rule.id()), Some(rule));
            assert_eq!(Rule::parse(rule.name()), Some(rule));
            assert!(rule.owasp().starts_with("API") && rule.owasp().contains(":2023 "));
        }
        assert_eq!(Rule::parse("no-such-rule"), None);
        assert_eq!(Severity::parse("high"), Some(Severity::High));
        assert!(Severity::Low < Severity::Critical);
        assert_eq!(Severity::High.raised(), Severity::Critical);
    }
}
