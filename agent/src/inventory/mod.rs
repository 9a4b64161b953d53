//! The API inventory: which endpoints each service serves, and which APIs off this host it
//! calls, learnt from traffic. `segment` classifies path segments, `template` turns paths into
//! route templates, `endpoint` keeps what is known of one endpoint, `store` keeps it all in
//! SQLite across restarts.
//!
//! A call is counted once: at the server's end when the server is a process on this host,
//! else at the client's end (an API this host calls). Each call gets its route template
//! (`http.route`) here, for every sink.

pub mod changes;
pub mod classify;
pub mod counts;
pub mod endpoint;
pub mod hidden;
pub mod openapi_out;
pub mod posture;
pub mod reach;
pub mod report;
pub mod schema;
/// Path segments (ids, tokens, words), classified where the call lives.
pub use crate::call::segment;
pub mod spec;
pub mod spec_source;
pub mod template;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use changes::{Change, ChangeTracker, Novelties};
use classify::Specs;
use counts::InventoryCounts;
use endpoint::{Direction, EndpointKey, EndpointStats};
use hidden::HiddenEndpoints;
use template::{OVERFLOW, RouteTree, TemplateLimits};

use crate::{
    call::{ApiCall, SpanKind},
    stats::Stats,
};

#[derive(Clone, Copy, Debug)]
pub struct InventoryLimits {
    /// Endpoints kept; past it new ones are counted under the API's overflow route.
    pub max_endpoints: usize,
    /// APIs (route trees) kept.
    pub max_apis: usize,
    pub templates: TemplateLimits,
    /// An endpoint not called for this long has gone quiet (a change).
    pub quiet_after_ns: u64,
}

impl Default for InventoryLimits {
    fn default() -> Self {
        Self {
            max_endpoints: 50_000,
            max_apis: 5_000,
            templates: TemplateLimits::default(),
            quiet_after_ns: 86_400 * 1_000_000_000,
        }
    }
}

/// Whose route tree: an API and its direction.
type ApiKey = (String, String, Direction);

pub use crate::call::endpoint::{Announce, EndpointRef, Suspicion};
use classify::{Class, Verdict};

pub struct Inventory {
    specs: Specs,
    trees: HashMap<ApiKey, RouteTree>,
    endpoints: HashMap<EndpointKey, EndpointStats>,
    /// Endpoints changed since the last [`Inventory::take_changed`].
    changed: HashSet<EndpointKey>,
    counts: Arc<InventoryCounts>,
    /// Values of documented path parameters that are endpoints of their own.
    hidden: HiddenEndpoints,
    changes: ChangeTracker,
    /// Remote proxies whose X-Forwarded-For is read (see `reach`).
    trusted_proxies: Vec<reach::Cidr>,
    limits: InventoryLimits,
    stats: Arc<Stats>,
}

impl Inventory {
    pub fn new(limits: InventoryLimits, specs: Specs, stats: Arc<Stats>) -> Self {
        let counts = Arc::new(InventoryCounts::default());
        counts.set_operations(&specs);
        Self {
            specs,
            trees: HashMap::new(),
            endpoints: HashMap::new(),
            changed: HashSet::new(),
            counts,
            hidden: HiddenEndpoints::default(),
            changes: ChangeTracker::new(limits.quiet_after_ns),
            trusted_proxies: Vec::new(),
            limits,
            stats,
        }
    }

    /// Starts from what a previous run stored: the endpoints and their routes.
    pub fn restore(&mut self, stored: Vec<(EndpointKey, EndpointStats)>) {
        for (key, stats) in stored.into_iter().take(self.limits.max_endpoints) {
            let api = (key.api.clone(), key.namespace.clone(), key.direction);
            if let Some(tree) = self.tree(api) {
                tree.learn_route(&key.route);
            }
            if let Some(class) = stats.class {
                self.counts.moved(&key, None, class);
            }
            self.endpoints.insert(key, stats);
        }
        self.counts.update_endpoints(&self.endpoints);
    }

    /// Endpoints by API and class, shared with the exports.
    pub fn counts(&self) -> Arc<InventoryCounts> {
        self.counts.clone()
    }

    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Counts `call` in its endpoint and sets its `endpoint` (and so its route).
    pub fn observe(&mut self, call: &mut ApiCall) {
        let Some((api, namespace, direction, client)) = owner(call) else {
            return;
        };
        if call.path.is_empty() {
            // An HTTP/2 path hidden by header compression (joined mid-way): no endpoint to
            // count it in, rather than a wrong one.
            Stats::inc(&self.stats.inventory_path_unknown);
            return;
        }
        let method = method(&call.method);
        let mut verdict = self.specs.classify(&api, method, &call.path);
        // A spec's template wins over a learnt one.
        let from_spec = verdict.route.is_some();
        let (route, overflow) = match verdict.route.take() {
            Some(route) => (route, false),
            None => {
                let Some(tree) = self.tree((api.clone(), namespace.clone(), direction)) else {
                    Stats::inc(&self.stats.inventory_overflow);
                    return;
                };
                let template = tree.template(&call.path);
                (template.route, template.overflow)
            }
        };
        let mut key = EndpointKey {
            api,
            namespace,
            direction,
            method: method.to_string(),
            route,
        };
        let suspected = from_spec
            .then(|| self.hidden_behind(&mut key, &mut verdict, call))
            .flatten();
        let full = self.endpoints.len() >= self.limits.max_endpoints;
        if overflow || (full && !self.endpoints.contains_key(&key)) {
            Stats::inc(&self.stats.inventory_overflow);
            key.route = OVERFLOW.to_string();
        }
        // Past the cap only overflow endpoints are added: at most one per API and method, and
        // both are bounded (`max_apis`, [`METHODS`]). The key is copied only for a new
        // endpoint, and into the changed set only when not already there (it empties every few
        // seconds).
        let discovered = !self.endpoints.contains_key(&key);
        if discovered {
            self.endpoints.insert(key.clone(), EndpointStats::default());
        }
        let Some(stats) = self.endpoints.get_mut(&key) else {
            return;
        };
        let novel = Novelties::of(stats, call, &client);
        let bodies = stats.record(call, &client);
        let served = key.direction == Direction::Served;
        stats
            .posture
            .record(call, &client, served, &self.trusted_proxies);
        let previous = stats.class.replace(verdict.class);
        self.counts.moved(&key, previous, verdict.class);
        let announce = match stats.announced {
            Some(class) if class == verdict.class => None,
            _ if discovered => Some(Announce::Discovered),
            Some(from) => Some(Announce::Reclassified { from }),
            None => match previous {
                Some(from) if from != verdict.class => Some(Announce::Reclassified { from }),
                _ => Some(Announce::Seen),
            },
        };
        stats.announced = Some(verdict.class);
        let calls = stats.calls;
        self.changes
            .observe(&key, stats, call, discovered, novel, bodies);
        if !self.changed.contains(&key) {
            self.changed.insert(key.clone());
        }
        call.endpoint = Some(Arc::new(EndpointRef {
            key,
            client,
            class: verdict.class,
            secured: verdict.secured,
            spec_file: verdict.spec_file,
            calls,
            suspected,
            announce,
        }));
    }

    /// When the spec's route (in `key`, from the spec) has parameters and the traffic shows this call's
    /// value is an endpoint of its own (`hidden`): `key` takes that concrete route, the verdict
    /// becomes suspected shadow, and the documented route and the reason are returned.
    fn hidden_behind(
        &mut self,
        key: &mut EndpointKey,
        verdict: &mut Verdict,
        call: &ApiCall,
    ) -> Option<Suspicion> {
        if !key.route.contains('{') || !matches!(verdict.class, Class::Documented | Class::Zombie) {
            return None;
        }
        let hidden = self
            .hidden
            .judge(key, &call.path, call.status, &call.response_body_sample)?;
        verdict.class = Class::SuspectedShadow;
        verdict.secured = None;
        Some(Suspicion {
            documented_route: std::mem::replace(&mut key.route, hidden.route),
            reason: hidden.reason.name(),
        })
    }

    /// New specs (a spec file changed): later calls are classified by them.
    pub fn set_specs(&mut self, specs: Specs) {
        self.counts.set_operations(&specs);
        self.specs = specs;
    }

    /// Keys whose statistics could not be written yet: written with the next batch.
    pub fn requeue(&mut self, keys: impl IntoIterator<Item = EndpointKey>) {
        self.changed.extend(keys);
    }

    /// The endpoints changed since the last call, with their current statistics.
    pub fn take_changed(&mut self) -> Vec<(EndpointKey, EndpointStats)> {
        let changed: Vec<(EndpointKey, EndpointStats)> = self
            .changed
            .drain()
            .filter_map(|key| {
                let stats = self.endpoints.get(&key)?.clone();
                Some((key, stats))
            })
            .collect();
        self.counts
            .update_endpoints(changed.iter().map(|(key, stats)| (key, stats)));
        changed
    }

    /// Remote proxies (load balancers) whose forwarding headers name the callers.
    pub fn set_trusted_proxies(&mut self, trusted: Vec<reach::Cidr>) {
        self.trusted_proxies = trusted;
    }

    /// Endpoints a previous run reported gone quiet (not reported again).
    pub fn restore_quiet(&mut self, quiet: Vec<EndpointKey>) {
        self.changes.restore_quiet(quiet);
    }

    /// The changes found since the last call, endpoints gone quiet by `now` (Unix ns)
    /// included.
    pub fn take_changes(&mut self, now: u64) -> Vec<Change> {
        self.changes.find_quiet(self.endpoints.iter(), now);
        Stats::add(
            &self.stats.inventory_changes_dropped,
            std::mem::take(&mut self.changes.dropped),
        );
        self.changes.take()
    }

    /// Changes the writer could not take: sent again with the next batch.
    pub fn requeue_changes(&mut self, changes: Vec<Change>) {
        self.changes.requeue(changes);
    }

    /// Every endpoint with its statistics.
    pub fn endpoints(&self) -> impl Iterator<Item = (&EndpointKey, &EndpointStats)> {
        self.endpoints.iter()
    }

    /// An endpoint's statistics.
    pub fn stats(&self, key: &EndpointKey) -> Option<&EndpointStats> {
        self.endpoints.get(key)
    }

    fn tree(&mut self, api: ApiKey) -> Option<&mut RouteTree> {
        if !self.trees.contains_key(&api) && self.trees.len() >= self.limits.max_apis {
            return None;
        }
        let limits = self.limits.templates;
        Some(
            self.trees
                .entry(api)
                .or_insert_with(|| RouteTree::new(limits)),
        )
    }
}

/// Methods kept as they are in the inventory; any other is `_OTHER` (as OpenTelemetry's
/// `http.request.method`), so invented methods cannot grow it.
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

fn method(method: &str) -> &str {
    if METHODS.contains(&method) {
        method
    } else {
        "_OTHER"
    }
}

/// Whose endpoint a call is (API, namespace, direction) and who called it, or `None` when the
/// call is counted at its other end (the server is a process on this host and is seen there).
fn owner(call: &ApiCall) -> Option<(String, String, Direction, String)> {
    let local = call.local.identity.as_deref();
    let peer = call.peer.identity.as_deref();
    let name_of = |identity: Option<&crate::identity::Identity>, fallback: String| {
        identity
            .and_then(|i| i.service_name.as_deref())
            .map_or(fallback, str::to_string)
    };
    let namespace_of = |identity: Option<&crate::identity::Identity>| {
        identity
            .and_then(|i| i.service_namespace.as_deref())
            .unwrap_or("")
            .to_string()
    };
    match call.kind {
        SpanKind::Server => Some((
            name_of(local, local_fallback(call)),
            namespace_of(local),
            Direction::Served,
            name_of(peer, call.peer.address.ip().to_string()),
        )),
        SpanKind::Client if call.peer.process.is_some() => None,
        SpanKind::Client => {
            let (host, _) = crate::call::address::server_address(call);
            Some((
                name_of(peer, host),
                namespace_of(peer),
                Direction::Called,
                name_of(local, local_fallback(call)),
            ))
        }
    }
}

fn local_fallback(call: &ApiCall) -> String {
    call.local.process.as_ref().map_or_else(
        || call.local.address.to_string(),
        |p| p.executable_name.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::tests::sample;

    fn inventory(max_endpoints: usize) -> Inventory {
        Inventory::new(
            InventoryLimits {
                max_endpoints,
                ..InventoryLimits::default()
            },
            Specs::default(),
            Arc::new(Stats::default()),
        )
    }

    #[test]
    fn calls_are_counted_once_at_the_server_or_as_called_apis() {
        let mut inv = inventory(100);
        let mut served = sample();
        inv.observe(&mut served);
        assert_eq!(served.route(), Some("/users/{id}"));

        // A client call to a local process is counted at that process's end.
        let mut to_local = sample();
        to_local.kind = SpanKind::Client;
        to_local.peer.process = to_local.local.process.clone();
        inv.observe(&mut to_local);
        assert_eq!(to_local.route(), None);

        // A client call to another host: an API this host calls, named by its Host.
        let mut external = sample();
        external.kind = SpanKind::Client;
        external.path = "/v1/charges/ch_3MmlLrLkdIwHu7ix0snN0B15".into();
        inv.observe(&mut external);
        let keys: Vec<(String, Direction, String, String)> = inv
            .take_changed()
            .into_iter()
            .map(|(k, _)| (k.api, k.direction, k.method, k.route))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(
            keys,
            [
                (
                    "api".into(),
                    Direction::Served,
                    "GET".into(),
                    "/users/{id}".into()
                ),
                (
                    "api.local".into(),
                    Direction::Called,
                    "GET".into(),
                    "/v1/charges/{token}".into()
                ),
            ]
        );
        assert!(inv.take_changed().is_empty());
    }

    #[test]
    fn the_endpoint_table_is_bounded_and_methods_are_normalised() {
        let mut inv = inventory(2);
        for path in ["/a", "/b", "/c", "/d"] {
            let mut call = sample();
            call.path = path.into();
            call.method = "BREW".into();
            inv.observe(&mut call);
        }
        let routes: std::collections::BTreeSet<(String, String)> = inv
            .take_changed()
            .into_iter()
            .map(|(k, _)| (k.method, k.route))
            .collect();
        assert_eq!(
            routes.into_iter().collect::<Vec<_>>(),
            [
                ("_OTHER".to_string(), "/a".to_string()),
                ("_OTHER".to_string(), "/b".to_string()),
                ("_OTHER".to_string(), OVERFLOW.to_string()),
            ]
        );
        assert_eq!(
            inv.stats
                .inventory_overflow
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
    }

    /// Through the whole observe path: a value answering another shape than its neighbours is
    /// counted under its own route, suspected shadow, with the documented route on the call.
    #[test]
    fn a_hidden_endpoint_gets_its_own_route_and_class() {
        let doc: serde_json::Value =
            serde_yaml_ng::from_str("openapi: 3.0.3\npaths:\n  /users/{name}:\n    get: {}\n")
                .unwrap();
        let specs = Specs::new(vec![classify::BoundSpec {
            spec: spec::from_document(&doc, std::path::Path::new("people.yaml")).unwrap(),
            service: Some("api".into()),
            retired: false,
        }]);
        let mut inv = Inventory::new(
            InventoryLimits::default(),
            specs,
            Arc::new(Stats::default()),
        );
        let mut seen = Vec::new();
        for (name, body) in [
            ("alice", &br#"{"name": "alice"}"#[..]),
            ("bob", br#"{"name": "bob"}"#),
            ("carol", br#"{"name": "carol"}"#),
            ("debug", br#"{"users": []}"#),
        ] {
            let mut call = sample();
            call.path = format!("/users/{name}");
            call.response_body_sample = body.to_vec();
            inv.observe(&mut call);
            let endpoint = call.endpoint.clone().unwrap();
            seen.push((
                endpoint.key.route.clone(),
                endpoint.class,
                endpoint.suspected.clone().map(|s| s.documented_route),
            ));
        }
        let documented = ("/users/{name}".to_string(), Class::Documented, None);
        assert_eq!(
            seen,
            [
                documented.clone(),
                documented.clone(),
                documented,
                (
                    "/users/debug".to_string(),
                    Class::SuspectedShadow,
                    Some("/users/{name}".to_string())
                ),
            ]
        );
    }
}
