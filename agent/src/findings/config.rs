//! The `[findings]` section of the config file: which credential names to recognise, the
//! fingerprint key, and per rule: on or off, severity, thresholds; and allowlists.

use std::{collections::BTreeMap, path::PathBuf};

use serde::{Deserialize, Deserializer};

use super::model::{Rule, Severity};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FindingsSection {
    /// Analyse calls for findings at all (the authentication classification and the
    /// redaction of secrets always run).
    pub enabled: bool,
    /// The per-install key of the fingerprints; default: `fingerprint.key` beside the
    /// inventory database.
    pub fingerprint_key_file: Option<PathBuf>,
    /// Request headers that carry API keys (case-insensitive).
    pub api_key_headers: Vec<String>,
    /// Query parameters that carry API keys or tokens (case-insensitive).
    pub api_key_params: Vec<String>,
    /// Cookies that carry sessions (case-insensitive; any cookie whose name contains
    /// `session` counts too).
    pub session_cookies: Vec<String>,
    /// Clock skew allowed before a token counts as expired.
    pub jwt_leeway_seconds: u64,
    /// Also allow the built-in public routes (health checks, login and token endpoints) for
    /// `unauthenticated-success`.
    pub default_allowlist: bool,
    pub allow: Vec<AllowEntry>,
    /// Per rule (by name or id).
    pub rules: BTreeMap<Rule, RuleSection>,
}

impl FindingsSection {
    /// The names credential classification looks for.
    pub fn credential_names(&self) -> crate::credentials::auth::CredentialNames<'_> {
        crate::credentials::auth::CredentialNames {
            api_key_headers: &self.api_key_headers,
            api_key_params: &self.api_key_params,
            session_cookies: &self.session_cookies,
        }
    }
}

impl Default for FindingsSection {
    fn default() -> Self {
        let strings = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
        Self {
            enabled: true,
            fingerprint_key_file: None,
            api_key_headers: strings(&[
                "x-api-key",
                "api-key",
                "apikey",
                "x-apikey",
                "x-auth-token",
                "x-access-token",
                "x-api-token",
                "x-token",
                "private-token",
                "ocp-apim-subscription-key",
            ]),
            api_key_params: strings(&[
                "api_key",
                "apikey",
                "api-key",
                "key",
                "token",
                "access_token",
                "auth_token",
                "id_token",
                "jwt",
            ]),
            session_cookies: strings(&[
                "sid",
                "jsessionid",
                "phpsessid",
                "connect.sid",
                "asp.net_sessionid",
            ]),
            jwt_leeway_seconds: 60,
            default_allowlist: true,
            allow: Vec::new(),
            rules: BTreeMap::new(),
        }
    }
}

/// One `[findings.rules.<rule>]` section as written (what `rules::settings::RuleSettings` resolves).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleSection {
    pub enabled: Option<bool>,
    pub severity: Option<Severity>,
    /// For `object-enumeration`: distinct ids; for `auth-failure-burst`: 401/403 answers.
    pub threshold: Option<u32>,
    /// The window the threshold counts in.
    pub window_seconds: Option<u64>,
}

/// Calls that a rule (or every rule) must not report. Every field given must match; `route`
/// and `client` take `*` wildcards; `route` is matched against `http.route`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AllowEntry {
    /// Rules by name or id; empty: every rule.
    pub rules: Vec<Rule>,
    pub service: Option<String>,
    pub method: Option<String>,
    pub route: Option<String>,
    pub client: Option<String>,
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Rule::parse(&text).ok_or_else(|| {
            let known: Vec<&str> = Rule::ALL.iter().map(|r| r.name()).collect();
            serde::de::Error::custom(format!(
                "unknown rule `{text}`; rules: {}",
                known.join(", ")
            ))
        })
    }
}

/// Whether `pattern` (with `*` matching any run of characters) matches all of `text`.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("/health*", "/healthz"));
        assert!(wildcard_match("*/login", "/api/v1/login"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("/a/*/c", "/a/b/c"));
        assert!(!wildcard_match("/a/*/c", "/a/b/d"));
        assert!(!wildcard_match("*/login", "/login/x"));
        assert!(!wildcard_match("/x*x", "/x"));
        assert!(wildcard_match("/users", "/users"));
        assert!(!wildcard_match("/users", "/users/1"));
    }

    #[test]
    fn rules_are_named_in_the_config() {
        let section: FindingsSection = toml::from_str(
            "[rules.object-enumeration]\nthreshold = 5\n[rules.SL-JWT-003]\nenabled = false\n[[allow]]\nrules = [\"unauthenticated-success\"]\nroute = \"/public/*\"\n",
        )
        .unwrap();
        assert_eq!(section.rules[&Rule::ObjectEnumeration].threshold, Some(5));
        assert_eq!(section.rules[&Rule::JwtWithoutExpiry].enabled, Some(false));
        assert_eq!(section.allow[0].rules, [Rule::UnauthenticatedSuccess]);
        let error = toml::from_str::<FindingsSection>("[rules.no-such]\nenabled = true\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown rule `no-such`"), "{error}");
    }
}
