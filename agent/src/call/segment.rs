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

/// The shortest segment taken for a token.
const MIN_TOKEN_LEN: usize = 12;

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

/// From the base64/base64url alphabet (JWT dots allowed), with digits and letters, and random
/// in at least one of its pieces (see [`looks_random`]). A secret in a path must never become a
/// learnt literal route, and a slug (`summer-sale-2024-edition`) must not be taken for a
/// secret: length alone cannot tell them apart, the pattern of character classes can.
fn is_token(b: &[u8]) -> bool {
    let alphabet = b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'+' | b'=' | b'.' | b'~'));
    alphabet
        && b.len() >= MIN_TOKEN_LEN
        && b.iter().any(u8::is_ascii_digit)
        && b.iter().any(u8::is_ascii_alphabetic)
        && b.split(|c| !c.is_ascii_alphanumeric()).any(looks_random)
}

/// Whether one piece between separators reads as random rather than as words and numbers.
/// Words and numbers come in few, long runs (`bar274012208`: a word, a number;
/// `getUserV2Info`: words of three letters or more); random values switch between digits and
/// letters often, or come in short case runs (`WEfRq3CPzq`), or are long upper-case codes with
/// digits (`AKIA2OGYBAH6YQ3KXL5B`), or long letter runs with few vowels.
fn looks_random(piece: &[u8]) -> bool {
    const MIN_PIECE_LEN: usize = 8;
    if piece.len() < MIN_PIECE_LEN {
        return false;
    }
    let digit_letter_switches = piece
        .windows(2)
        .filter(|w| w[0].is_ascii_digit() != w[1].is_ascii_digit())
        .count();
    if digit_letter_switches >= 3 {
        return true;
    }
    let runs = word_runs(piece);
    // Runs of 2.5 characters or fewer on average, over four runs or more.
    if runs.len() >= 4 && piece.len() * 2 <= runs.len() * 5 {
        return true;
    }
    let has_digit = piece.iter().any(u8::is_ascii_digit);
    let upper_code = piece
        .iter()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if upper_code && has_digit && piece.len() >= 16 {
        return true;
    }
    runs.iter().any(|run| {
        let vowels = run.iter().filter(|c| b"aeiouyAEIOUY".contains(c)).count();
        run.len() >= 10 && run.iter().all(u8::is_ascii_alphabetic) && vowels * 5 < run.len()
    })
}

/// Splits a piece into runs as words are written: digits, a capitalised or lower-case word
/// (`User`, `get`), or capitals (`HTTP`).
fn word_runs(piece: &[u8]) -> Vec<&[u8]> {
    let mut runs = Vec::new();
    let mut start = 0;
    while start < piece.len() {
        let first = piece[start];
        let mut end = start + 1;
        if first.is_ascii_digit() {
            while end < piece.len() && piece[end].is_ascii_digit() {
                end += 1;
            }
        } else if first.is_ascii_lowercase() || piece.get(end).is_some_and(u8::is_ascii_lowercase) {
            while end < piece.len() && piece[end].is_ascii_lowercase() {
                end += 1;
            }
        } else {
            // Capitals, up to the one that starts a capitalised word.
            while end < piece.len()
                && piece[end].is_ascii_uppercase()
                && !piece.get(end + 1).is_some_and(u8::is_ascii_lowercase)
            {
                end += 1;
            }
        }
        runs.push(&piece[start..end]);
        start = end;
    }
    runs
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

    /// Real shapes both ways: secrets and random ids are tokens (redacted, templated as
    /// `{token}`), slugs, versions, file names and words with numbers are not.
    #[test]
    fn secrets_are_tokens_and_slugs_are_not() {
        for secret in [
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
            "ghp_1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuVwXyZ",
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            "AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI",
            "glpat-8fJq2KxZpL7mN3vR9wYt",
            "AKIA2OGYBAH6YQ3KXL5B",
            "AKIAIOSFODNN7EXAMPLE",
            "npm_AbCdEf1234567890GhIjKlMnOpQrStUvWx12",
            "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",
            "Qm9iOkV4YW1wbGUx",
            "dGhpcyBpcyBhIHNlY3JldA==",
            "sess_8f3kd92jfla0slk2",
            "a8Fk2LmQ9xZp",
            "kdjfhqwrtzvpmnb7x2",
        ] {
            assert_eq!(classify(secret), Token, "{secret}");
        }
        for slug in [
            "summer-sale-2024-edition",
            "missing-bar274012208",
            "release-notes-2023-11-28",
            "iphone-15-pro-max-256gb",
            "windows-11-x64-setup.exe",
            "user-profile-settings-v2",
            "my-first-blog-post-2019",
            "product-12345-blue-xl",
            "invoice_2024_000123",
            "node-v20.11.1-linux-x64.tar.xz",
            "ubuntu-22.04.3-live-server-amd64.iso",
            "libssl3_3.0.11-1_amd64.deb",
            "covid19-vaccine-update",
            "oauth2-callback-handler",
            "utf8mb4-unicode-ci",
            "getUserV2Info",
            "windows10pro",
            "x86_64-linux-gnu",
        ] {
            assert_eq!(classify(slug), Literal, "{slug}");
        }
    }
}
