//! What the gate can fail on: every findings rule, and the inventory's own verdicts on
//! endpoints (shadow, suspected shadow, zombie) and spec operations (unused). Each has a stable
//! id: SARIF results and baselines key on it.

use crate::findings::model::{Rule, Severity};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Check {
    /// A findings rule other than the two inventory ones (`Shadow` and `Zombie` stand for them).
    Finding(Rule),
    /// An endpoint the specs do not document.
    Shadow,
    /// A path a spec parameter matches that the traffic shows to be an endpoint of its own.
    SuspectedShadow,
    /// An endpoint called although deprecated or retired.
    Zombie,
    /// A spec operation nothing called (in a recorded test run: one the tests never reached).
    Unused,
}

impl Check {
    /// Every check, in the order reports list them.
    pub fn all() -> Vec<Check> {
        let mut all = vec![
            Self::Shadow,
            Self::SuspectedShadow,
            Self::Zombie,
            Self::Unused,
        ];
        all.extend(
            Rule::ALL
                .into_iter()
                .filter(|r| !matches!(r, Rule::ShadowEndpoint | Rule::ZombieEndpoint))
                .map(Self::Finding),
        );
        all
    }

    /// The check of a findings rule (the inventory rules map to the inventory checks).
    pub fn of_rule(rule: Rule) -> Self {
        match rule {
            Rule::ShadowEndpoint => Self::Shadow,
            Rule::ZombieEndpoint => Self::Zombie,
            other => Self::Finding(other),
        }
    }

    pub fn id(self) -> &'static str {
        match self {
            Self::Finding(rule) => rule.id(),
            Self::Shadow => Rule::ShadowEndpoint.id(),
            Self::Zombie => Rule::ZombieEndpoint.id(),
            Self::SuspectedShadow => "SL-INV-003",
            Self::Unused => "SL-INV-004",
        }
    }

    /// The name `--fail-on` takes (rule names, and the inventory classes' names).
    pub fn name(self) -> &'static str {
        match self {
            Self::Finding(rule) => rule.name(),
            Self::Shadow => "shadow",
            Self::SuspectedShadow => "suspected-shadow",
            Self::Zombie => "zombie",
            Self::Unused => "unused",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            Self::Finding(rule) => rule.default_severity(),
            Self::Shadow | Self::SuspectedShadow => Rule::ShadowEndpoint.default_severity(),
            Self::Zombie => Rule::ZombieEndpoint.default_severity(),
            Self::Unused => Severity::Info,
        }
    }

    /// One sentence: what the check finds.
    pub fn description(self) -> &'static str {
        match self {
            Self::Shadow | Self::Finding(Rule::ShadowEndpoint) => {
                "An endpoint answered calls that no API spec documents."
            }
            Self::SuspectedShadow => {
                "A path that a spec's parameter matches behaves as an endpoint of its own \
                 (a word among ids, or another response shape)."
            }
            Self::Zombie | Self::Finding(Rule::ZombieEndpoint) => {
                "A deprecated or retired endpoint is still called."
            }
            Self::Unused => "A spec operation that no call reached.",
            Self::Finding(Rule::UnauthenticatedSuccess) => {
                "A call without credentials succeeded where authentication is expected."
            }
            Self::Finding(Rule::CleartextCredentials) => {
                "Credentials were sent without TLS between hosts."
            }
            Self::Finding(Rule::JwtAlgNone) => "A JWT with algorithm none was accepted.",
            Self::Finding(Rule::JwtExpiredAccepted) => "An expired JWT was accepted.",
            Self::Finding(Rule::JwtWithoutExpiry) => "A JWT without an expiry was accepted.",
            Self::Finding(Rule::JwtInUrl) => "A JWT was sent in the URL.",
            Self::Finding(Rule::CredentialInUrl) => "A credential was sent in the URL.",
            Self::Finding(Rule::SensitiveData) => "A response carried sensitive data.",
            Self::Finding(Rule::SensitiveDataInRequest) => {
                "A request carried sensitive data to an operation that is not a sign-in."
            }
            Self::Finding(Rule::ObjectEnumeration) => "One client read many different object ids.",
            Self::Finding(Rule::ObjectIdNeverGiven) => {
                "A credential read an object the API had given to others, never to it."
            }
            Self::Finding(Rule::ObjectReadByManyCredentials) => {
                "One object was read by many credentials that were never given its id."
            }
            Self::Finding(Rule::AuthFailureBurst) => "A burst of failed authentications.",
        }
    }

    /// What to do about a result of the check.
    pub fn remedy(self) -> &'static str {
        match self {
            Self::Shadow | Self::Finding(Rule::ShadowEndpoint) => {
                "Document the endpoint in the service's OpenAPI spec, or remove it from the service."
            }
            Self::SuspectedShadow => {
                "Document the path as an operation of its own, or make the documented route \
                 handle it as a value like any other."
            }
            Self::Zombie | Self::Finding(Rule::ZombieEndpoint) => {
                "Move its callers to the current operation, then remove the deprecated one."
            }
            Self::Unused => {
                "Cover the operation in the tests, or remove it from the spec if the service \
                 no longer has it."
            }
            Self::Finding(Rule::UnauthenticatedSuccess) => {
                "Require authentication on the operation (or mark it public in the spec with \
                 `security: []` if it is meant to be)."
            }
            Self::Finding(Rule::CleartextCredentials) => "Serve and call the API over TLS.",
            Self::Finding(Rule::JwtAlgNone | Rule::JwtExpiredAccepted | Rule::JwtWithoutExpiry) => {
                "Verify every JWT's signature and expiry with an allowlist of algorithms."
            }
            Self::Finding(Rule::JwtInUrl | Rule::CredentialInUrl) => {
                "Send credentials in a header, never in the URL (URLs are logged and cached)."
            }
            Self::Finding(Rule::SensitiveData) => {
                "Return only the fields the client needs; mask or drop sensitive ones."
            }
            Self::Finding(Rule::SensitiveDataInRequest) => {
                "Send card numbers to a payment provider's tokenizer and keys to a secret store, \
                 not through the API; never send passwords outside sign-in and password changes."
            }
            Self::Finding(
                Rule::ObjectEnumeration
                | Rule::ObjectIdNeverGiven
                | Rule::ObjectReadByManyCredentials,
            ) => "Check that each object read belongs to the caller; rate-limit id lookups.",
            Self::Finding(Rule::AuthFailureBurst) => {
                "Rate-limit failed authentications per client and credential."
            }
        }
    }

    /// The OWASP API Security Top 10 (2023) category.
    pub fn owasp(self) -> &'static str {
        match self {
            Self::Finding(rule) => rule.owasp(),
            _ => Rule::ShadowEndpoint.owasp(),
        }
    }
}

/// One `--fail-on` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Term {
    Check(Check),
    /// `severity>=LEVEL`: any result at least that severe.
    SeverityAtLeast(Severity),
}

impl Term {
    /// `shadow`, `zombie`, `suspected-shadow`, `unused`, a rule name or id, or
    /// `severity>=LEVEL`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(level) = text.strip_prefix("severity>=") {
            return Severity::parse(level.trim())
                .map(Self::SeverityAtLeast)
                .ok_or_else(|| {
                    format!("{level:?}: a severity is one of info, low, medium, high, critical")
                });
        }
        Check::all()
            .into_iter()
            .find(|c| c.name() == text || c.id().eq_ignore_ascii_case(text))
            .or_else(|| Rule::parse(text).map(Check::of_rule))
            .map(Self::Check)
            .ok_or_else(|| {
                let names: Vec<&str> = Check::all().into_iter().map(Check::name).collect();
                format!(
                    "{text:?} is not a check: one of {}, a rule id, or severity>=LEVEL",
                    names.join(", ")
                )
            })
    }

    pub fn matches(self, check: Check, severity: Severity) -> bool {
        match self {
            Self::Check(c) => c == check,
            Self::SeverityAtLeast(level) => severity >= level,
        }
    }

    pub fn name(self) -> String {
        match self {
            Self::Check(c) => c.name().to_string(),
            Self::SeverityAtLeast(level) => format!("severity>={}", level.name()),
        }
    }
}

/// The conditions of one `--fail-on`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terms(pub Vec<Term>);

/// `--fail-on a,b,c`.
pub fn parse_terms(text: &str) -> Result<Terms, String> {
    text.split(',')
        .filter(|t| !t.trim().is_empty())
        .map(Term::parse)
        .collect::<Result<_, _>>()
        .map(Terms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_has_a_unique_id_and_name_that_parse_back() {
        let all = Check::all();
        let ids: std::collections::HashSet<_> = all.iter().map(|c| c.id()).collect();
        let names: std::collections::HashSet<_> = all.iter().map(|c| c.name()).collect();
        assert_eq!((ids.len(), names.len()), (all.len(), all.len()));
        for check in all {
            assert_eq!(Term::parse(check.name()), Ok(Term::Check(check)));
            assert_eq!(Term::parse(check.id()), Ok(Term::Check(check)));
            assert!(!check.description().is_empty());
        }
    }

    #[test]
    fn fail_on_lists_parse_with_rule_names_and_severities() {
        assert_eq!(
            parse_terms("shadow, unauthenticated-success,severity>=high,shadow-endpoint"),
            Ok(Terms(vec![
                Term::Check(Check::Shadow),
                Term::Check(Check::Finding(Rule::UnauthenticatedSuccess)),
                Term::SeverityAtLeast(Severity::High),
                Term::Check(Check::Shadow),
            ]))
        );
        assert!(parse_terms("shadwo").unwrap_err().contains("not a check"));
        assert!(parse_terms("severity>=huge").is_err());
        let high = Term::SeverityAtLeast(Severity::High);
        assert!(high.matches(Check::Zombie, Severity::Critical));
        assert!(!high.matches(Check::Zombie, Severity::Medium));
    }
}
