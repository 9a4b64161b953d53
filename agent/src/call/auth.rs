//! How a call authenticated, as credential classification (`credentials::auth`) found it: schemes, where each
//! credential was, keyed fingerprints and what a JWT says of itself. Never a secret value.

use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    Basic,
    BearerJwt,
    BearerOpaque,
    ApiKey,
    SessionCookie,
    Digest,
    Negotiate,
    AwsSigV4,
    OtherAuthorization,
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Self::Basic => "basic",
            Self::BearerJwt => "bearer-jwt",
            Self::BearerOpaque => "bearer-opaque",
            Self::ApiKey => "api-key",
            Self::SessionCookie => "session-cookie",
            Self::Digest => "digest",
            Self::Negotiate => "negotiate",
            Self::AwsSigV4 => "aws-sigv4",
            Self::OtherAuthorization => "authorization-other",
        }
    }
}

/// Where a credential was in the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Header(String),
    Cookie(String),
    Query(String),
    Path,
}

/// `header:authorization`, `cookie:sid`, `query:api_key`, `path`.
impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Header(name) => write!(f, "header:{name}"),
            Self::Cookie(name) => write!(f, "cookie:{name}"),
            Self::Query(name) => write!(f, "query:{name}"),
            Self::Path => f.write_str("path"),
        }
    }
}

/// As its label, written straight into the output (no string per call).
impl serde::Serialize for Location {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Location {
    pub fn in_url(&self) -> bool {
        matches!(self, Self::Query(_) | Self::Path)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub scheme: Scheme,
    pub location: Location,
    /// Shared with the credential cache (a token is seen in call after call).
    pub fingerprint: Arc<str>,
    pub jwt: Option<Arc<JwtSummary>>,
}

/// The credentials of one request, strongest place first (Authorization, API-key headers,
/// cookies, the URL).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallAuth {
    pub credentials: Vec<Credential>,
    /// The TLS client presented a certificate (`None`: not TLS, or not visible).
    pub mtls: Option<bool>,
}

impl CallAuth {
    pub fn authenticated(&self) -> bool {
        !self.credentials.is_empty() || self.mtls == Some(true)
    }

    /// The credential that names the call's scheme.
    pub fn primary(&self) -> Option<&Credential> {
        self.credentials.first()
    }

    /// The primary credential's scheme, else `mtls` (a client certificate alone), else `none`.
    pub fn scheme_name(&self) -> &'static str {
        match (self.primary(), self.mtls) {
            (Some(c), _) => c.scheme.name(),
            (None, Some(true)) => "mtls",
            (None, _) => "none",
        }
    }
}

/// What a token says of itself, safe to output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JwtSummary {
    /// `alg` of the header, as written (`none`, `HS256`, ...).
    pub alg: String,
    pub kid: Option<String>,
    pub iss: Option<String>,
    pub aud: Vec<String>,
    pub exp: Option<i64>,
    pub iat: Option<i64>,
    pub nbf: Option<i64>,
    /// `scope` (space-separated) or `scp` (list or string).
    pub scopes: Vec<String>,
    pub sub_fingerprint: Option<String>,
}

/// Calls `f` with each authentication scheme the request carried (names only, never values):
/// `bearer-jwt`, `basic`, `api-key-header:x-api-key`, `api-key-query:api_key`,
/// `session-cookie:sid`, `mtls`, ..., or `none`. Only the names with a header, parameter or
/// cookie in them are built per call.
pub fn for_each_scheme(auth: Option<&CallAuth>, mut f: impl FnMut(&str)) {
    let Some(auth) = auth.filter(|a| a.authenticated()) else {
        return f("none");
    };
    for c in &auth.credentials {
        match (&c.scheme, &c.location) {
            (Scheme::ApiKey, Location::Header(name)) => f(&format!("api-key-header:{name}")),
            (Scheme::ApiKey, Location::Query(name)) => f(&format!("api-key-query:{name}")),
            (Scheme::SessionCookie, Location::Cookie(name)) => f(&format!("session-cookie:{name}")),
            (scheme, _) => f(scheme.name()),
        }
    }
    if auth.mtls == Some(true) {
        f("mtls");
    }
}
