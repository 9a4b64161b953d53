//! The `[findings]` config resolved for the rules: which are on, their severities, their
//! thresholds, and the allowlists (the built-in one of public routes included).

use std::collections::HashMap;

use super::Hit;
use crate::{
    findings::{
        config::{AllowEntry, FindingsSection, wildcard_match},
        model::{Rule, Severity},
    },
    inventory::endpoint::EndpointKey,
};

/// Routes that answer without authentication by design: health and readiness checks,
/// metrics, well-known documents, and the endpoints that hand out credentials.
const PUBLIC_ROUTES: &[&str] = &[
    "*/health",
    "*/healthz",
    "*/health/*",
    "*/ready",
    "*/readyz",
    "*/live",
    "*/livez",
    "*/metrics",
    "*/ping",
    "*/status",
    "*/version",
    "/favicon.ico",
    "/robots.txt",
    "/.well-known/*",
    "*/login",
    "*/signin",
    "*/signup",
    "*/register",
    "*/token",
    "*/oauth/token",
    "*/oauth2/token",
    "*/password/reset",
    "*/forgot-password",
];

/// A threshold rule's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Threshold {
    pub count: u32,
    pub window_ns: u64,
}

#[derive(Clone, Debug)]
pub struct RuleSettings {
    disabled: Vec<Rule>,
    severities: HashMap<Rule, Severity>,
    pub enumeration: Threshold,
    pub read_by_many: Threshold,
    pub auth_failures: Threshold,
    pub jwt_leeway_s: i64,
    allow: Vec<AllowEntry>,
}

/// Which rules take a threshold, and their defaults (count, window in seconds).
pub fn default_threshold(rule: Rule) -> Option<(u32, u64)> {
    match rule {
        Rule::ObjectEnumeration => Some((50, 300)),
        Rule::ObjectReadByManyCredentials => Some((5, 86_400)),
        Rule::AuthFailureBurst => Some((20, 60)),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error)]
#[error("findings.rules.{rule}: {message}")]
pub struct SettingsError {
    pub rule: &'static str,
    pub message: String,
}

impl RuleSettings {
    pub fn new(section: &FindingsSection) -> Result<Self, SettingsError> {
        let mut disabled = Vec::new();
        let mut severities = HashMap::new();
        for (rule, s) in &section.rules {
            if s.enabled == Some(false) {
                disabled.push(*rule);
            }
            if let Some(severity) = s.severity {
                severities.insert(*rule, severity);
            }
            let has_numbers = s.threshold.is_some() || s.window_seconds.is_some();
            if has_numbers && default_threshold(*rule).is_none() {
                return Err(SettingsError {
                    rule: rule.name(),
                    message: "this rule takes no threshold or window_seconds".into(),
                });
            }
            if s.threshold == Some(0) || s.window_seconds == Some(0) {
                return Err(SettingsError {
                    rule: rule.name(),
                    message: "threshold and window_seconds must be at least 1".into(),
                });
            }
        }
        let threshold = |rule: Rule| {
            let (count, window) = default_threshold(rule).unwrap_or((1, 1));
            let s = section.rules.get(&rule);
            Threshold {
                count: s.and_then(|s| s.threshold).unwrap_or(count),
                window_ns: s.and_then(|s| s.window_seconds).unwrap_or(window) * 1_000_000_000,
            }
        };
        let mut allow = section.allow.clone();
        if section.default_allowlist {
            allow.extend(PUBLIC_ROUTES.iter().map(|route| AllowEntry {
                rules: vec![Rule::UnauthenticatedSuccess],
                route: Some(route.to_string()),
                ..AllowEntry::default()
            }));
        }
        Ok(Self {
            disabled,
            severities,
            enumeration: threshold(Rule::ObjectEnumeration),
            read_by_many: threshold(Rule::ObjectReadByManyCredentials),
            auth_failures: threshold(Rule::AuthFailureBurst),
            jwt_leeway_s: section.jwt_leeway_seconds as i64,
            allow,
        })
    }

    pub fn enabled(&self, rule: Rule) -> bool {
        !self.disabled.contains(&rule)
    }

    /// The configured severity, else the one the rule computed.
    pub fn severity(&self, hit: &Hit) -> Severity {
        self.severities
            .get(&hit.rule)
            .copied()
            .unwrap_or(hit.severity)
    }

    /// Whether an allowlist entry covers the hit.
    pub fn allowed(&self, hit: &Hit, endpoint: &EndpointKey) -> bool {
        self.allow.iter().any(|a| {
            (a.rules.is_empty() || a.rules.contains(&hit.rule))
                && a.service.as_ref().is_none_or(|s| *s == endpoint.api)
                && a.method
                    .as_ref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(&endpoint.method))
                && a.route
                    .as_ref()
                    .is_none_or(|r| wildcard_match(r, &endpoint.route))
                && a.client
                    .as_ref()
                    .is_none_or(|c| wildcard_match(c, &hit.client))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::rules::evidence;

    fn hit(rule: Rule, client: &str) -> Hit {
        Hit {
            rule,
            severity: Severity::High,
            evidence: evidence([]),
            client: client.into(),
            first_seen_unix_nano: 0,
            last_seen_unix_nano: 0,
            count: 1,
        }
    }

    fn key(method: &str, route: &str) -> EndpointKey {
        EndpointKey {
            api: "shop".into(),
            namespace: String::new(),
            direction: crate::inventory::endpoint::Direction::Served,
            method: method.into(),
            route: route.into(),
        }
    }

    #[test]
    fn allowlists_match_every_given_field() {
        let section: FindingsSection = toml::from_str(
            "[[allow]]\nservice = \"shop\"\nroute = \"/public/*\"\n[[allow]]\nrules = [\"object-enumeration\"]\nclient = \"crawler*\"\n",
        )
        .unwrap();
        let s = RuleSettings::new(&section).unwrap();
        let unauth = hit(Rule::UnauthenticatedSuccess, "web");
        assert!(s.allowed(&unauth, &key("GET", "/public/docs")));
        assert!(!s.allowed(&unauth, &key("GET", "/private/docs")));
        // The built-in public routes, for unauthenticated-success only.
        assert!(s.allowed(&unauth, &key("GET", "/api/healthz")));
        assert!(s.allowed(&unauth, &key("POST", "/v1/login")));
        assert!(!s.allowed(&hit(Rule::SensitiveData, "web"), &key("POST", "/v1/login")));
        let walk = hit(Rule::ObjectEnumeration, "crawler-7");
        assert!(s.allowed(&walk, &key("GET", "/users/{id}")));
        assert!(!s.allowed(
            &hit(Rule::ObjectEnumeration, "web"),
            &key("GET", "/users/{id}")
        ));
        let off: FindingsSection = toml::from_str("default_allowlist = false").unwrap();
        assert!(
            !RuleSettings::new(&off)
                .unwrap()
                .allowed(&unauth, &key("GET", "/healthz"))
        );
    }

    #[test]
    fn severities_thresholds_and_bad_settings() {
        let section: FindingsSection = toml::from_str(
            "[rules.shadow-endpoint]\nseverity = \"high\"\nenabled = false\n[rules.auth-failure-burst]\nthreshold = 5\nwindow_seconds = 10\n",
        )
        .unwrap();
        let s = RuleSettings::new(&section).unwrap();
        assert!(!s.enabled(Rule::ShadowEndpoint));
        assert!(s.enabled(Rule::ZombieEndpoint));
        assert_eq!(s.severity(&hit(Rule::ShadowEndpoint, "x")), Severity::High);
        assert_eq!(
            s.auth_failures,
            Threshold {
                count: 5,
                window_ns: 10_000_000_000
            }
        );
        assert_eq!(s.enumeration.count, 50);
        let bad: FindingsSection = toml::from_str("[rules.jwt-alg-none]\nthreshold = 3\n").unwrap();
        let error = RuleSettings::new(&bad).unwrap_err().to_string();
        assert_eq!(
            error,
            "findings.rules.jwt-alg-none: this rule takes no threshold or window_seconds"
        );
    }
}
