//! JSON Web Tokens (RFC 7519) decoded without verification: the agent holds no keys, and the
//! tokens worth reporting (`alg: none`, expired, without `exp`) are exactly those a verifying
//! decoder refuses to read. Base64url and JSON come from the `base64` and `serde_json` crates;
//! what is kept is the header's algorithm and the registered claims, never the signature, and
//! `sub` only as a keyed fingerprint.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::Value;

use super::fingerprint::Fingerprinter;

pub use crate::call::auth::JwtSummary;

/// Longest claim string kept; a longer one is cut (claims are the token holder's input).
const MAX_CLAIM_LEN: usize = 256;
/// Most audiences and scopes kept.
const MAX_LIST: usize = 16;
/// Longest token decoded.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Whether `text` has the shape of a JWS compact token: three base64url parts, the first a
/// JSON object (`eyJ`), the signature possibly empty (`alg: none`).
pub fn looks_like_jwt(text: &str) -> bool {
    let mut parts = text.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    text.len() <= MAX_TOKEN_LEN
        && header.len() >= 10
        && header.starts_with("eyJ")
        && payload.len() >= 2
        && [header, payload, signature].iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Decodes a token's header and claims; `None` when it is not a JWT with a JSON header
/// carrying `alg` and a JSON object as claims.
pub fn decode(token: &str, fingerprints: &Fingerprinter) -> Option<JwtSummary> {
    if !looks_like_jwt(token) {
        return None;
    }
    let mut parts = token.split('.');
    let header = json_part(parts.next()?)?;
    let claims = json_part(parts.next()?)?;
    let alg = header.get("alg")?.as_str()?;
    let string = |v: &Value| v.as_str().map(bounded);
    let number = |name: &str| claims.get(name).and_then(numeric_date);
    let list = |v: Option<&Value>| -> Vec<String> {
        match v {
            Some(Value::String(s)) => s.split_whitespace().take(MAX_LIST).map(bounded).collect(),
            Some(Value::Array(items)) => items.iter().filter_map(string).take(MAX_LIST).collect(),
            _ => Vec::new(),
        }
    };
    let mut scopes = list(claims.get("scope"));
    if scopes.is_empty() {
        scopes = list(claims.get("scp"));
    }
    Some(JwtSummary {
        alg: bounded(alg),
        kid: header.get("kid").and_then(string),
        iss: claims.get("iss").and_then(string),
        aud: list(claims.get("aud")),
        exp: number("exp"),
        iat: number("iat"),
        nbf: number("nbf"),
        scopes,
        sub_fingerprint: claims
            .get("sub")
            .and_then(Value::as_str)
            .map(|sub| fingerprints.fingerprint(sub.as_bytes())),
    })
}

impl JwtSummary {
    /// `alg: none` (any case): the token is not signed.
    pub fn unsigned(&self) -> bool {
        self.alg.eq_ignore_ascii_case("none")
    }

    /// Expired at `now_unix_s`, allowing `leeway_s` of clock skew.
    pub fn expired_at(&self, now_unix_s: i64, leeway_s: i64) -> bool {
        self.exp
            .is_some_and(|exp| exp.saturating_add(leeway_s) < now_unix_s)
    }
}

fn json_part(part: &str) -> Option<serde_json::Map<String, Value>> {
    // Some encoders pad; RFC 7515 says they must not, but be lenient.
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A NumericDate (seconds, possibly fractional).
fn numeric_date(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
}

fn bounded(s: &str) -> String {
    let mut end = s.len().min(MAX_CLAIM_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7515 appendix A.1 (also RFC 7519 section 3.1): HS256.
    const RFC7515_A1: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    /// RFC 7519 section 6.1: an unsecured JWT.
    const RFC7519_UNSECURED: &str = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.";
    /// RFC 7515 appendix A.2: RS256 (its signature is long; the header and claims are A.1's).
    const RFC7515_A2_HEADER: &str = "eyJhbGciOiJSUzI1NiJ9";

    fn fp() -> Fingerprinter {
        Fingerprinter::with_key([7; 32])
    }

    #[test]
    fn decodes_the_rfc_examples() {
        let hs = decode(RFC7515_A1, &fp()).unwrap();
        assert_eq!(hs.alg, "HS256");
        assert_eq!(hs.iss.as_deref(), Some("joe"));
        assert_eq!(hs.exp, Some(1_300_819_380));
        assert!(!hs.unsigned());
        assert!(hs.expired_at(1_300_819_380 + 61, 60));
        assert!(!hs.expired_at(1_300_819_380 + 59, 60));

        let none = decode(RFC7519_UNSECURED, &fp()).unwrap();
        assert_eq!(none.alg, "none");
        assert!(none.unsigned());
        assert_eq!(none.exp, Some(1_300_819_380));

        let rs = format!(
            "{RFC7515_A2_HEADER}.{}",
            RFC7515_A1.split_once('.').unwrap().1
        );
        assert_eq!(decode(&rs, &fp()).unwrap().alg, "RS256");
    }

    #[test]
    fn claims_scopes_and_subject_fingerprint() {
        let enc = |v: &str| URL_SAFE_NO_PAD.encode(v);
        let token = format!(
            "{}.{}.c2ln",
            enc(r#"{"alg":"ES256","kid":"k1"}"#),
            enc(
                r#"{"sub":"alice","aud":["api","web"],"scope":"read write","iat":1.5e9,"exp":1800000000}"#
            )
        );
        let s = decode(&token, &fp()).unwrap();
        assert_eq!(s.kid.as_deref(), Some("k1"));
        assert_eq!(s.aud, ["api", "web"]);
        assert_eq!(s.scopes, ["read", "write"]);
        assert_eq!(s.iat, Some(1_500_000_000));
        assert_eq!(s.sub_fingerprint, Some(fp().fingerprint(b"alice")));
        let scp = format!(
            "{}.{}.",
            enc(r#"{"alg":"none"}"#),
            enc(r#"{"scp":["a"],"aud":"x"}"#)
        );
        let s = decode(&scp, &fp()).unwrap();
        assert_eq!(
            (s.scopes, s.aud, s.exp),
            (vec!["a".to_string()], vec!["x".to_string()], None)
        );
    }

    #[test]
    fn near_misses_are_not_jwts() {
        for text in [
            "eyJhbGciOiJub25lIn0",                    // one part
            "eyJhbGciOiJub25lIn0.e30.x.y",            // four parts (JWE has five)
            "abc.def.ghi",                            // not a JSON header
            "eyJhbGciOiJub25lIn0.e30.sig with space", // not base64url
            "eyJub3RhbGciOjF9.e30.",                  // header without alg
            "eyJhbGciOiJub25lIn0.WzFd.",              // claims not an object
            "www.example.com",
        ] {
            assert!(decode(text, &fp()).is_none(), "{text}");
        }
        assert!(looks_like_jwt(RFC7519_UNSECURED));
        assert!(!looks_like_jwt("1.2.3"));
    }
}
