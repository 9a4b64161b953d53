//! What a finding is: a rule (stable id, name, OWASP API Security Top 10 2023 category,
//! default severity), where it was seen (service endpoint and client), how often, and evidence
//! that never holds a secret value (names, counts, JSON paths, fingerprints).

use serde::{Deserialize, Serialize};

use crate::inventory::{endpoint::EndpointKey, report::rfc3339};

/// How bad a finding is, lowest first (ordered, so the highest of several is `max`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Info,
            Self::Low,
            Self::Medium,
            Self::High,
            Self::Critical,
        ]
        .into_iter()
        .find(|s| s.name() == text)
    }

    /// One level up (an unauthenticated caller makes exposed data worse).
    pub fn raised(self) -> Self {
        match self {
            Self::Info => Self::Low,
            Self::Low => Self::Medium,
            Self::Medium => Self::High,
            Self::High | Self::Critical => Self::Critical,
        }
    }
}

/// Whether one finding is kept per endpoint, or per endpoint and client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Endpoint,
    EndpointClient,
}

/// Every rule. Ids and names are stable: they are keys in configs, databases and dashboards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    UnauthenticatedSuccess,
    CleartextCredentials,
    JwtAlgNone,
    JwtExpiredAccepted,
    JwtWithoutExpiry,
    JwtInUrl,
    CredentialInUrl,
    SensitiveData,
    ObjectEnumeration,
    AuthFailureBurst,
    ShadowEndpoint,
    ZombieEndpoint,
}

impl Rule {
    pub const ALL: [Rule; 12] = [
        Rule::UnauthenticatedSuccess,
        Rule::CleartextCredentials,
        Rule::JwtAlgNone,
        Rule::JwtExpiredAccepted,
        Rule::JwtWithoutExpiry,
        Rule::JwtInUrl,
        Rule::CredentialInUrl,
        Rule::SensitiveData,
        Rule::ObjectEnumeration,
        Rule::AuthFailureBurst,
        Rule::ShadowEndpoint,
        Rule::ZombieEndpoint,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Self::UnauthenticatedSuccess => "SL-AUTH-001",
            Self::CleartextCredentials => "SL-AUTH-002",
            Self::JwtAlgNone => "SL-JWT-001",
            Self::JwtExpiredAccepted => "SL-JWT-002",
            Self::JwtWithoutExpiry => "SL-JWT-003",
            Self::JwtInUrl => "SL-JWT-004",
            Self::CredentialInUrl => "SL-AUTH-003",
            Self::SensitiveData => "SL-DATA-001",
            Self::ObjectEnumeration => "SL-ABUSE-001",
            Self::AuthFailureBurst => "SL-ABUSE-002",
            Self::ShadowEndpoint => "SL-INV-001",
            Self::ZombieEndpoint => "SL-INV-002",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::UnauthenticatedSuccess => "unauthenticated-success",
            Self::CleartextCredentials => "cleartext-credentials",
            Self::JwtAlgNone => "jwt-alg-none",
            Self::JwtExpiredAccepted => "jwt-expired-accepted",
            Self::JwtWithoutExpiry => "jwt-without-expiry",
            Self::JwtInUrl => "jwt-in-url",
            Self::CredentialInUrl => "credential-in-url",
            Self::SensitiveData => "sensitive-data-exposure",
            Self::ObjectEnumeration => "object-enumeration",
            Self::AuthFailureBurst => "auth-failure-burst",
            Self::ShadowEndpoint => "shadow-endpoint",
            Self::ZombieEndpoint => "zombie-endpoint",
        }
    }

    /// OWASP API Security Top 10 (2023) category.
    pub fn owasp(self) -> &'static str {
        match self {
            Self::UnauthenticatedSuccess
            | Self::JwtAlgNone
            | Self::JwtExpiredAccepted
            | Self::JwtWithoutExpiry
            | Self::JwtInUrl
            | Self::CredentialInUrl
            | Self::AuthFailureBurst => "API2:2023 Broken Authentication",
            Self::CleartextCredentials => "API8:2023 Security Misconfiguration",
            Self::SensitiveData => "API3:2023 Broken Object Property Level Authorization",
            Self::ObjectEnumeration => "API1:2023 Broken Object Level Authorization",
            Self::ShadowEndpoint | Self::ZombieEndpoint => {
                "API9:2023 Improper Inventory Management"
            }
        }
    }

    pub fn default_severity(self) -> Severity {
        match self {
            Self::JwtAlgNone => Severity::Critical,
            Self::UnauthenticatedSuccess
            | Self::CleartextCredentials
            | Self::JwtExpiredAccepted => Severity::High,
            // Signals of abuse, not proof: a batch job with one token also reads many ids.
            Self::AuthFailureBurst
            | Self::ObjectEnumeration
            | Self::JwtInUrl
            | Self::CredentialInUrl
            | Self::SensitiveData
            | Self::ZombieEndpoint => Severity::Medium,
            Self::JwtWithoutExpiry | Self::ShadowEndpoint => Severity::Low,
        }
    }

    pub fn scope(self) -> Scope {
        match self {
            Self::ShadowEndpoint | Self::ZombieEndpoint => Scope::Endpoint,
            _ => Scope::EndpointClient,
        }
    }

    /// A rule by its id or its name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|r| r.id().eq_ignore_ascii_case(text) || r.name() == text)
    }
}

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
