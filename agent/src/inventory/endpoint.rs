//! One endpoint of the inventory (an API, a direction, a method and a route template) and what
//! is known of it: when it was seen, how often, with which status classes, how fast, which
//! content types and authentication schemes, by which clients, over TLS or not. Every set is
//! bounded; nothing here ever holds a header value or a body.

use std::{borrow::Cow, collections::BTreeSet};

use serde::{Deserialize, Serialize};

use crate::call::ApiCall;

/// Distinct values kept per set (content types, schemes); past it, `…` is added once.
const MAX_SET: usize = 16;
/// Distinct clients kept per endpoint; past it they are only counted as more.
pub const MAX_CLIENTS: usize = 64;
/// Calls whose JSON bodies all go into the schemas; past them, one in [`SCHEMA_SAMPLE_EVERY`].
const SCHEMA_EVERY_CALL_UNTIL: u64 = 100;
const SCHEMA_SAMPLE_EVERY: u64 = 64;
/// Latency histogram: bucket `i` holds durations below 2^(i+10) ns (1 µs .. ~35 min).
pub const LATENCY_BUCKETS: usize = 32;

pub use crate::call::endpoint::{Direction, EndpointKey};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointStats {
    pub first_seen_unix_nano: u64,
    pub last_seen_unix_nano: u64,
    pub calls: u64,
    /// Calls by status class: 1xx, 2xx, 3xx, 4xx, 5xx, and no response.
    pub status_classes: [u64; 6],
    pub duration_sum_ns: u64,
    pub duration_max_ns: u64,
    pub duration_histogram: [u64; LATENCY_BUCKETS],
    pub request_content_types: BTreeSet<String>,
    pub response_content_types: BTreeSet<String>,
    /// `bearer`, `basic`, `api-key-header`, `api-key-query`, `cookie`, `none`, ...
    pub auth_schemes: BTreeSet<String>,
    /// The other ends: their service names, else addresses.
    pub clients: BTreeSet<String>,
    /// Clients past [`MAX_CLIENTS`] were seen.
    pub more_clients: bool,
    pub tls_calls: u64,
    /// Against the specs, as of the last call.
    pub class: Option<super::classify::Class>,
    /// Status codes answered.
    pub status_codes: BTreeSet<u16>,
    /// Names of the query parameters sent (never their values).
    pub query_params: BTreeSet<String>,
    /// JSON Schemas of the JSON bodies seen (types and names only).
    pub request_schema: Option<serde_json::Value>,
    pub response_schema: Option<serde_json::Value>,
    /// Exposure, successes without credentials, largest response (what risk is judged on).
    #[serde(default)]
    pub posture: super::posture::Posture,
    /// The class this run last announced the endpoint with (`None`: not announced yet in this
    /// run). Not stored: every run announces the endpoints it sees again, so a backend that
    /// assembles the inventory from announcements also learns of endpoints whose first
    /// announcement it no longer keeps.
    #[serde(skip)]
    pub announced: Option<super::classify::Class>,
}

impl EndpointStats {
    /// Adds one call; `client` names the calling end. Returns the field paths of the bodies
    /// read into the schemas (sampled calls, complete JSON bodies), for change tracking.
    pub fn record(&mut self, call: &ApiCall, client: &str) -> BodyFields {
        if self.calls == 0 || call.start_unix_ns < self.first_seen_unix_nano {
            self.first_seen_unix_nano = call.start_unix_ns;
        }
        self.last_seen_unix_nano = self.last_seen_unix_nano.max(call.start_unix_ns);
        self.calls += 1;
        let class = match call.status {
            Some(status @ 100..=599) => usize::from(status / 100) - 1,
            _ => 5,
        };
        self.status_classes[class] += 1;
        let duration = call.duration_ns();
        self.duration_sum_ns = self.duration_sum_ns.saturating_add(duration);
        self.duration_max_ns = self.duration_max_ns.max(duration);
        self.duration_histogram[latency_bucket(duration)] += 1;
        if let Some(kind) = content_type(&call.request_headers) {
            insert_bounded(&mut self.request_content_types, &kind);
        }
        if let Some(kind) = content_type(&call.response_headers) {
            insert_bounded(&mut self.response_content_types, &kind);
        }
        crate::call::auth::for_each_scheme(call.auth.as_ref(), |scheme| {
            insert_bounded(&mut self.auth_schemes, scheme)
        });
        if !self.clients.contains(client) {
            if self.clients.len() < MAX_CLIENTS {
                self.clients.insert(client.to_string());
            } else {
                self.more_clients = true;
            }
        }
        if call.tls.is_some() {
            self.tls_calls += 1;
        }
        if let Some(status) = call.status
            && (self.status_codes.len() < MAX_SET || self.status_codes.contains(&status))
        {
            self.status_codes.insert(status);
        }
        for name in query_names(call.query.as_deref()) {
            if self.query_params.len() < MAX_SET && !self.query_params.contains(name) {
                self.query_params.insert(name.to_string());
            }
        }
        // Bodies are parsed for the first calls, then for one call in 64 (enough to see the
        // shapes, without parsing every body of a busy endpoint).
        if self.calls <= SCHEMA_EVERY_CALL_UNTIL || self.calls.is_multiple_of(SCHEMA_SAMPLE_EVERY) {
            return self.record_schemas(call);
        }
        BodyFields::default()
    }

    /// Adds what another inventory (another node's, another run's) knows of the same
    /// endpoint: counts add up, sets join (bounded as ever), the class is the one seen last.
    pub fn merge(&mut self, other: &EndpointStats) {
        if other.calls == 0 {
            return;
        }
        if self.calls == 0 || other.first_seen_unix_nano < self.first_seen_unix_nano {
            self.first_seen_unix_nano = other.first_seen_unix_nano;
        }
        if other.last_seen_unix_nano >= self.last_seen_unix_nano {
            self.class = other.class.or(self.class);
        }
        self.last_seen_unix_nano = self.last_seen_unix_nano.max(other.last_seen_unix_nano);
        self.calls += other.calls;
        for (mine, theirs) in self.status_classes.iter_mut().zip(other.status_classes) {
            *mine += theirs;
        }
        self.duration_sum_ns = self.duration_sum_ns.saturating_add(other.duration_sum_ns);
        self.duration_max_ns = self.duration_max_ns.max(other.duration_max_ns);
        for (mine, theirs) in self
            .duration_histogram
            .iter_mut()
            .zip(other.duration_histogram)
        {
            *mine += theirs;
        }
        for (mine, theirs) in [
            (
                &mut self.request_content_types,
                &other.request_content_types,
            ),
            (
                &mut self.response_content_types,
                &other.response_content_types,
            ),
            (&mut self.auth_schemes, &other.auth_schemes),
            (&mut self.query_params, &other.query_params),
        ] {
            for value in theirs {
                insert_bounded(mine, value);
            }
        }
        for client in &other.clients {
            if self.clients.len() < MAX_CLIENTS || self.clients.contains(client) {
                self.clients.insert(client.clone());
            } else {
                self.more_clients = true;
            }
        }
        self.more_clients |= other.more_clients;
        self.tls_calls += other.tls_calls;
        self.posture.merge(&other.posture);
        for status in &other.status_codes {
            if self.status_codes.len() < MAX_SET || self.status_codes.contains(status) {
                self.status_codes.insert(*status);
            }
        }
        for (mine, theirs) in [
            (&mut self.request_schema, &other.request_schema),
            (&mut self.response_schema, &other.response_schema),
        ] {
            if let Some(theirs) = theirs {
                *mine = Some(match mine.take() {
                    Some(ours) => super::schema::merge(ours, theirs.clone()),
                    None => theirs.clone(),
                });
            }
        }
    }

    fn record_schemas(&mut self, call: &ApiCall) -> BodyFields {
        BodyFields {
            request: merge_schema(
                &mut self.request_schema,
                call.request_size.body_complete,
                &call.request_body_sample,
                &call.request_headers,
            ),
            response: merge_schema(
                &mut self.response_schema,
                call.response_size.body_complete,
                &call.response_body_sample,
                &call.response_headers,
            ),
        }
    }

    /// The duration below which `quantile` (0..1) of the calls were, from the histogram (an
    /// upper bound: the end of the bucket).
    pub fn duration_quantile_ns(&self, quantile: f64) -> Option<u64> {
        let total: u64 = self.duration_histogram.iter().sum();
        if total == 0 {
            return None;
        }
        let wanted = (quantile * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.duration_histogram.iter().enumerate() {
            seen += n;
            if seen >= wanted {
                return Some((1u64 << (i + 10)).min(self.duration_max_ns.max(1)));
            }
        }
        Some(self.duration_max_ns)
    }
}

/// Query parameter names that are names (tokens), not values.
fn query_names(query: Option<&str>) -> impl Iterator<Item = &str> {
    query
        .unwrap_or("")
        .split('&')
        .map(|pair| pair.split_once('=').map_or(pair, |(name, _)| name))
        .filter(|name| {
            !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.[]".contains(&b))
                && super::segment::classify(name) == super::segment::SegmentKind::Literal
        })
}

/// The field paths of one call's JSON bodies (`None`: that body was not read).
#[derive(Debug, Default)]
pub struct BodyFields {
    pub request: Option<BTreeSet<String>>,
    pub response: Option<BTreeSet<String>>,
}

/// Adds the schema of a complete JSON body to `schema`; returns the body's field paths.
fn merge_schema(
    schema: &mut Option<serde_json::Value>,
    complete: bool,
    body: &[u8],
    headers: &[crate::protocol::http1::Header],
) -> Option<BTreeSet<String>> {
    let is_json =
        content_type(headers).is_some_and(|t| t == "application/json" || t.ends_with("+json"));
    if !complete || !is_json || body.is_empty() {
        return None;
    }
    let new = super::schema::of_body(body)?;
    let fields = super::schema::field_paths(&new);
    *schema = Some(match schema.take() {
        Some(old) => super::schema::merge(old, new),
        None => new,
    });
    Some(fields)
}

fn latency_bucket(duration_ns: u64) -> usize {
    let bits = 64 - duration_ns.leading_zeros() as usize; // 2^(bits-1) <= d < 2^bits
    bits.saturating_sub(10).min(LATENCY_BUCKETS - 1)
}

/// Adds `value` (copied only when new), or `…` once the set is full.
fn insert_bounded(set: &mut BTreeSet<String>, value: &str) {
    if set.contains(value) {
        return;
    }
    let value = if set.len() < MAX_SET { value } else { "…" };
    set.insert(value.to_string());
}

/// The media type of a Content-Type header, without parameters, lower case (copied only
/// when it was not lower case already).
fn content_type(headers: &[crate::protocol::http1::Header]) -> Option<Cow<'_, str>> {
    let header = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-type"))?;
    let value = std::str::from_utf8(&header.value).ok()?;
    let media = value.split(';').next()?.trim();
    let valid = !media.is_empty()
        && media.len() <= 100
        && media
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/+-._".contains(&b));
    if !valid {
        return None;
    }
    Some(if media.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(media.to_ascii_lowercase())
    } else {
        Cow::Borrowed(media)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{call::tests::sample, protocol::http1::Header};

    #[test]
    fn records_calls_without_values() {
        let mut stats = EndpointStats::default();
        let mut call = sample();
        call.response_headers = vec![Header {
            name: "Content-Type".into(),
            value: b"application/json; charset=utf-8".to_vec(),
        }];
        let mut classifier = crate::credentials::auth::AuthClassifier::new(
            crate::findings::config::FindingsSection::default().credential_names(),
            crate::credentials::fingerprint::Fingerprinter::with_key([0; 32]),
        );
        call.auth = Some(classifier.classify_and_redact(&mut call));
        stats.record(&call, "web");
        call.status = Some(503);
        call.start_unix_ns -= 5;
        call.request_headers = vec![];
        call.query = None;
        call.auth = Some(classifier.classify_and_redact(&mut call));
        stats.record(&call, "web");
        call.status = None;
        stats.record(&call, "cart");
        assert_eq!(stats.calls, 3);
        assert_eq!(stats.status_classes, [0, 1, 0, 0, 1, 1]);
        assert_eq!(stats.first_seen_unix_nano, sample().start_unix_ns - 5);
        assert_eq!(stats.last_seen_unix_nano, sample().start_unix_ns);
        assert_eq!(
            stats.response_content_types.iter().collect::<Vec<_>>(),
            ["application/json"]
        );
        // The sample has a Bearer token and api_key in the query.
        assert_eq!(
            stats.auth_schemes.iter().collect::<Vec<_>>(),
            ["api-key-query:api_key", "bearer-opaque", "none"]
        );
        assert_eq!(stats.clients.iter().collect::<Vec<_>>(), ["cart", "web"]);
        let text = serde_json::to_string(&stats).unwrap();
        assert!(!text.contains("s3cr3t"), "{text}");
    }

    #[test]
    fn two_inventories_of_one_endpoint_merge_into_what_one_would_have_seen() {
        let mut call = sample();
        let (mut node_a, mut node_b, mut both) = Default::default();
        let (mut a, mut b): (&mut EndpointStats, &mut EndpointStats) = (&mut node_a, &mut node_b);
        for i in 0..6u64 {
            call.start_unix_ns = sample().start_unix_ns + i;
            call.end_unix_ns = call.start_unix_ns + 1_000 * (i + 1);
            call.status = Some(if i % 3 == 0 { 500 } else { 200 });
            let client = format!("client-{}", i % 2);
            a.record(&call, &client);
            EndpointStats::record(&mut both, &call, &client);
            std::mem::swap(&mut a, &mut b);
        }
        node_a.merge(&node_b);
        assert_eq!(node_a, both);
        let mut empty = EndpointStats::default();
        empty.merge(&EndpointStats::default());
        assert_eq!(empty, EndpointStats::default());
    }

    #[test]
    fn latency_quantiles_and_bounded_sets() {
        let mut stats = EndpointStats::default();
        let mut call = sample();
        for i in 0..100u64 {
            call.end_unix_ns = call.start_unix_ns + 1_000 * (i + 1); // 1..100 µs
            stats.record(&call, &format!("client-{i}"));
        }
        let p50 = stats.duration_quantile_ns(0.5).unwrap();
        assert!((50_000..=65_536).contains(&p50), "{p50}");
        assert_eq!(stats.duration_quantile_ns(1.0), Some(100_000));
        assert_eq!(stats.clients.len(), MAX_CLIENTS);
        assert!(stats.more_clients);
        for i in 0..40 {
            insert_bounded(&mut stats.request_content_types, &format!("type/{i}"));
        }
        assert_eq!(stats.request_content_types.len(), MAX_SET + 1);
    }
}
