//! Sensitive data in response bodies: e-mail addresses, payment card numbers (Luhn-checked,
//! with a card network's prefix), US social security numbers, phone numbers, private keys,
//! cloud access keys and password fields of JSON objects. What comes out is the kind, how
//! many, and where (JSON paths with array indexes folded to `[*]`), never a value.
//!
//! JSON bodies are walked value by value; other text (and JSON cut by the capture limit) is
//! scanned as a whole and located as `body`.

use std::{collections::BTreeMap, sync::LazyLock};

use regex::{Regex, RegexSet};
use serde_json::Value;

use super::model::Severity;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DataKind {
    Email,
    PaymentCard,
    UsSsn,
    Phone,
    PrivateKey,
    CloudAccessKey,
    Password,
}

impl DataKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::PaymentCard => "payment_card",
            Self::UsSsn => "us_ssn",
            Self::Phone => "phone",
            Self::PrivateKey => "private_key",
            Self::CloudAccessKey => "cloud_access_key",
            Self::Password => "password",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Email,
            Self::PaymentCard,
            Self::UsSsn,
            Self::Phone,
            Self::PrivateKey,
            Self::CloudAccessKey,
            Self::Password,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }

    pub fn severity(self) -> Severity {
        match self {
            Self::Email | Self::Phone => Severity::Low,
            Self::UsSsn | Self::PaymentCard | Self::Password => Severity::High,
            Self::PrivateKey | Self::CloudAccessKey => Severity::Critical,
        }
    }
}

/// Per kind: how many values, and where (at most [`MAX_PATHS`] paths).
pub type Detections = BTreeMap<DataKind, (u64, Vec<String>)>;

const MAX_PATHS: usize = 8;
/// Deepest JSON nesting walked.
const MAX_DEPTH: usize = 32;

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?:^|[^A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}(?:$|[^A-Za-z0-9-])",
    )
});
/// 13 to 19 digits, alone or in groups split by single spaces or dashes.
static CARD: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?:^|[^0-9])((?:[0-9][ -]?){12,18}[0-9])(?:$|[^0-9])"));
static SSN: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?:^|[^0-9-])([0-9]{3})-([0-9]{2})-([0-9]{4})(?:$|[^0-9-])"));
/// E.164 (`+14155550123`, `+44 20 7946 0958`) or North American with separators
/// (`(415) 555-0123`, `415-555-0123`, `415.555.0123`).
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?:^|[^0-9+])(?:\+[1-9][0-9]{0,2}[ -]?(?:[0-9][ -]?){6,13}[0-9]|\([2-9][0-9]{2}\) ?[2-9][0-9]{2}-[0-9]{4}|[2-9][0-9]{2}[-.][2-9][0-9]{2}[-.][0-9]{4})(?:$|[^0-9])",
    )
});
static PRIVATE_KEY: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----")
});
/// AWS access key ids, Google API keys, GitHub tokens.
static CLOUD_KEY: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?:^|[^A-Za-z0-9])(?:(?:AKIA|ASIA)[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}|gh[pousr]_[0-9A-Za-z]{36})(?:$|[^A-Za-z0-9])",
    )
});

fn regex(pattern: &str) -> Regex {
    // The patterns are constants checked by the tests: a failure is a build defect.
    #[allow(clippy::expect_used)]
    Regex::new(pattern).expect("built-in pattern")
}

/// JSON keys whose string values are passwords or secrets (compared without `_`, `-`, case).
const PASSWORD_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "pass",
    "passphrase",
    "secret",
    "clientsecret",
    "apisecret",
    "passwordhash",
    "privatekey",
];

/// Any detector's pattern, to skip bodies with nothing to find in one pass.
static ANY: LazyLock<RegexSet> = LazyLock::new(|| {
    // The patterns are the constants above: a failure is a build defect.
    #[allow(clippy::expect_used)]
    RegexSet::new([
        EMAIL.as_str(),
        CARD.as_str(),
        SSN.as_str(),
        PHONE.as_str(),
        PRIVATE_KEY.as_str(),
        CLOUD_KEY.as_str(),
        // Keys the JSON walk checks as password fields.
        r"(?i)pass|pwd|secret|private_?key",
    ])
    .expect("built-in patterns")
});

/// Whether a body may hold something: a detector matches somewhere, or a password-like key
/// appears (checked precisely by the JSON walk). One pass, no copy of the body.
fn worth_scanning(body: &[u8]) -> bool {
    ANY.is_match(&String::from_utf8_lossy(body))
}

/// The sensitive data in a response body.
pub fn scan(body: &[u8]) -> Detections {
    let mut found = Detections::new();
    if body.is_empty() || !worth_scanning(body) {
        return found;
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => walk(&value, "$", 0, &mut found),
        Err(_) => scan_text(&String::from_utf8_lossy(body), "body", &mut found),
    }
    found
}

fn walk(value: &Value, path: &str, depth: usize, found: &mut Detections) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let child_path = format!("{path}.{}", path_key(key));
                if is_password_key(key) && matches!(child, Value::String(s) if !s.is_empty()) {
                    add(found, DataKind::Password, &child_path, 1);
                    continue;
                }
                walk(child, &child_path, depth + 1, found);
            }
        }
        Value::Array(items) => {
            let child_path = format!("{path}[*]");
            for item in items {
                walk(item, &child_path, depth + 1, found);
            }
        }
        Value::String(text) => scan_text(text, path, found),
        Value::Number(n) => {
            if let Some(n) = n.as_u64() {
                scan_text(&n.to_string(), path, found);
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

/// A key as shown in a path: itself when it is a plain name, else `*` (a key can be data).
fn path_key(key: &str) -> &str {
    let plain = !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !key.bytes().all(|b| b.is_ascii_digit());
    if plain { key } else { "*" }
}

fn is_password_key(key: &str) -> bool {
    let normalised: String = key
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    PASSWORD_KEYS.contains(&normalised.as_str())
}

fn scan_text(text: &str, path: &str, found: &mut Detections) {
    let count = |re: &Regex| re.find_iter(text).count() as u64;
    add(found, DataKind::Email, path, count(&EMAIL));
    add(found, DataKind::PrivateKey, path, count(&PRIVATE_KEY));
    add(found, DataKind::CloudAccessKey, path, count(&CLOUD_KEY));
    let cards = CARD
        .captures_iter(text)
        .filter(|c| is_card_number(&c[1]))
        .count() as u64;
    add(found, DataKind::PaymentCard, path, cards);
    let ssns = SSN
        .captures_iter(text)
        .filter(|c| valid_ssn(&c[1], &c[2], &c[3]))
        .count() as u64;
    add(found, DataKind::UsSsn, path, ssns);
    add(found, DataKind::Phone, path, count(&PHONE));
}

fn add(found: &mut Detections, kind: DataKind, path: &str, n: u64) {
    if n == 0 {
        return;
    }
    let (count, paths) = found.entry(kind).or_default();
    *count += n;
    if paths.len() < MAX_PATHS && !paths.iter().any(|p| p == path) {
        paths.push(path.to_string());
    }
}

/// A card number: 13-19 digits, a card network's prefix, the Luhn check, not one repeated
/// digit.
pub fn is_card_number(text: &str) -> bool {
    let digits: Vec<u8> = text
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    (13..=19).contains(&digits.len())
        && known_prefix(&digits)
        && luhn(&digits)
        && digits.iter().any(|d| *d != digits[0])
}

/// Visa, Mastercard, American Express, Discover, JCB, Diners Club, UnionPay prefixes.
fn known_prefix(d: &[u8]) -> bool {
    let n = |len: usize| {
        d[..len]
            .iter()
            .fold(0u32, |acc, x| acc * 10 + u32::from(*x))
    };
    let len = d.len();
    match d[0] {
        4 => matches!(len, 13 | 16 | 19),
        5 => (51..=55).contains(&n(2)) && len == 16,
        2 => (2221..=2720).contains(&n(4)) && len == 16,
        3 => {
            (matches!(n(2), 34 | 37) && len == 15)
                || ((3528..=3589).contains(&n(4)) && (16..=19).contains(&len))
                || (matches!(n(2), 36 | 38 | 39) || (300..=305).contains(&n(3))) && len >= 14
        }
        6 => n(4) == 6011 || n(2) == 65 || (644..=649).contains(&n(3)) || n(2) == 62,
        _ => false,
    }
}

/// The Luhn (mod 10) check.
pub fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(*d);
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The SSA's rules: no area 000, 666 or 9xx, no group 00, no serial 0000.
fn valid_ssn(area: &str, group: &str, serial: &str) -> bool {
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(body: &str) -> Vec<(&'static str, u64, Vec<String>)> {
        scan(body.as_bytes())
            .into_iter()
            .map(|(k, (n, paths))| (k.name(), n, paths))
            .collect()
    }

    fn only(text: &str) -> Vec<&'static str> {
        kinds(text).into_iter().map(|(k, _, _)| k).collect()
    }

    #[test]
    fn luhn_and_card_prefixes() {
        for card in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "5555-5555-5555-4444",
            "378282246310005",
            "6011111111111117",
            "3530111333300000",
            "2223003122003222",
        ] {
            assert!(is_card_number(card), "{card}");
        }
        for near in [
            "4111111111111112", // Luhn fails
            "0000000000000000", // Luhn passes, one digit
            "1234567812345670", // Luhn passes, no network
            "411111111111",     // too short
            "1700000000000",    // a millisecond timestamp
        ] {
            assert!(!is_card_number(near), "{near}");
        }
        assert!(luhn(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 3]));
    }

    #[test]
    fn json_bodies_give_kinds_counts_and_paths() {
        let body = r#"{"users":[{"email":"ann@example.com","card":"4111 1111 1111 1111","ssn":"123-45-6789"},
                       {"email":"bob@example.org","phone":"+14155550123","password":"hunter2"}],
                      "key":"-----BEGIN RSA PRIVATE KEY-----\nMIIB","aws":"AKIAIOSFODNN7EXAMPLE"}"#;
        assert_eq!(
            kinds(body),
            [
                ("email", 2, vec!["$.users[*].email".to_string()]),
                ("payment_card", 1, vec!["$.users[*].card".to_string()]),
                ("us_ssn", 1, vec!["$.users[*].ssn".to_string()]),
                ("phone", 1, vec!["$.users[*].phone".to_string()]),
                ("private_key", 1, vec!["$.key".to_string()]),
                ("cloud_access_key", 1, vec!["$.aws".to_string()]),
                ("password", 1, vec!["$.users[*].password".to_string()]),
            ]
        );
        // Text, and JSON cut by the capture limit, are scanned as a whole.
        assert_eq!(
            kinds("{\"a\":\"x@example.com\",\"b\":\"unfinished"),
            [("email", 1, vec!["body".to_string()])]
        );
    }

    #[test]
    fn near_misses_stay_quiet() {
        for text in [
            "user@localhost",
            "see @example.com",
            "000-12-3456 666-12-3456 900-12-3456 123-00-4567 123-45-0000",
            "123-45-67890",
            "2026-11-28 10.0.0.1 v1.2.3 1700000000",
            "-----BEGIN PUBLIC KEY----- -----BEGIN CERTIFICATE-----",
            "AKIAIOSFODNN7EXAMPL AKIAiosfodnn7example",
            "order 12345 costs 19.99",
            "call 555-0123",
        ] {
            assert_eq!(only(text), Vec::<&str>::new(), "{text}");
        }
        for body in [
            r#"{"password":""}"#,
            r#"{"passwordPolicy":{"minLength":12}}"#,
            r#"{"hasPassword":true,"password_length":12}"#,
        ] {
            assert_eq!(only(body), Vec::<&str>::new(), "{body}");
        }
        assert_eq!(only("(415) 555-0123"), ["phone"]);
        // A password field alone passes the one-pass prefilter.
        assert_eq!(only(r#"{"user":{"Password":"x"}}"#), ["password"]);
        assert_eq!(only("415.555.0123"), ["phone"]);
    }
}
