//! Hidden endpoints behind a spec's path parameter. A spec that documents `GET /users/{name}`
//! matches `/users/debug` too, though `debug` may be another endpoint the spec does not
//! document (a debug dump, an export, an admin view). Matching alone cannot tell a value from a
//! hidden endpoint; the traffic can, once the parameter has seen a few other values:
//! - a word where every other value is an id (`/orders/export` beside `/orders/1`,
//!   `/orders/2`, `/orders/3`);
//! - an answer of another shape than the one the other values share (`/users/debug` answering
//!   `{"users": [...]}` where `/users/alice`, `/users/bob` and `/users/carol` answer
//!   `{"name": ...}`).
//!
//! Such a call is counted under its concrete route (`/users/debug`), classed
//! `suspected-shadow`, so its findings name it. Ordinary values stay values: names among names
//! answering alike, ids among ids. A value is judged once [`MIN_OTHERS`] other values are
//! known; calls before that count under the template.
//!
//! Bounded: [`MAX_VALUES`] values per parameter (later ones are judged against those, not
//! remembered), [`MAX_PARAMETERS`] parameters in all (past it, none is judged).

use std::collections::HashMap;

use super::{
    endpoint::EndpointKey,
    segment::{SegmentKind, classify},
};

/// Other values a parameter must have seen before one is judged.
pub const MIN_OTHERS: usize = 3;
/// Values remembered per parameter.
const MAX_VALUES: usize = 32;
/// Parameters (documented endpoint and position) remembered.
const MAX_PARAMETERS: usize = 10_000;
/// Object keys longer than this are cut (they are names of fields, not data).
const MAX_KEY_LEN: usize = 64;

/// Why a value was taken for a hidden endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    WordAmongIds,
    OtherResponseShape,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Self::WordAmongIds => "word-among-ids",
            Self::OtherResponseShape => "other-response-shape",
        }
    }
}

/// A hidden endpoint found behind a documented route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hidden {
    /// The documented route with the parameter replaced by the value (`/users/debug`).
    pub route: String,
    pub reason: Reason,
}

/// The outline of a JSON answer, from the start of its body (which the capture may have cut):
/// its type and, for an object, its first key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Shape {
    Object(Option<String>),
    Array,
    Other,
}

#[derive(Debug)]
struct Value {
    kind: SegmentKind,
    shape: Option<Shape>,
    /// Judged a hidden endpoint: not a value the others are compared with.
    hidden: bool,
}

/// One parameter's values, by value.
type Values = HashMap<String, Value>;

#[derive(Debug, Default)]
pub struct HiddenEndpoints {
    /// Documented endpoint -> its parameters (segment position, values).
    parameters: HashMap<EndpointKey, Vec<(usize, Values)>>,
    /// Parameters remembered, over every endpoint.
    count: usize,
}

impl HiddenEndpoints {
    /// Judges the call on a documented endpoint `key` (route with parameters) of `path`,
    /// answered with `status` and a body starting with `body`. `key.route` has the spec's base
    /// path, as `path` does.
    pub fn judge(
        &mut self,
        key: &EndpointKey,
        path: &str,
        status: Option<u16>,
        body: &[u8],
    ) -> Option<Hidden> {
        if key.route.split('/').count() != path.split('/').count() {
            return None;
        }
        let shape = status
            .filter(|s| (200..300).contains(s))
            .and_then(|_| shape(body));
        let mut found = None;
        let pairs = key.route.split('/').zip(path.split('/'));
        for (position, (part, value)) in pairs.enumerate() {
            if !(part.starts_with('{') && part.ends_with('}')) || value.is_empty() {
                continue;
            }
            if let Some(reason) = self.judge_value(key, position, value, shape.as_ref())
                && found.is_none()
            {
                found = Some(Hidden {
                    route: with_segment(&key.route, position, value),
                    reason,
                });
            }
        }
        found
    }

    fn judge_value(
        &mut self,
        key: &EndpointKey,
        position: usize,
        value: &str,
        shape: Option<&Shape>,
    ) -> Option<Reason> {
        let full = self.count >= MAX_PARAMETERS;
        // Looked up by reference: the key is copied once per documented endpoint, not per call.
        if !self.parameters.contains_key(key) {
            if full {
                return None;
            }
            self.parameters.insert(key.clone(), Vec::new());
        }
        let parameters = self.parameters.get_mut(key)?;
        let index = match parameters.iter().position(|(p, _)| *p == position) {
            Some(index) => index,
            None if full => return None,
            None => {
                parameters.push((position, Values::new()));
                self.count += 1;
                parameters.len() - 1
            }
        };
        let values = &mut parameters[index].1;
        let kind = classify(value);
        let verdict = judge_against(values, value, kind, shape);
        let room = values.len() < MAX_VALUES;
        match values.get_mut(value) {
            Some(known) => {
                if known.shape.is_none() {
                    known.shape = shape.cloned();
                }
                known.hidden |= verdict.is_some();
            }
            None if room => {
                values.insert(
                    value.to_string(),
                    Value {
                        kind,
                        shape: shape.cloned(),
                        hidden: verdict.is_some(),
                    },
                );
            }
            None => {}
        }
        verdict
    }
}

/// `route` with its segment at `position` replaced by `value`.
fn with_segment(route: &str, position: usize, value: &str) -> String {
    let segments: Vec<&str> = route
        .split('/')
        .enumerate()
        .map(|(i, part)| if i == position { value } else { part })
        .collect();
    segments.join("/")
}

/// The verdict on `value` given the parameter's other values.
fn judge_against(
    values: &HashMap<String, Value>,
    value: &str,
    kind: SegmentKind,
    shape: Option<&Shape>,
) -> Option<Reason> {
    let others: Vec<&Value> = values
        .iter()
        .filter(|(v, known)| v.as_str() != value && !known.hidden)
        .map(|(_, v)| v)
        .collect();
    // Only words are endpoints: a value that looks like an id or a token (a secret in the
    // path) never becomes a route, which is stored and written out as it is.
    if others.len() < MIN_OTHERS || kind != SegmentKind::Literal {
        return None;
    }
    if others.iter().all(|v| v.kind != SegmentKind::Literal) {
        return Some(Reason::WordAmongIds);
    }
    let shape = shape?;
    // The shape the other values' answers share, when they all share one.
    let mut shared: Option<&Shape> = None;
    let mut answered = 0;
    for other in others.iter().filter_map(|v| v.shape.as_ref()) {
        answered += 1;
        match shared {
            None => shared = Some(other),
            Some(s) if s == other => {}
            Some(_) => return None,
        }
    }
    (answered >= MIN_OTHERS && shared != Some(shape)).then_some(Reason::OtherResponseShape)
}

/// The outline of a JSON body from its first bytes; `None` when it is not JSON-looking.
fn shape(body: &[u8]) -> Option<Shape> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = &body[start..];
    match rest[0] {
        b'{' => Some(Shape::Object(first_key(&rest[1..]))),
        b'[' => Some(Shape::Array),
        b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => Some(Shape::Other),
        _ => None,
    }
}

/// The first key of an object whose `{` came just before `rest` (unescaped as written: keys
/// are compared, not read).
fn first_key(rest: &[u8]) -> Option<String> {
    let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = rest[start..].strip_prefix(b"\"")?;
    let mut end = 0;
    while end < rest.len() && rest[end] != b'"' {
        end += if rest[end] == b'\\' { 2 } else { 1 };
    }
    let key = rest.get(..end.min(rest.len()).min(MAX_KEY_LEN))?;
    Some(String::from_utf8_lossy(key).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(route: &str) -> EndpointKey {
        EndpointKey::served_get("shop", route)
    }

    const USER: &[u8] = br#"{"name": "alice", "email": "a@example.com"}"#;
    const DUMP: &[u8] = br#"{"users": [{"name": "alice", "password": "p"}]}"#;

    /// Each (path, body) in turn; the routes of the hidden endpoints found.
    fn judge(route: &str, calls: &[(&str, &[u8])]) -> Vec<Option<(String, Reason)>> {
        let mut hidden = HiddenEndpoints::default();
        calls
            .iter()
            .map(|(path, body)| {
                hidden
                    .judge(&key(route), path, Some(200), body)
                    .map(|h| (h.route, h.reason))
            })
            .collect()
    }

    #[test]
    fn a_debug_dump_among_users_is_a_hidden_endpoint() {
        let found = judge(
            "/api/users/{name}",
            &[
                ("/api/users/alice", USER),
                ("/api/users/bob", USER),
                ("/api/users/carol", USER),
                ("/api/users/debug", DUMP),
                ("/api/users/dave", USER),
            ],
        );
        assert_eq!(
            found,
            [
                None,
                None,
                None,
                Some(("/api/users/debug".to_string(), Reason::OtherResponseShape)),
                None,
            ]
        );
        // Found hidden, it is not part of what the next ones are compared with.
        let found = judge(
            "/u/{name}",
            &[
                ("/u/a", USER),
                ("/u/b", USER),
                ("/u/c", USER),
                ("/u/debug", DUMP),
                ("/u/export", b"[1]"),
            ],
        );
        assert_eq!(
            found[3..],
            [
                Some(("/u/debug".to_string(), Reason::OtherResponseShape)),
                Some(("/u/export".to_string(), Reason::OtherResponseShape)),
            ]
        );
    }

    #[test]
    fn names_answering_alike_stay_values() {
        let names = ["alice", "bob", "admin", "debug", "carol", "dave"];
        let calls: Vec<(String, &[u8])> = names
            .iter()
            .map(|n| (format!("/users/{n}"), USER))
            .collect();
        let calls: Vec<(&str, &[u8])> = calls.iter().map(|(p, b)| (p.as_str(), *b)).collect();
        assert!(judge("/users/{name}", &calls).iter().all(Option::is_none));
        // Answers that do not agree among themselves say nothing of a new one.
        let mixed: &[(&str, &[u8])] = &[
            ("/users/a", br#"{"name": 1}"#),
            ("/users/b", br#"[1]"#),
            ("/users/c", br#"{"id": 1}"#),
            ("/users/d", DUMP),
        ];
        assert!(judge("/users/{name}", mixed).iter().all(Option::is_none));
        // An error, or a body that is not JSON, is not a shape.
        let mut hidden = HiddenEndpoints::default();
        for name in ["a", "b", "c"] {
            hidden.judge(&key("/u/{n}"), &format!("/u/{name}"), Some(200), USER);
        }
        assert_eq!(hidden.judge(&key("/u/{n}"), "/u/x", Some(404), DUMP), None);
        assert_eq!(
            hidden.judge(&key("/u/{n}"), "/u/y", Some(200), b"<html>"),
            None
        );
    }

    #[test]
    fn a_word_among_ids_is_a_hidden_endpoint_and_ids_are_not() {
        let found = judge(
            "/orders/{id}",
            &[
                ("/orders/1", b"{}"),
                ("/orders/2", b"{}"),
                ("/orders/export", b"{}"),
                ("/orders/3", b"{}"),
                ("/orders/export", b"{}"),
                ("/orders/4", b"{}"),
            ],
        );
        assert_eq!(
            found,
            [
                None,
                None,
                // Two other values only: not judged yet.
                None,
                None,
                Some(("/orders/export".to_string(), Reason::WordAmongIds)),
                None,
            ]
        );
    }

    /// A token in the path answering another shape stays a value: its route would be stored
    /// and written out with the secret in it.
    #[test]
    fn a_token_is_never_a_route() {
        let found = judge(
            "/reset/{code}",
            &[
                ("/reset/alice", USER),
                ("/reset/bob", USER),
                ("/reset/carol", USER),
                ("/reset/sk_live_4eC39HqLyjWDarjtT1zdp7dc", DUMP),
            ],
        );
        assert!(found.iter().all(Option::is_none), "{found:?}");
    }

    #[test]
    fn shapes_come_from_the_start_of_a_cut_body() {
        assert_eq!(
            shape(br#"  {"users": [{"name": "al"#),
            Some(Shape::Object(Some("users".into())))
        );
        assert_eq!(shape(b"{}"), Some(Shape::Object(None)));
        assert_eq!(
            shape(br#"{"a\"b": 1}"#),
            Some(Shape::Object(Some("a\\\"b".into())))
        );
        assert_eq!(shape(b"[1, 2"), Some(Shape::Array));
        assert_eq!(shape(b"<html>"), None);
        assert_eq!(shape(b""), None);
    }
}
