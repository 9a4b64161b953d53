//! Object-level authorization from traffic (BOLA, OWASP API1), beyond enumeration:
//! - `object-id-never-given`: a credential read an object (its id in a route parameter,
//!   answered 2xx) that the API never returned to that credential, and that it did return to
//!   other credentials (its owners). Owning an id means having been given it: in any JSON
//!   response to that credential from the same API (a list, a create, a lookup);
//! - `object-read-by-many-credentials`: one id read with success by at least the threshold of
//!   distinct credentials that were never given it, within the window (an id shared out of
//!   band, or guessed by several accounts).
//!
//! A client that reads the ids it listed first stays quiet, and so does a read the API refused
//! (403, 404): the API did its job. An object's own id in the answer to reading it teaches
//! nothing (it was in the request).
//!
//! Ids are the values of JSON keys named `id`, `uuid`, or ending in `_id`, `Id`, `ID`, `_uuid`
//! (strings up to 128 bytes, integers), found by a scan of the response body bytes, not a
//! parse. Ids are kept per collection, so order 1 is not item 1: a route parameter's
//! collection is the literal segment before it (`/api/orders/{id}`: `order`), an answer's
//! `id` belongs to its route's last literal segment (`GET /api/orders`: `order`), and
//! `customer_id` or `customerId` to `customer` (lower case, a plural's `s` dropped). An id
//! nested under another name in an answer is filed under the route's collection: a miss,
//! never a false report, when the names differ. Only fingerprints are kept: 64-bit hashes of (API, id) and (API, credential, id),
//! with a per-process key. Bounded: past [`MAX_IDS`] ids or [`MAX_LEARNT`] given pairs the
//! memory starts over (counted), so it may miss, never invent. A credential some of whose
//! successful answers could not be read (compressed, cut at the capture limit) is never
//! reported by the first signal: what it was given is not known.

use std::hash::{BuildHasher, Hash, Hasher, RandomState};

// Keyed by SipHash outputs under a per-process key, which traffic cannot choose: a fast
// hasher is enough for the tables themselves.
use foldhash::{HashMap, HashSet};

use serde_json::json;

use super::{Context, Hit, evidence, settings::Threshold};
use crate::findings::model::Rule;

/// Ids whose owners and readers are kept.
const MAX_IDS: usize = 65_536;
/// (credential, id) pairs given.
const MAX_LEARNT: usize = 262_144;
/// Ids taken from one response body.
const MAX_IDS_PER_BODY: usize = 256;
/// Owners kept per id (more are counted as "more").
const MAX_OWNERS: usize = 4;
/// Readers kept per id, whatever the threshold.
const MAX_READERS: usize = 16;

#[derive(Debug, Default)]
struct IdState {
    /// Credentials the id was given to (hashes).
    owners: Vec<u64>,
    more_owners: bool,
    /// Credentials that read it without having been given it, since `window_start`.
    readers: Vec<u64>,
    window_start: u64,
    reported: bool,
}

#[derive(Debug, Default)]
pub struct ObjectAccess {
    ids: HashMap<u64, IdState>,
    learnt: HashSet<u64>,
    /// Credentials (per API) with an answer that could not be read.
    blind: HashSet<u64>,
    hasher: RandomState,
    /// Buffers reused from call to call: the ids read, the ids given.
    read: Vec<u64>,
    given: Vec<u64>,
    /// Times the memory started over because it was full.
    pub forgotten: u64,
}

impl ObjectAccess {
    fn forget_if_full(&mut self) {
        if self.ids.len() >= MAX_IDS || self.learnt.len() >= MAX_LEARNT {
            self.ids.clear();
            self.learnt.clear();
            self.blind.clear();
            self.forgotten += 1;
        }
    }
}

/// Both signals, then what the response teaches.
pub fn check(ctx: &Context<'_>, many: Threshold, state: &mut ObjectAccess, out: &mut Vec<Hit>) {
    let Some(credential) = ctx.auth.primary() else {
        return;
    };
    let key = &ctx.endpoint.key;
    let api = state
        .hasher
        .hash_one((&key.api, &key.namespace, key.direction));
    let who = state.hasher.hash_one((api, &*credential.fingerprint));
    if !ctx.succeeded() {
        return;
    }
    let mut read = std::mem::take(&mut state.read);
    read.clear();
    if key.route.contains('{') {
        for_each_id_in(&key.route, &ctx.call.path, |collection, id| {
            if id.len() <= 128 {
                let collection = Collection(collection.as_bytes());
                read.push(state.hasher.hash_one((api, collection, id)));
            }
        });
    }
    for &id in &read {
        judge(ctx, many, state, (who, id), out);
    }
    learn(ctx, state, (api, who), &read);
    state.read = read;
}

/// One id read with success by credential `who`.
fn judge(
    ctx: &Context<'_>,
    many: Threshold,
    state: &mut ObjectAccess,
    (who, id): (u64, u64),
    out: &mut Vec<Hit>,
) {
    if state.learnt.contains(&pair(who, id)) {
        return;
    }
    let blind = state.blind.contains(&who);
    let Some(entry) = state.ids.get_mut(&id) else {
        // Nobody was given it: only the many-readers signal can tell.
        state.forget_if_full();
        let mut entry = IdState::default();
        read_by(ctx, many, &mut entry, who, out);
        state.ids.insert(id, entry);
        return;
    };
    let others = entry.owners.iter().filter(|&&o| o != who).count();
    if others > 0 && !blind {
        let fingerprint = ctx.auth.primary().map(|c| c.fingerprint.to_string());
        out.push(ctx.hit(
            Rule::ObjectIdNeverGiven,
            Rule::ObjectIdNeverGiven.default_severity(),
            evidence([
                ("credential_fingerprint", json!(fingerprint)),
                ("other_credentials_given_it", json!(others)),
                ("more_owners", json!(entry.more_owners)),
            ]),
        ));
    }
    read_by(ctx, many, entry, who, out);
}

/// Counts `who` among the id's readers that were never given it.
fn read_by(ctx: &Context<'_>, many: Threshold, entry: &mut IdState, who: u64, out: &mut Vec<Hit>) {
    let now = ctx.call.start_unix_ns;
    if entry.readers.is_empty() || now.saturating_sub(entry.window_start) > many.window_ns {
        entry.readers.clear();
        entry.window_start = now;
        entry.reported = false;
    }
    if !entry.readers.contains(&who) && entry.readers.len() < MAX_READERS {
        entry.readers.push(who);
    }
    let needed = (many.count as usize).min(MAX_READERS);
    if entry.readers.len() >= needed && !entry.reported {
        entry.reported = true;
        out.push(ctx.hit(
            Rule::ObjectReadByManyCredentials,
            Rule::ObjectReadByManyCredentials.default_severity(),
            evidence([
                ("distinct_credentials", json!(entry.readers.len())),
                ("window_seconds", json!(many.window_ns / 1_000_000_000)),
            ]),
        ));
    }
}

/// The ids of a successful answer to `who` become given to it (those it asked for excepted).
fn learn(ctx: &Context<'_>, state: &mut ObjectAccess, (api, who): (u64, u64), asked: &[u64]) {
    let call = ctx.call;
    if super::exposure::compressed(call) || !call.response_size.body_complete {
        if call.response_size.body > 0 && state.blind.len() < MAX_IDS {
            state.blind.insert(who);
        }
        return;
    }
    let mut given = std::mem::take(&mut state.given);
    given.clear();
    let own = last_literal(&ctx.endpoint.key.route).as_bytes();
    scan_ids(&call.response_body_sample, |key, id| {
        let collection = match key {
            b"id" | b"uuid" => Collection(own),
            named => Collection(collection_of_key(named)),
        };
        given.push(state.hasher.hash_one((api, collection, id)));
    });
    for &id in &given {
        if asked.contains(&id) {
            continue;
        }
        state.forget_if_full();
        state.learnt.insert(pair(who, id));
        let entry = state.ids.entry(id).or_default();
        if entry.owners.contains(&who) {
            continue;
        }
        if entry.owners.len() < MAX_OWNERS {
            entry.owners.push(who);
        } else {
            entry.more_owners = true;
        }
    }
    state.given = given;
}

/// The key of "`id` was given to `who`": both are keyed hashes already, so a mix of the two
/// is as unpredictable (and a collision as unlikely) as hashing them again.
fn pair(who: u64, id: u64) -> u64 {
    (who ^ id.rotate_left(29)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Calls `f` with each route parameter's value and the literal segment before it.
fn for_each_id_in<'a, 'r>(route: &'r str, path: &'a str, mut f: impl FnMut(&'r str, &'a str)) {
    let mut literal = "";
    let mut parts = route.split('/').filter(|s| !s.is_empty());
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        let Some(part) = parts.next() else { return };
        if part.starts_with('{') && part.ends_with('}') {
            f(literal, segment);
        } else {
            literal = part;
        }
    }
}

/// The last literal segment of a route (`/api/orders/{id}/items` -> `items`).
fn last_literal(route: &str) -> &str {
    route
        .split('/')
        .rfind(|s| !s.is_empty() && !s.starts_with('{'))
        .unwrap_or_default()
}

/// `customer_id`, `customerId`, `customerID`, `customer_uuid` -> `customer`.
fn collection_of_key(key: &[u8]) -> &[u8] {
    [&b"_uuid"[..], b"_id", b"Id", b"ID"]
        .iter()
        .find_map(|suffix| key.strip_suffix(*suffix))
        .unwrap_or(key)
}

/// A collection's name as it is hashed: lower case, a plural's `s` dropped (`Orders`,
/// `order` -> `order`), the first 64 bytes; no allocation.
#[derive(Clone, Copy)]
struct Collection<'a>(&'a [u8]);

impl Hash for Collection<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let name = match self.0 {
            [rest @ .., b's' | b'S'] if !rest.is_empty() => rest,
            name => name,
        };
        let mut lower = [0u8; 64];
        let n = name.len().min(lower.len());
        for (out, byte) in lower.iter_mut().zip(&name[..n]) {
            *out = byte.to_ascii_lowercase();
        }
        state.write(&lower[..n]);
        state.write_u8(0xff);
    }
}

/// Calls `f` with the key and value of every id-named key of a JSON text (`"id": 42`,
/// `"order_id":"A-7"`), scanning bytes: no parse, no allocation.
pub fn scan_ids<'a>(body: &'a [u8], mut f: impl FnMut(&'a [u8], &'a str)) {
    let mut found = 0;
    let mut at = 0;
    while found < MAX_IDS_PER_BODY {
        let Some(colon) = memchr::memchr(b':', &body[at..]).map(|i| at + i) else {
            return;
        };
        at = colon + 1;
        // A key ends with a quote right before the colon (`"id":`).
        let Some(quote) = colon.checked_sub(1).filter(|&q| body[q] == b'"') else {
            continue;
        };
        let Some(open) = memchr::memrchr(b'"', &body[..quote]) else {
            continue;
        };
        let key = &body[open + 1..quote];
        if !id_key(key) {
            continue;
        }
        if let Some(value) = scalar(&body[at..]) {
            found += 1;
            f(key, value);
        }
    }
}

fn id_key(key: &[u8]) -> bool {
    key == b"id"
        || key == b"uuid"
        || key.ends_with(b"_id")
        || key.ends_with(b"Id")
        || key.ends_with(b"ID")
        || key.ends_with(b"_uuid")
}

/// The string (without escapes, up to 128 bytes) or integer at the start of `rest`.
fn scalar(rest: &[u8]) -> Option<&str> {
    let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = &rest[start..];
    let bytes = if let Some(inner) = rest.strip_prefix(b"\"") {
        let end = memchr::memchr(b'"', inner)?;
        let value = &inner[..end];
        (!value.is_empty() && value.len() <= 128 && !value.contains(&b'\\')).then_some(value)?
    } else {
        let end = rest
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(rest.len());
        (end > 0).then_some(&rest[..end])?
    };
    std::str::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::findings::{
        auth::{CallAuth, Credential, Location, Scheme},
        rules::tests::{call, hits},
    };

    const MANY: Threshold = Threshold {
        count: 3,
        window_ns: 3_600_000_000_000,
    };

    fn auth(who: &str) -> CallAuth {
        CallAuth {
            credentials: vec![Credential {
                scheme: Scheme::BearerOpaque,
                location: Location::Header("authorization".into()),
                fingerprint: Arc::from(format!("fp-{who}")),
                jwt: None,
            }],
            ..CallAuth::default()
        }
    }

    /// `who` calls `path` (route `route`), answered `status` with `body`; the rules it raised.
    fn by(
        state: &mut ObjectAccess,
        who: &str,
        path: &str,
        route: &str,
        status: u16,
        body: &str,
    ) -> Vec<Rule> {
        let mut c = call("GET", path, route, "web", status);
        c.response_body_sample = body.as_bytes().to_vec();
        c.response_size.body = body.len() as u64;
        c.response_size.body_complete = true;
        hits(&c, &auth(who), |ctx, out| check(ctx, MANY, state, out))
            .into_iter()
            .map(|h| h.rule)
            .collect()
    }

    const ONE: &str = "/orders/{id}";

    #[test]
    fn ids_are_scanned_from_id_named_keys_only() {
        let mut ids = Vec::new();
        scan_ids(
            br#"{"orders":[{"id":101,"total":5},{"id": "A-7","owner_id":"u1"}],
                 "userId":7,"name":"id","valid":true,"uuid":"x\"y","ID":"","pid":3,
                 "note":"a:b","url":"http://x/y"}"#,
            |key, id| ids.push((collection_of_key(key), id)),
        );
        let expected: [(&[u8], &str); 4] = [
            (b"id", "101"),
            (b"id", "A-7"),
            (b"owner", "u1"),
            (b"user", "7"),
        ];
        assert_eq!(ids, expected);
        let mut read = Vec::new();
        for_each_id_in(
            "/api/orders/{id}/Items/{n}",
            "/api/orders/4/Items/9",
            |c, id| read.push((c, id)),
        );
        assert_eq!(read, [("orders", "4"), ("Items", "9")]);
        assert_eq!(last_literal("/api/orders/{id}"), "orders");
        // A collection hashes alike whatever its case and number.
        let hasher = RandomState::new();
        let same = |a: &str, b: &str| {
            hasher.hash_one(Collection(a.as_bytes())) == hasher.hash_one(Collection(b.as_bytes()))
        };
        assert!(same("Orders", "order") && same("s", "s") && !same("order", "item"));
    }

    /// `who` lists orders (`GET /orders`) and is answered `body`.
    fn lists(state: &mut ObjectAccess, who: &str, body: &str) -> Vec<Rule> {
        by(state, who, "/orders", "/orders", 200, body)
    }

    /// `who` reads order `id`, answered `status` and `body`.
    fn reads(state: &mut ObjectAccess, who: &str, id: &str, status: u16, body: &str) -> Vec<Rule> {
        by(state, who, &format!("/orders/{id}"), ONE, status, body)
    }

    #[test]
    fn a_client_reading_what_it_was_given_stays_quiet_and_another_owners_id_is_reported() {
        let mut s = ObjectAccess::default();
        let list = |ids: &[u32]| {
            let items: Vec<String> = ids.iter().map(|i| format!("{{\"id\":{i}}}")).collect();
            format!("[{}]", items.join(","))
        };
        assert_eq!(lists(&mut s, "alice", &list(&[101, 102])), []);
        assert_eq!(lists(&mut s, "bob", &list(&[201])), []);
        // Near misses: her own ids; a read the API refused; an id nobody was given.
        assert_eq!(reads(&mut s, "alice", "101", 200, r#"{"id":101}"#), []);
        assert_eq!(reads(&mut s, "bob", "102", 403, "{}"), []);
        assert_eq!(reads(&mut s, "alice", "999", 200, r#"{"id":999}"#), []);
        // Bob reads Alice's order; reading it taught him nothing: the next read is reported
        // again.
        for _ in 0..2 {
            let found = reads(&mut s, "bob", "101", 200, r#"{"id":101}"#);
            assert_eq!(found, [Rule::ObjectIdNeverGiven]);
        }
        // An id shared with everyone (each listed it) is nobody's secret.
        assert_eq!(lists(&mut s, "carol", &list(&[101])), []);
        assert_eq!(reads(&mut s, "carol", "101", 200, "{}"), []);
    }

    #[test]
    fn an_id_of_another_collection_is_not_the_same_object() {
        let mut s = ObjectAccess::default();
        assert_eq!(lists(&mut s, "alice", r#"{"id":7}"#), []);
        assert_eq!(by(&mut s, "bob", "/items/7", "/items/{id}", 200, "{}"), []);
        assert_eq!(
            reads(&mut s, "bob", "7", 200, "{}"),
            [Rule::ObjectIdNeverGiven]
        );
        // Named by its key: a customer id in an order belongs to customers.
        lists(&mut s, "alice", r#"{"customer_id":"c-1"}"#);
        let found = by(
            &mut s,
            "bob",
            "/customers/c-1",
            "/customers/{id}",
            200,
            "{}",
        );
        assert_eq!(found, [Rule::ObjectIdNeverGiven]);
    }

    #[test]
    fn one_id_read_by_many_credentials_never_given_it_is_reported_once() {
        let mut s = ObjectAccess::default();
        // Threshold 3: the third distinct credential (b twice counts once), then never again.
        let found: Vec<Vec<Rule>> = ["a", "b", "b", "c", "d"]
            .iter()
            .map(|who| reads(&mut s, who, "555", 200, "{}"))
            .collect();
        let many = vec![Rule::ObjectReadByManyCredentials];
        assert_eq!(found, [vec![], vec![], vec![], many, vec![]]);
    }

    #[test]
    fn a_credential_with_an_unreadable_answer_is_not_judged_by_what_it_was_given() {
        let mut s = ObjectAccess::default();
        lists(&mut s, "alice", r#"[{"id":101}]"#);
        let mut cut = call("GET", "/orders", "/orders", "web", 200);
        cut.response_size.body = 70_000;
        cut.response_size.body_complete = false;
        hits(&cut, &auth("bob"), |ctx, out| check(ctx, MANY, &mut s, out));
        assert_eq!(reads(&mut s, "bob", "101", 200, "{}"), []);
    }
}
