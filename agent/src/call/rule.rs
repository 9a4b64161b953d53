//! The rules a call can match (their stable ids, names, OWASP categories and severities):
//! the findings stage sets them on the call, every sink reads them.

use serde::{Deserialize, Serialize};

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
    SensitiveDataInRequest,
    ObjectEnumeration,
    ObjectIdNeverGiven,
    ObjectReadByManyCredentials,
    AuthFailureBurst,
    ShadowEndpoint,
    ZombieEndpoint,
}

impl Rule {
    pub const ALL: [Rule; 15] = [
        Rule::UnauthenticatedSuccess,
        Rule::CleartextCredentials,
        Rule::JwtAlgNone,
        Rule::JwtExpiredAccepted,
        Rule::JwtWithoutExpiry,
        Rule::JwtInUrl,
        Rule::CredentialInUrl,
        Rule::SensitiveData,
        Rule::SensitiveDataInRequest,
        Rule::ObjectEnumeration,
        Rule::ObjectIdNeverGiven,
        Rule::ObjectReadByManyCredentials,
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
            Self::SensitiveDataInRequest => "SL-DATA-002",
            Self::ObjectEnumeration => "SL-ABUSE-001",
            Self::ObjectIdNeverGiven => "SL-AUTHZ-001",
            Self::ObjectReadByManyCredentials => "SL-AUTHZ-002",
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
            Self::SensitiveDataInRequest => "sensitive-data-in-request",
            Self::ObjectEnumeration => "object-enumeration",
            Self::ObjectIdNeverGiven => "object-id-never-given",
            Self::ObjectReadByManyCredentials => "object-read-by-many",
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
            Self::CleartextCredentials | Self::SensitiveDataInRequest => {
                "API8:2023 Security Misconfiguration"
            }
            Self::SensitiveData => "API3:2023 Broken Object Property Level Authorization",
            Self::ObjectEnumeration
            | Self::ObjectIdNeverGiven
            | Self::ObjectReadByManyCredentials => "API1:2023 Broken Object Level Authorization",
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
            | Self::JwtExpiredAccepted
            | Self::ObjectIdNeverGiven => Severity::High,
            // Signals of abuse, not proof: a batch job with one token also reads many ids.
            Self::AuthFailureBurst
            | Self::ObjectEnumeration
            | Self::ObjectReadByManyCredentials
            | Self::JwtInUrl
            | Self::CredentialInUrl
            | Self::SensitiveData
            | Self::SensitiveDataInRequest
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
