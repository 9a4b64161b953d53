//! What changed in each endpoint, and when: a new endpoint, one gone quiet (and back), a new
//! authentication scheme, status class or client, a field added to or removed from the
//! request or response bodies. Kept in the inventory database and exported as log records.
//!
//! Learning first: an endpoint's first [`BASELINE_CALLS`] calls set what it normally looks
//! like and report nothing but the endpoint itself; only what is new after them is a change.
//! Fields are judged from the bodies the inventory reads into its schemas (every body of the
//! first 100 calls, then one in 64). A field seen in some bodies and not others is optional:
//! it is reported once when it first appears, and never as removed. A field is removed when
//! it had been in every body (at least [`STEADY_BODIES`] of them) and then is missing from
//! [`REMOVED_AFTER`] bodies in a row. What a field was learnt from is memory only: after a
//! restart the fields of known endpoints are learnt again, silently.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;

use super::endpoint::{BodyFields, EndpointKey, EndpointStats, MAX_CLIENTS};
use crate::call::ApiCall;

/// Calls that set an endpoint's baseline.
pub const BASELINE_CALLS: u64 = 5;
/// Bodies a field must have been in, every one, before its absence can be a removal.
const STEADY_BODIES: u32 = 5;
/// Bodies in a row without a steady field that make it removed.
const REMOVED_AFTER: u32 = 5;
/// Fields followed per endpoint and side.
const MAX_FIELDS: usize = 128;
/// Endpoints whose fields are followed (as many as the inventory keeps).
const MAX_FOLLOWED: usize = 50_000;
/// Fields followed over all endpoints (about 100 bytes each): past it, new fields of any
/// endpoint are not followed (nor reported).
const MAX_FIELDS_IN_ALL: usize = 200_000;
/// Changes waiting for the next flush; past it they are dropped and counted.
pub const MAX_PENDING: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    NewEndpoint,
    GoneQuiet,
    Resumed,
    NewAuthScheme,
    NewStatusClass,
    NewClient,
    NewRequestField,
    RemovedRequestField,
    NewResponseField,
    RemovedResponseField,
}

impl ChangeKind {
    pub const ALL: [ChangeKind; 10] = [
        Self::NewEndpoint,
        Self::GoneQuiet,
        Self::Resumed,
        Self::NewAuthScheme,
        Self::NewStatusClass,
        Self::NewClient,
        Self::NewRequestField,
        Self::RemovedRequestField,
        Self::NewResponseField,
        Self::RemovedResponseField,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::NewEndpoint => "new-endpoint",
            Self::GoneQuiet => "gone-quiet",
            Self::Resumed => "resumed",
            Self::NewAuthScheme => "new-auth-scheme",
            Self::NewStatusClass => "new-status-class",
            Self::NewClient => "new-client",
            Self::NewRequestField => "new-request-field",
            Self::RemovedRequestField => "removed-request-field",
            Self::NewResponseField => "new-response-field",
            Self::RemovedResponseField => "removed-response-field",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == text)
    }
}

/// One change of one endpoint. `detail` names what is new (a scheme, `5xx`, a client, a
/// field path) or, for an endpoint gone quiet, when it was last called; never a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub at_unix_nano: u64,
    pub endpoint: EndpointKey,
    pub kind: ChangeKind,
    pub detail: String,
}

impl Change {
    /// The change as JSON (the JSON-lines output, `sightline changes --format json`).
    pub fn to_json(&self) -> serde_json::Value {
        let e = &self.endpoint;
        serde_json::json!({
            "event.name": CHANGE_EVENT,
            "sightline.change.kind": self.kind.name(),
            "sightline.change.detail": self.detail,
            "service.name": e.api,
            "service.namespace": e.namespace,
            "sightline.endpoint.direction": e.direction.name(),
            "http.request.method": e.method,
            "http.route": e.route,
            "time": super::report::rfc3339(self.at_unix_nano),
            "time_unix_nano": self.at_unix_nano,
        })
    }

    /// `new-response-field owner.ssn: GET /users/{id} of shop/users` (namespace/service).
    pub fn summary(&self) -> String {
        let e = &self.endpoint;
        let detail = if self.detail.is_empty() {
            String::new()
        } else {
            format!(" {}", self.detail)
        };
        let api = if e.namespace.is_empty() {
            e.api.clone()
        } else {
            format!("{}/{}", e.namespace, e.api)
        };
        format!(
            "{}{detail}: {} {} of {api}",
            self.kind.name(),
            e.method,
            e.route
        )
    }
}

/// A readable table, one change per line, oldest first.
pub fn render_table(changes: &[Change]) -> String {
    let mut out = format!(
        "{:<24} {:<24} {:<7} {:<40} {:<22} {}\n",
        "TIME", "API", "METHOD", "ROUTE", "CHANGE", "DETAIL"
    );
    for c in changes {
        let e = &c.endpoint;
        let api = if e.namespace.is_empty() {
            e.api.clone()
        } else {
            format!("{}/{}", e.namespace, e.api)
        };
        out.push_str(&format!(
            "{:<24} {api:<24} {:<7} {:<40} {:<22} {}\n",
            super::report::rfc3339(c.at_unix_nano),
            e.method,
            e.route,
            c.kind.name(),
            c.detail
        ));
    }
    out
}

/// The event name of a change (JSON lines and OTLP log records).
pub const CHANGE_EVENT: &str = "sightline.inventory.change";

/// What a call brings that its endpoint had not seen, found before the call is recorded.
#[derive(Debug, Default)]
pub struct Novelties {
    schemes: Vec<String>,
    status_class: Option<&'static str>,
    /// The client, when it is new to the endpoint.
    client: Option<String>,
}

impl Novelties {
    /// What `call` (from `client`) adds to `stats`, when the endpoint is past its baseline.
    pub fn of(stats: &EndpointStats, call: &ApiCall, client: &str) -> Self {
        let mut found = Self::default();
        if stats.calls < BASELINE_CALLS {
            return found;
        }
        crate::call::auth::for_each_scheme(call.auth.as_ref(), |scheme| {
            if !stats.auth_schemes.contains(scheme) && !stats.auth_schemes.contains("…") {
                found.schemes.push(scheme.to_string());
            }
        });
        let class = match call.status {
            Some(status @ 100..=599) => usize::from(status / 100) - 1,
            _ => 5,
        };
        if stats.status_classes[class] == 0 {
            found.status_class = Some(["1xx", "2xx", "3xx", "4xx", "5xx", "no-response"][class]);
        }
        if !stats.clients.contains(client) && stats.clients.len() < MAX_CLIENTS {
            found.client = Some(client.to_string());
        }
        found
    }
}

#[derive(Debug, Default)]
struct FieldState {
    /// Bodies it was in.
    seen: u32,
    /// Bodies in a row it was missing from.
    misses: u32,
    /// In every body since it first appeared.
    always: bool,
    removed: bool,
}

/// The fields of one side (request or response) of one endpoint.
#[derive(Debug, Default)]
struct Fields {
    fields: HashMap<String, FieldState>,
}

impl Fields {
    /// Takes one body's field paths; returns the fields new and removed with it.
    /// `budget`: fields that may still be added over all endpoints (lowered by what is added).
    fn observe(
        &mut self,
        body: &BTreeSet<String>,
        report: bool,
        budget: &mut usize,
    ) -> (Vec<String>, Vec<String>) {
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        for path in body {
            let room = self.fields.len() < MAX_FIELDS && *budget > 0;
            match self.fields.get_mut(path) {
                Some(state) => {
                    if state.removed {
                        state.removed = false;
                        state.always = true;
                        state.seen = 0;
                        added.push(path.clone());
                    } else if state.misses > 0 {
                        state.always = false;
                    }
                    state.seen += 1;
                    state.misses = 0;
                }
                None if room => {
                    let state = FieldState {
                        seen: 1,
                        always: true,
                        ..FieldState::default()
                    };
                    self.fields.insert(path.clone(), state);
                    *budget -= 1;
                    if report {
                        added.push(path.clone());
                    }
                }
                None => {}
            }
        }
        for (path, state) in &mut self.fields {
            if state.removed || body.contains(path) {
                continue;
            }
            state.misses += 1;
            if state.always && state.seen >= STEADY_BODIES && state.misses >= REMOVED_AFTER {
                state.removed = true;
                removed.push(path.clone());
            }
        }
        removed.sort();
        (added, removed)
    }
}

/// The change tracking of the inventory: bounded, on the processor task.
#[derive(Debug)]
pub struct ChangeTracker {
    /// Request and response fields per endpoint.
    fields: HashMap<EndpointKey, [Fields; 2]>,
    /// Fields that may still be followed ([`MAX_FIELDS_IN_ALL`] at first).
    field_budget: usize,
    /// Endpoints reported gone quiet (and not called since).
    quiet: HashSet<EndpointKey>,
    quiet_after_ns: u64,
    pending: Vec<Change>,
    /// Changes dropped because [`MAX_PENDING`] were waiting.
    pub dropped: u64,
}

impl ChangeTracker {
    pub fn new(quiet_after_ns: u64) -> Self {
        Self {
            fields: HashMap::new(),
            field_budget: MAX_FIELDS_IN_ALL,
            quiet: HashSet::new(),
            quiet_after_ns,
            pending: Vec::new(),
            dropped: 0,
        }
    }

    /// Endpoints a previous run reported gone quiet (they are not reported again).
    pub fn restore_quiet(&mut self, quiet: impl IntoIterator<Item = EndpointKey>) {
        self.quiet.extend(quiet);
    }

    fn push(&mut self, at_unix_nano: u64, endpoint: &EndpointKey, kind: ChangeKind, detail: &str) {
        if self.pending.len() >= MAX_PENDING {
            self.dropped += 1;
            return;
        }
        self.pending.push(Change {
            at_unix_nano,
            endpoint: endpoint.clone(),
            kind,
            detail: detail.to_string(),
        });
    }

    /// One call of `key` (just recorded in `stats`): what it changed.
    pub fn observe(
        &mut self,
        key: &EndpointKey,
        stats: &EndpointStats,
        call: &ApiCall,
        discovered: bool,
        novel: Novelties,
        bodies: BodyFields,
    ) {
        let at = call.start_unix_ns;
        if discovered {
            self.push(at, key, ChangeKind::NewEndpoint, "");
        }
        if !self.quiet.is_empty() && self.quiet.remove(key) {
            self.push(at, key, ChangeKind::Resumed, "");
        }
        for scheme in &novel.schemes {
            self.push(at, key, ChangeKind::NewAuthScheme, scheme);
        }
        if let Some(class) = novel.status_class {
            self.push(at, key, ChangeKind::NewStatusClass, class);
        }
        if let Some(client) = &novel.client {
            self.push(at, key, ChangeKind::NewClient, client);
        }
        if bodies.request.is_none() && bodies.response.is_none() {
            return;
        }
        if !self.fields.contains_key(key) && self.fields.len() >= MAX_FOLLOWED {
            return;
        }
        // Past the baseline by the calls before this one.
        let report = stats.calls > BASELINE_CALLS;
        let sides = self.fields.entry(key.clone()).or_default();
        let mut found = Vec::new();
        for (side, body, kinds) in [
            (
                0,
                &bodies.request,
                (ChangeKind::NewRequestField, ChangeKind::RemovedRequestField),
            ),
            (
                1,
                &bodies.response,
                (
                    ChangeKind::NewResponseField,
                    ChangeKind::RemovedResponseField,
                ),
            ),
        ] {
            let Some(body) = body else { continue };
            let (added, removed) = sides[side].observe(body, report, &mut self.field_budget);
            found.extend(added.into_iter().map(|p| (kinds.0, p)));
            found.extend(removed.into_iter().map(|p| (kinds.1, p)));
        }
        for (kind, path) in found {
            self.push(at, key, kind, &path);
        }
    }

    /// Endpoints not called for the quiet period, reported once (`now` in Unix ns).
    pub fn find_quiet<'a>(
        &mut self,
        endpoints: impl Iterator<Item = (&'a EndpointKey, &'a EndpointStats)>,
        now: u64,
    ) {
        let mut gone = Vec::new();
        for (key, stats) in endpoints {
            if stats
                .last_seen_unix_nano
                .saturating_add(self.quiet_after_ns)
                < now
                && !self.quiet.contains(key)
            {
                gone.push((key.clone(), stats.last_seen_unix_nano));
            }
        }
        for (key, last) in gone {
            let detail = format!("last called {}", super::report::rfc3339(last));
            self.push(now, &key, ChangeKind::GoneQuiet, &detail);
            self.quiet.insert(key);
        }
    }

    /// Changes the writer could not take, to go with the next ones (still bounded).
    pub fn requeue(&mut self, changes: Vec<Change>) {
        let room = MAX_PENDING.saturating_sub(self.pending.len());
        self.dropped += changes.len().saturating_sub(room) as u64;
        let mut changes = changes;
        changes.truncate(room);
        changes.append(&mut self.pending);
        self.pending = changes;
    }

    /// The changes found since the last call.
    pub fn take(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        call::tests::sample,
        inventory::{Inventory, InventoryLimits, classify::Specs},
        protocol::http1::Header,
        stats::Stats,
    };

    fn inventory(quiet_after_ns: u64) -> Inventory {
        Inventory::new(
            InventoryLimits {
                quiet_after_ns,
                ..InventoryLimits::default()
            },
            Specs::default(),
            Arc::new(Stats::default()),
        )
    }

    /// A served call to `/users/7` answering `body` with `status`, at second `t`.
    fn call(t: u64, status: u16, body: &str) -> ApiCall {
        let mut call = sample();
        call.start_unix_ns = 1_700_000_000_000_000_000 + t * 1_000_000_000;
        call.end_unix_ns = call.start_unix_ns + 1_000;
        call.path = "/users/7".into();
        call.query = None;
        call.request_headers.clear();
        call.status = Some(status);
        call.response_headers = vec![Header {
            name: "content-type".into(),
            value: b"application/json".to_vec(),
        }];
        call.response_body_sample = body.as_bytes().to_vec();
        call.response_size.body = body.len() as u64;
        call
    }

    fn seen(inv: &mut Inventory, now: u64) -> Vec<(ChangeKind, String)> {
        inv.take_changes(now)
            .into_iter()
            .map(|c| (c.kind, c.detail))
            .collect()
    }

    #[test]
    fn the_baseline_is_quiet_and_what_comes_after_it_is_a_change() {
        let mut inv = inventory(u64::MAX);
        for t in 0..5 {
            // An optional field during the baseline, a 404 among the answers.
            let body = if t == 2 {
                r#"{"id":1,"nick":"a"}"#
            } else {
                r#"{"id":1}"#
            };
            inv.observe(&mut call(t, if t == 3 { 404 } else { 200 }, body));
        }
        assert_eq!(
            seen(&mut inv, 0),
            [(ChangeKind::NewEndpoint, String::new())]
        );
        let mut later = call(10, 500, r#"{"id":1,"email":"x@y.z"}"#);
        later.peer.address = "10.9.9.9:1000".parse().unwrap();
        later.peer.identity = None;
        later.request_headers.push(Header {
            name: "authorization".into(),
            value: b"Basic dTpw".to_vec(),
        });
        let mut classifier = crate::credentials::auth::AuthClassifier::new(
            crate::findings::config::FindingsSection::default().credential_names(),
            crate::credentials::fingerprint::Fingerprinter::with_key([0; 32]),
        );
        later.auth = Some(classifier.classify_and_redact(&mut later));
        inv.observe(&mut later);
        let found = seen(&mut inv, 0);
        assert_eq!(
            found,
            [
                (ChangeKind::NewAuthScheme, "basic".to_string()),
                (ChangeKind::NewStatusClass, "5xx".to_string()),
                (ChangeKind::NewClient, "10.9.9.9".to_string()),
                (ChangeKind::NewResponseField, "email".to_string()),
            ],
        );
        // The same again is nothing new; the optional field seen in the baseline either.
        later.start_unix_ns += 1;
        inv.observe(&mut later);
        inv.observe(&mut call(11, 200, r#"{"id":1,"nick":"b"}"#));
        assert_eq!(seen(&mut inv, 0), []);
    }

    #[test]
    fn a_steady_field_missing_five_times_is_removed_and_an_optional_one_never_is() {
        let mut inv = inventory(u64::MAX);
        for t in 0..10 {
            let body = if t % 2 == 0 {
                r#"{"id":1,"ssn":"x","note":"n"}"#
            } else {
                r#"{"id":1,"ssn":"x"}"#
            };
            inv.observe(&mut call(t, 200, body));
        }
        seen(&mut inv, 0);
        for t in 10..14 {
            inv.observe(&mut call(t, 200, r#"{"id":1}"#));
        }
        assert_eq!(seen(&mut inv, 0), [], "four bodies without it: not yet");
        inv.observe(&mut call(14, 200, r#"{"id":1}"#));
        assert_eq!(
            seen(&mut inv, 0),
            [(ChangeKind::RemovedResponseField, "ssn".to_string())]
        );
        for t in 15..25 {
            inv.observe(&mut call(t, 200, r#"{"id":1}"#));
        }
        assert_eq!(seen(&mut inv, 0), [], "note was optional");
        inv.observe(&mut call(25, 200, r#"{"id":1,"ssn":"x"}"#));
        assert_eq!(
            seen(&mut inv, 0),
            [(ChangeKind::NewResponseField, "ssn".to_string())],
            "back after its removal"
        );
    }

    #[test]
    fn an_endpoint_goes_quiet_once_and_resumes() {
        let second = 1_000_000_000;
        let mut inv = inventory(60 * second);
        inv.observe(&mut call(0, 200, "{}"));
        let start = 1_700_000_000_000_000_000;
        assert_eq!(seen(&mut inv, start + 30 * second).len(), 1);
        assert_eq!(
            seen(&mut inv, start + 61 * second),
            [(
                ChangeKind::GoneQuiet,
                "last called 2023-11-14T22:13:20.000Z".to_string()
            )]
        );
        assert_eq!(seen(&mut inv, start + 120 * second), []);
        inv.observe(&mut call(200, 200, "{}"));
        assert_eq!(
            seen(&mut inv, start + 200 * second),
            [(ChangeKind::Resumed, String::new())]
        );
    }

    fn root_endpoint() -> EndpointKey {
        EndpointKey::served_get("a", "/")
    }

    #[test]
    fn fields_are_followed_within_a_budget_over_all_endpoints() {
        let mut tracker = ChangeTracker::new(u64::MAX);
        tracker.field_budget = 1;
        let key = root_endpoint();
        let stats = EndpointStats {
            calls: 10,
            ..EndpointStats::default()
        };
        let bodies = BodyFields {
            request: None,
            response: Some(["a".to_string(), "b".to_string()].into()),
        };
        let call = sample();
        tracker.observe(&key, &stats, &call, false, Novelties::default(), bodies);
        let found: Vec<String> = tracker.take().into_iter().map(|c| c.detail).collect();
        assert_eq!(found, ["a"]);
        assert_eq!(tracker.field_budget, 0);
    }

    #[test]
    fn pending_changes_are_bounded_and_counted() {
        let mut tracker = ChangeTracker::new(u64::MAX);
        let key = root_endpoint();
        for _ in 0..MAX_PENDING + 3 {
            tracker.push(0, &key, ChangeKind::NewEndpoint, "");
        }
        tracker.requeue(vec![tracker.pending[0].clone()]);
        assert_eq!((tracker.take().len(), tracker.dropped), (MAX_PENDING, 4));
    }
}
