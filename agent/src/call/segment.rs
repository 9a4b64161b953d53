//! What one path segment looks like: a literal word (`users`, `v1`), or a value that is a
//! parameter whatever else is seen at its position (numbers, UUIDs, hex ids and hashes, dates,
//! e-mail addresses, base64-like tokens).

/// The kind of a path segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SegmentKind {
    Literal,
    Integer,
    Uuid,
    /// Hex ids and digests (Mongo ObjectId, SHA-1, MD5, ...).
    Hex,
    Date,
    Email,
    /// Long base64/base64url-like values (API keys, opaque ids, JWTs).
    Token,
}

impl SegmentKind {
    /// The parameter name a template uses for this kind.
    pub fn param_name(self) -> &'static str {
        match self {
            Self::Integer | Self::Uuid | Self::Hex => "id",
            Self::Date => "date",
            Self::Email => "email",
            Self::Token => "token",
            Self::Literal => "param",
        }
    }
}

/// A long value with digits and letters is a token whatever its case (session ids, lower-case
/// keys); a shorter one needs digits and both cases.
const MIN_TOKEN_LEN: usize = 20;
const MIN_MIXED_CASE_TOKEN_LEN: usize = 12;

/// Classifies one (raw, undecoded) path segment.
pub fn classify(segment: &str) -> SegmentKind {
    let bytes = segment.as_bytes();
    if bytes.is_empty() {
        return SegmentKind::Literal;
    }
    if bytes.iter().all(u8::is_ascii_digit) {
        return SegmentKind::Integer;
    }
    if is_uuid(bytes) {
        return SegmentKind::Uuid;
    }
    if is_hex_id(bytes) {
        return SegmentKind::Hex;
    }
    if is_date(bytes) {
        return SegmentKind::Date;
    }
    if is_email(segment) {
        return SegmentKind::Email;
    }
    if is_token(bytes) {
        return SegmentKind::Token;
    }
    SegmentKind::Literal
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// All hex, with digits and letters mixed (so `deadbeef` and `cafe` stay words), at least 8
/// long; or at least 16 long whatever the mix.
fn is_hex_id(b: &[u8]) -> bool {
    if b.len() < 8 || !b.iter().all(u8::is_ascii_hexdigit) {
        return false;
    }
    let digits = b.iter().any(u8::is_ascii_digit);
    let letters = b.iter().any(u8::is_ascii_alphabetic);
    b.len() >= 16 || (digits && letters)
}

/// `YYYY-MM-DD`.
fn is_date(b: &[u8]) -> bool {
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
        && (b"01"[..] <= b[5..7] && b[5..7] <= b"12"[..])
        && (b"01"[..] <= b[8..10] && b[8..10] <= b"31"[..])
}

fn is_email(segment: &str) -> bool {
    let decoded = segment.replace("%40", "@");
    match decoded.split_once('@') {
        Some((user, domain)) => {
            !user.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        }
        None => false,
    }
}

/// From the base64/base64url alphabet (JWT dots allowed) and mixing digits with letters, as
/// random values do and words don't: long, or shorter with both cases. A secret in a path
/// must never become a learnt literal route.
fn is_token(b: &[u8]) -> bool {
    let alphabet = b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'+' | b'=' | b'.' | b'~'));
    let digit = b.iter().any(u8::is_ascii_digit);
    let upper = b.iter().any(u8::is_ascii_uppercase);
    let lower = b.iter().any(u8::is_ascii_lowercase);
    alphabet
        && digit
        && (upper || lower)
        && (b.len() >= MIN_TOKEN_LEN || (b.len() >= MIN_MIXED_CASE_TOKEN_LEN && upper && lower))
}

#[cfg(test)]
mod tests {
    use super::*;
    use SegmentKind::*;

    #[test]
    fn values_are_recognised() {
        for (segment, kind) in [
            ("42", Integer),
            ("0", Integer),
            ("3f2504e0-4f89-11d3-9a0c-0305e82c3301", Uuid),
            ("507f1f77bcf86cd799439011", Hex),
            ("da39a3ee5e6b4b0d3255bfef95601890afd80709", Hex),
            ("a1b2c3d4", Hex),
            ("2026-11-28", Date),
            ("alice@example.com", Email),
            ("alice%40example.com", Email),
            ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", Token),
            ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", Token),
            ("k3j9q2m8x7v4z1p6w5r0t8y", Token),
            ("aB3dE5gH7jK9", Token),
        ] {
            assert_eq!(classify(segment), kind, "{segment}");
        }
    }

    #[test]
    fn words_stay_literal() {
        for segment in [
            "users",
            "v1",
            "v2beta1",
            "api",
            "deadbeef",
            "cafe",
            "my-first-post",
            "index.html",
            "2026-13-01",
            "@me",
            "README",
            "getUserProfileSettings",
            "password-reset-confirmation",
            "oauth2",
            "",
        ] {
            assert_eq!(classify(segment), Literal, "{segment}");
        }
    }
}
