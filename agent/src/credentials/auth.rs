//! How each call authenticates, classified without keeping a secret: the credentials a
//! request carries (Authorization, API-key headers, session cookies, credentials in the
//! query), each as a scheme, where it was, a keyed fingerprint, and for JWTs the decoded
//! header and claims. Then the secret values are removed from the call itself, so no later
//! stage or sink can see them.
//!
//! mTLS comes from the connection's handshake (`protocol::tls_handshake`): seen in TLS 1.2,
//! unknown in TLS 1.3 (encrypted) and in resumed sessions; calls say nothing rather than guess.

use super::{
    credential_cache::CredentialCache,
    fingerprint::Fingerprinter,
    jwt,
    redact::{self, REDACTED},
};
use crate::call::ApiCall;

pub use crate::call::auth::{CallAuth, Credential, Location, Scheme};

/// Most credentials kept per request (and most query parameters looked at).
const MAX_CREDENTIALS: usize = 8;
const MAX_QUERY_PARAMS: usize = 64;

/// The names under which requests carry credentials, from the config (`[findings]`).
#[derive(Clone, Copy, Debug)]
pub struct CredentialNames<'a> {
    pub api_key_headers: &'a [String],
    pub api_key_params: &'a [String],
    pub session_cookies: &'a [String],
}

/// Classifies requests and strips their secrets; holds the names from the config.
#[derive(Debug)]
pub struct AuthClassifier {
    api_key_headers: Vec<String>,
    api_key_params: Vec<String>,
    session_cookies: Vec<String>,
    credentials: CredentialCache,
}

impl AuthClassifier {
    pub fn new(names: CredentialNames<'_>, fingerprints: Fingerprinter) -> Self {
        let mut classifier = Self {
            api_key_headers: Vec::new(),
            api_key_params: Vec::new(),
            session_cookies: Vec::new(),
            credentials: CredentialCache::new(fingerprints),
        };
        classifier.set_names(names);
        classifier
    }

    /// The credential names of a (reloaded) config; the credential cache stays.
    pub fn set_names(&mut self, names: CredentialNames<'_>) {
        let lower = |names: &[String]| names.iter().map(|n| n.to_ascii_lowercase()).collect();
        self.api_key_headers = lower(names.api_key_headers);
        self.api_key_params = lower(names.api_key_params);
        self.session_cookies = lower(names.session_cookies);
    }

    /// The call's credentials; afterwards the call holds none of their values (headers,
    /// query) in clear.
    pub fn classify_and_redact(&mut self, call: &mut ApiCall) -> CallAuth {
        let mut auth = CallAuth {
            credentials: Vec::new(),
            mtls: call.tls.and(call.tls_client_certificate),
        };
        let mut cookies = Vec::new();
        for header in &mut call.request_headers {
            let mut buf = [0u8; MAX_HEADER_NAME];
            // Longer names are no credential header we know.
            let Some(name) = lower_name(&header.name, &mut buf) else {
                continue;
            };
            let is_api_key = self.api_key_headers.iter().any(|h| h == name);
            let kind = match name {
                "authorization" | "proxy-authorization" | "cookie" => name,
                _ if is_api_key => "api-key",
                _ if redact::is_secret_lower(name) => "",
                _ => continue,
            };
            let text = String::from_utf8_lossy(&header.value);
            let value = text.trim();
            if value.is_empty() {
                continue;
            }
            match kind {
                "cookie" => cookies.extend(self.session_cookies(value)),
                "api-key" => {
                    let location = Location::Header(name.to_string());
                    auth.credentials
                        .push(self.opaque_or_jwt(Scheme::ApiKey, value, location));
                }
                "" => {}
                _ => {
                    let location = Location::Header(name.to_string());
                    auth.credentials.push(self.authorization(value, location));
                }
            }
            header.value = REDACTED.as_bytes().to_vec();
        }
        auth.credentials.extend(cookies);
        if let Some(query) = call.query.take() {
            auth.credentials.extend(self.query_credentials(&query));
            call.query = Some(redact::query_with(&query, &self.api_key_params));
        }
        for segment in call.path.split('/').filter(|s| jwt::looks_like_jwt(s)) {
            auth.credentials
                .push(self.opaque_or_jwt(Scheme::BearerJwt, segment, Location::Path));
        }
        auth.credentials.truncate(MAX_CREDENTIALS);
        auth
    }

    fn authorization(&mut self, value: &str, location: Location) -> Credential {
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" => self.opaque_or_jwt(Scheme::BearerOpaque, rest, location),
            "basic" => self.credential(Scheme::Basic, rest, location),
            "digest" => self.credential(Scheme::Digest, value, location),
            "negotiate" => self.credential(Scheme::Negotiate, rest, location),
            "aws4-hmac-sha256" => self.credential(Scheme::AwsSigV4, value, location),
            _ => self.credential(Scheme::OtherAuthorization, value, location),
        }
    }

    /// A JWT when the value decodes as one (as `BearerJwt`), else `scheme`.
    fn opaque_or_jwt(&mut self, scheme: Scheme, value: &str, location: Location) -> Credential {
        let (fingerprint, jwt) = self.credentials.get(value);
        Credential {
            scheme: if jwt.is_some() {
                Scheme::BearerJwt
            } else {
                scheme
            },
            location,
            fingerprint,
            jwt,
        }
    }

    /// A credential of `scheme` whatever the value looks like.
    fn credential(&mut self, scheme: Scheme, secret: &str, location: Location) -> Credential {
        Credential {
            scheme,
            location,
            fingerprint: self.credentials.get(secret).0,
            jwt: None,
        }
    }

    fn session_cookies(&mut self, header: &str) -> Vec<Credential> {
        let mut out = Vec::new();
        for (name, value) in header.split(';').filter_map(|p| p.trim().split_once('=')) {
            let name = name.trim().to_ascii_lowercase();
            if !value.is_empty()
                && (self.session_cookies.contains(&name) || name.contains("session"))
            {
                let location = Location::Cookie(safe_name(&name));
                out.push(self.credential(Scheme::SessionCookie, value, location));
            }
        }
        out
    }

    /// API keys by parameter name, and JWTs whatever the parameter.
    fn query_credentials(&mut self, query: &str) -> Vec<Credential> {
        query
            .split('&')
            .take(MAX_QUERY_PARAMS)
            .filter_map(|pair| pair.split_once('='))
            .filter(|(_, value)| !value.is_empty())
            .filter_map(|(name, value)| {
                let lower = redact::decode_component(name).to_ascii_lowercase();
                let location = Location::Query(safe_name(&lower));
                let value = redact::decode_component(value);
                if jwt::looks_like_jwt(&value) {
                    Some(self.opaque_or_jwt(Scheme::BearerJwt, &value, location))
                } else if self.api_key_params.contains(&lower) {
                    Some(self.opaque_or_jwt(Scheme::ApiKey, &value, location))
                } else {
                    None
                }
            })
            .collect()
    }
}

/// Header names longer than this are not looked at.
const MAX_HEADER_NAME: usize = 64;

/// `name` in lower case, in `buf` (no allocation per header); `None` when longer than the
/// buffer or not UTF-8.
fn lower_name<'b>(name: &str, buf: &'b mut [u8; MAX_HEADER_NAME]) -> Option<&'b str> {
    let out = buf.get_mut(..name.len())?;
    for (o, b) in out.iter_mut().zip(name.bytes()) {
        *o = b.to_ascii_lowercase();
    }
    std::str::from_utf8(out).ok()
}

/// A header, cookie or parameter name as it may be shown: a short token, else `_other`.
fn safe_name(name: &str) -> String {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        name.to_string()
    } else {
        "_other".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::tests::sample;

    fn classifier() -> AuthClassifier {
        AuthClassifier::new(
            crate::findings::config::FindingsSection::default().credential_names(),
            Fingerprinter::with_key([3; 32]),
        )
    }

    fn call_with(headers: &[(&str, &str)], query: Option<&str>) -> ApiCall {
        let mut call = sample();
        call.request_headers = crate::call::tests::headers(headers);
        call.query = query.map(str::to_string);
        call
    }

    fn schemes(auth: &CallAuth) -> Vec<(&'static str, String)> {
        auth.credentials
            .iter()
            .map(|c| (c.scheme.name(), c.location.to_string()))
            .collect()
    }

    const JWT: &str = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.";

    #[test]
    fn every_scheme_is_recognised_and_its_value_removed() {
        let mut c = classifier();
        type Pairs<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Pairs, Option<&str>, Pairs)] = &[
            (&[], None, &[]),
            (
                &[("Authorization", "Basic dXNlcjpwYXNz")],
                None,
                &[("basic", "header:authorization")],
            ),
            (
                &[("Authorization", &format!("Bearer {JWT}"))],
                None,
                &[("bearer-jwt", "header:authorization")],
            ),
            (
                &[("authorization", "Bearer s3cr3t-opaque")],
                None,
                &[("bearer-opaque", "header:authorization")],
            ),
            (
                &[("X-API-Key", "k-123")],
                None,
                &[("api-key", "header:x-api-key")],
            ),
            (
                &[("Cookie", "theme=dark; sid=abc123; _ga=1")],
                None,
                &[("session-cookie", "cookie:sid")],
            ),
            (&[("Cookie", "theme=dark")], None, &[]),
            (
                &[],
                Some("page=2&api_key=k-1"),
                &[("api-key", "query:api_key")],
            ),
            (
                &[],
                Some(&format!("next={JWT}")),
                &[("bearer-jwt", "query:next")],
            ),
            (&[], Some("keyword=x&monkey=1&key="), &[]),
            (
                &[("Authorization", "Digest username=\"u\", response=\"r\"")],
                None,
                &[("digest", "header:authorization")],
            ),
        ];
        for (headers, query, expected) in cases {
            let mut call = call_with(headers, *query);
            let auth = c.classify_and_redact(&mut call);
            let expected: Vec<(&str, String)> =
                expected.iter().map(|(s, l)| (*s, l.to_string())).collect();
            assert_eq!(schemes(&auth), expected, "{headers:?} {query:?}");
            assert_eq!(auth.authenticated(), !expected.is_empty());
            let text = format!("{:?} {:?}", call.request_headers, call.query);
            for secret in [
                "dXNlcjpwYXNz",
                "s3cr3t-opaque",
                "k-123",
                "abc123",
                "k-1&",
                JWT,
            ] {
                assert!(!text.contains(secret), "{secret} left in {text}");
            }
        }
    }

    #[test]
    fn jwts_are_decoded_and_fingerprints_recognise_the_same_token() {
        let mut c = classifier();
        let mut one = call_with(&[("Authorization", &format!("Bearer {JWT}"))], None);
        let mut two = call_with(&[], Some(&format!("access_token={JWT}")));
        let a = c.classify_and_redact(&mut one);
        let b = c.classify_and_redact(&mut two);
        assert_eq!(a.primary().unwrap().jwt.as_ref().unwrap().alg, "none");
        assert_eq!(
            a.primary().unwrap().fingerprint,
            b.primary().unwrap().fingerprint
        );
        assert_eq!(
            b.primary().unwrap().location,
            Location::Query("access_token".into())
        );
        assert_eq!(two.query.as_deref(), Some("access_token=REDACTED"));
        let mut path = call_with(&[], None);
        path.path = format!("/reset/{JWT}");
        let p = c.classify_and_redact(&mut path);
        assert_eq!(schemes(&p), [("bearer-jwt", "path".to_string())]);
    }
}
