//! Removes secret values from what the agent writes out. Query parameters whose names say they
//! carry credentials, or whose values are JWTs, keep their name and lose their value; path
//! segments that look like tokens (long random values, JWTs) are replaced.

use super::jwt;
use crate::call::segment::{self, SegmentKind};

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

/// Free text a peer wrote (a gRPC status message): the words that may be credentials are
/// replaced, the rest stays readable. Such words: JWTs and token-like values (as in paths), the
/// word after `Bearer` or `Basic`, and the value of `name=value` or `name: value` when the name
/// says credential (`password`, `api_key`, `token`, ...; not `code`, which in prose is an error
/// code).
pub fn text(text: &str) -> std::borrow::Cow<'_, str> {
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    // The previous word announced a credential (`Bearer`, `password:`).
    let mut announced = false;
    for piece in text.split_inclusive(char::is_whitespace) {
        let word = piece.trim_end_matches(char::is_whitespace);
        let spacing = &piece[word.len()..];
        let core = word.trim_matches(|c: char| "\"'`()[]{}<>,;".contains(c));
        let start = word.len()
            - word
                .trim_start_matches(|c: char| "\"'`()[]{}<>,;".contains(c))
                .len();
        let (before, after) = (&word[..start], &word[start + core.len()..]);
        let pair = core
            .find(['=', ':'])
            .map(|at| (&core[..at], &core[at..=at], &core[at + 1..]))
            .filter(|(name, ..)| is_secret_in_prose(name));
        let scheme = core.eq_ignore_ascii_case("bearer") || core.eq_ignore_ascii_case("basic");
        let replaced = if core.is_empty() {
            None
        } else if announced && scheme {
            // `authorization: Bearer x`: the credential is the word after the scheme.
            None
        } else if announced {
            announced = false;
            Some(REDACTED.to_string())
        } else if let Some((name, separator, value)) = pair {
            // `password=x`, `api_key: x` (the value may be the next word).
            announced = value.is_empty();
            (!value.is_empty()).then(|| format!("{name}{separator}{REDACTED}"))
        } else if jwt::looks_like_jwt(core) || segment::classify(core) == SegmentKind::Token {
            Some(REDACTED.to_string())
        } else {
            announced = scheme;
            None
        };
        match replaced {
            Some(core) => {
                changed = true;
                out.push_str(before);
                out.push_str(&core);
                out.push_str(after);
            }
            None => out.push_str(word),
        }
        out.push_str(spacing);
    }
    if changed {
        std::borrow::Cow::Owned(out)
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// [`is_secret_name`] for a name written in prose, where `code` is an error code.
fn is_secret_in_prose(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower != "code" && is_secret_lower(&lower)
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

    #[test]
    fn credentials_in_prose_are_replaced_and_the_rest_kept() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2ln";
        let cases = [
            (
                format!("invalid token {jwt} for user 42"),
                "invalid token REDACTED for user 42".to_string(),
            ),
            (
                "auth failed: Bearer abc123def".into(),
                "auth failed: Bearer REDACTED".into(),
            ),
            (
                "sent \"authorization: Bearer abc123def\"".into(),
                "sent \"authorization: Bearer REDACTED\"".into(),
            ),
            (
                "bad request (password=hunter2), retry".into(),
                "bad request (password=REDACTED), retry".into(),
            ),
            ("api_key: sk_live_51Habc".into(), "api_key: REDACTED".into()),
            (
                "missing (api_key=K9dLq2Zx7Wp)".into(),
                "missing (api_key=REDACTED)".into(),
            ),
            (
                "wrong \"secret\": 'opensesame'".into(),
                "wrong \"secret\": 'REDACTED'".into(),
            ),
            (
                "session Zx8fK2pQ9mW4tR7vB1nY6cL3 expired".into(),
                "session REDACTED expired".into(),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(text(&input), expected, "{input}");
        }
        for kept in [
            "user not found",
            "error code: 5",
            "deadline exceeded after 30s",
            "",
        ] {
            assert!(
                matches!(text(kept), std::borrow::Cow::Borrowed(_)),
                "{kept}"
            );
        }
    }

    /// Any text, multi-byte characters and separators included: no panic, and text without a
    /// credential-like word comes back as it was.
    #[test]
    fn random_prose_never_breaks() {
        let alphabet: Vec<char> = "ab Z9=:\"'()[],;.-_é✓\t\nBearer".chars().collect();
        let mut next = crate::test_support::xorshift(0x5eed);
        for _ in 0..5_000 {
            let len = (next() % 60) as usize;
            let input: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let out = text(&input);
            if !out.contains(REDACTED) {
                assert_eq!(out, input);
            }
        }
    }
}
