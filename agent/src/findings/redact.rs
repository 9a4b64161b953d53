//! Removes secret values from what the agent writes out. Query parameters whose names say they
//! carry credentials, or whose values are JWTs, keep their name and lose their value; path
//! segments that look like tokens (long random values, JWTs) are replaced.

use super::jwt;
use crate::inventory::segment::{self, SegmentKind};

/// Replacement for a removed value.
pub const REDACTED: &str = "REDACTED";

/// Parameter names (lower case) that carry credentials.
const SECRET_NAMES: &[&str] = &[
    "access_token",
    "api-key",
    "api_key",
    "apikey",
    "auth",
    "authorization",
    "client_secret",
    "code",
    "id_token",
    "jwt",
    "key",
    "passwd",
    "password",
    "pwd",
    "refresh_token",
    "secret",
    "session",
    "sessionid",
    "sid",
    "sig",
    "signature",
    "token",
    "x-api-key",
];

/// Name fragments that mark a parameter as a credential whatever its prefix.
const SECRET_FRAGMENTS: &[&str] = &[
    "token",
    "secret",
    "password",
    "apikey",
    "api_key",
    "signature",
];

/// Whether a query parameter name carries a credential.
pub fn is_secret_name(name: &str) -> bool {
    is_secret_lower(&name.to_ascii_lowercase())
}

/// [`is_secret_name`] of a name already in lower case.
pub fn is_secret_lower(lower: &str) -> bool {
    SECRET_NAMES.contains(&lower) || SECRET_FRAGMENTS.iter().any(|f| lower.contains(f))
}

/// The query string with the values of credential parameters replaced.
pub fn query(query: &str) -> String {
    query_with(query, &[])
}

/// [`query`], also replacing the values of the parameters named in `more` (lower case).
pub fn query_with(query: &str, more: &[String]) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) if !value.is_empty() => {
                let name_text = decode_component(name);
                let secret = is_secret_name(&name_text)
                    || more.contains(&name_text.to_ascii_lowercase())
                    || jwt::looks_like_jwt(&decode_component(value));
                if secret {
                    format!("{name}={REDACTED}")
                } else {
                    pair.to_string()
                }
            }
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The path with segments that may be secrets (tokens, JWTs: what the inventory templates as
/// `{token}`) replaced; ids, numbers, dates and words stay.
pub fn path(path: &str) -> std::borrow::Cow<'_, str> {
    let secret = |segment: &str| segment::classify(segment) == SegmentKind::Token;
    if !path.split('/').any(secret) {
        return std::borrow::Cow::Borrowed(path);
    }
    std::borrow::Cow::Owned(
        path.split('/')
            .map(|s| if secret(s) { REDACTED } else { s })
            .collect::<Vec<_>>()
            .join("/"),
    )
}

/// Decodes %XX (and `+`) in a query component so `api%5Fkey` is recognised too.
pub fn decode_component(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = name.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credential_parameters_only() {
        assert_eq!(
            query("page=2&api_key=abc123&sort=asc"),
            "page=2&api_key=REDACTED&sort=asc"
        );
        assert_eq!(
            query("access_token=eyJhbGciOi&x=1"),
            "access_token=REDACTED&x=1"
        );
        assert_eq!(query("myToken=zzz"), "myToken=REDACTED");
        assert_eq!(query("api%5Fkey=s3cr3t"), "api%5Fkey=REDACTED");
        assert_eq!(query("keyword=rust&monkey=1"), "keyword=rust&monkey=1");
        assert_eq!(query("token="), "token=");
        assert_eq!(query("flag&password=hunter2"), "flag&password=REDACTED");
        assert_eq!(
            query("next=eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.&a=b"),
            "next=REDACTED&a=b"
        );
        assert_eq!(
            query_with("q=1&sig2=zz", &["sig2".to_string()]),
            "q=1&sig2=REDACTED"
        );
    }

    #[test]
    fn token_like_path_segments_are_removed() {
        assert_eq!(
            path("/users/42/orders/507f1f77bcf86cd799439011"),
            "/users/42/orders/507f1f77bcf86cd799439011"
        );
        assert_eq!(path("/reset/k3yF0rRes3tXyZ12"), "/reset/REDACTED");
        assert_eq!(
            path("/v/eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0./x"),
            "/v/REDACTED/x"
        );
        assert_eq!(path("/"), "/");
    }
}
