//! Abuse signals counted in time windows: one client walking many distinct ids of one
//! templated endpoint (`object-enumeration`, the BOLA pattern), and one client collecting
//! many 401/403 answers from one endpoint (`auth-failure-burst`, credential stuffing).
//!
//! A "client" for enumeration is the calling service or address together with the credential
//! it used: a front end calling for many users, each with their own token, is not one walker.
//! Ids and credentials are kept as hashes, only for counting. Trackers are bounded; when full,
//! expired windows are dropped first, then new clients are not tracked (counted).

use std::{
    collections::{HashMap, HashSet},
    hash::{BuildHasher, Hash, Hasher, RandomState},
};

use serde_json::json;

use super::{Context, Hit, evidence, settings::Threshold};
use crate::{findings::model::Rule, inventory::endpoint::EndpointKey};

/// Tracked (endpoint, client) windows per rule, at most.
const MAX_TRACKED: usize = 16_384;

#[derive(Debug, Default)]
struct Window {
    start: u64,
    /// Distinct id hashes (enumeration) or credential hashes (failures), at most the
    /// threshold.
    distinct: HashSet<u64>,
    events: u64,
    successes: u64,
    /// Reported in this window already.
    reported: bool,
}

/// Whose window: a hash of (endpoint, client, credential fingerprint), so a call allocates no
/// key (a collision merges two windows' counts: 1 in 2^64).
type WindowKey = u64;

#[derive(Debug, Default)]
pub struct Tracker {
    windows: HashMap<WindowKey, Window>,
    hasher: RandomState,
    /// Clients not tracked because the table was full.
    pub untracked: u64,
}

impl Tracker {
    fn hash(&self, value: impl Hash) -> u64 {
        self.hasher.hash_one(value)
    }

    fn key(&self, endpoint: &EndpointKey, client: &str, credential: Option<&str>) -> WindowKey {
        self.hash((endpoint, client, credential))
    }

    /// The window of `key` at `now`, restarted when expired.
    fn window(&mut self, key: WindowKey, now: u64, length: u64) -> Option<&mut Window> {
        if !self.windows.contains_key(&key) && self.windows.len() >= MAX_TRACKED {
            self.windows
                .retain(|_, w| now.saturating_sub(w.start) <= length);
            if self.windows.len() >= MAX_TRACKED {
                self.untracked += 1;
                return None;
            }
        }
        let window = self.windows.entry(key).or_default();
        if window.events == 0 || now.saturating_sub(window.start) > length {
            *window = Window {
                start: now,
                ..Window::default()
            };
        }
        Some(window)
    }
}

/// Calls `f` with the values at the route's parameter positions (`/users/{id}` and
/// `/users/42` -> `42`), without collecting them; false when the path does not have the
/// route's shape or the route has no parameter.
pub fn for_each_id<'a>(route: &str, path: &'a str, mut f: impl FnMut(&'a str)) -> bool {
    let mut parts = route.split('/').filter(|s| !s.is_empty());
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let mut any = false;
    loop {
        match (parts.next(), segments.next()) {
            (None, None) => return any,
            (Some(part), Some(segment)) => {
                if part.starts_with('{') && part.ends_with('}') {
                    f(segment);
                    any = true;
                }
            }
            _ => return false,
        }
    }
}

/// `object-enumeration`.
pub fn enumeration(
    ctx: &Context<'_>,
    limits: Threshold,
    tracker: &mut Tracker,
    out: &mut Vec<Hit>,
) {
    let mut hasher = tracker.hasher.build_hasher();
    if !for_each_id(&ctx.endpoint.key.route, &ctx.call.path, |id| {
        id.hash(&mut hasher)
    }) {
        return;
    }
    let id = hasher.finish();
    let credential = ctx.auth.primary().map(|c| &*c.fingerprint);
    let key = tracker.key(&ctx.endpoint.key, &ctx.endpoint.client, credential);
    let Some(w) = tracker.window(key, ctx.call.start_unix_ns, limits.window_ns) else {
        return;
    };
    w.events += 1;
    if ctx.succeeded() {
        w.successes += 1;
    }
    if w.distinct.len() < limits.count as usize {
        w.distinct.insert(id);
    }
    if w.distinct.len() >= limits.count as usize && !w.reported {
        w.reported = true;
        let mut e = evidence([
            ("distinct_ids", json!(w.distinct.len())),
            ("calls", json!(w.events)),
            ("successful_calls", json!(w.successes)),
            ("window_seconds", json!(limits.window_ns / 1_000_000_000)),
        ]);
        if let Some(fp) = credential {
            e.insert("credential_fingerprint".into(), json!(fp));
        }
        out.push(ctx.hit(
            Rule::ObjectEnumeration,
            Rule::ObjectEnumeration.default_severity(),
            e,
        ));
    }
}

/// `auth-failure-burst`.
pub fn auth_failures(
    ctx: &Context<'_>,
    limits: Threshold,
    tracker: &mut Tracker,
    out: &mut Vec<Hit>,
) {
    if !matches!(ctx.call.status, Some(401 | 403)) {
        return;
    }
    let credential = tracker.hash(ctx.auth.primary().map(|c| &c.fingerprint));
    let key = tracker.key(&ctx.endpoint.key, &ctx.endpoint.client, None);
    let Some(w) = tracker.window(key, ctx.call.start_unix_ns, limits.window_ns) else {
        return;
    };
    w.events += 1;
    if w.distinct.len() < limits.count as usize {
        w.distinct.insert(credential);
    }
    if w.events >= u64::from(limits.count) && !w.reported {
        w.reported = true;
        out.push(ctx.hit(
            Rule::AuthFailureBurst,
            Rule::AuthFailureBurst.default_severity(),
            evidence([
                ("failures", json!(w.events)),
                ("distinct_credentials", json!(w.distinct.len())),
                ("window_seconds", json!(limits.window_ns / 1_000_000_000)),
            ]),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::{
        auth::CallAuth,
        rules::tests::{call, hits},
    };

    /// One tracker per rule, as the stage keeps them.
    type Trackers = [Tracker; 2];

    const LIMITS: Threshold = Threshold {
        count: 5,
        window_ns: 60_000_000_000,
    };

    fn walk(
        paths: &[String],
        client: &str,
        status: u16,
        at: &[u64],
        tracker: &mut Trackers,
    ) -> usize {
        let mut found = 0;
        for (path, t) in paths.iter().zip(at) {
            let mut c = call("GET", path, "/users/{id}", client, status);
            c.start_unix_ns = *t;
            found += hits(&c, &CallAuth::default(), |ctx, out| {
                enumeration(ctx, LIMITS, &mut tracker[0], out);
                auth_failures(ctx, LIMITS, &mut tracker[1], out);
            })
            .len();
        }
        found
    }

    #[test]
    fn ids_come_from_parameter_positions() {
        let ids = |route: &str, path: &'static str| {
            let mut found = Vec::new();
            for_each_id(route, path, |id| found.push(id)).then_some(found)
        };
        assert_eq!(
            ids("/users/{id}/orders/{oid}", "/users/4/orders/9"),
            Some(vec!["4", "9"])
        );
        assert_eq!(ids("/users", "/users"), None);
        assert_eq!(ids("/users/{id}", "/users/4/x"), None);
    }

    #[test]
    fn enumeration_needs_distinct_ids_within_the_window() {
        let s = 1_000_000_000u64;
        let distinct: Vec<String> = (1..=6).map(|i| format!("/users/{i}")).collect();
        let same: Vec<String> = (1..=6).map(|_| "/users/1".to_string()).collect();
        let times: Vec<u64> = (1..=6).map(|i| i * s).collect();
        assert_eq!(
            walk(&distinct, "a", 200, &times, &mut Trackers::default()),
            1,
            "reported once"
        );
        assert_eq!(walk(&same, "a", 200, &times, &mut Trackers::default()), 0);
        let slow: Vec<u64> = (1..=6).map(|i| i * 61 * s).collect();
        assert_eq!(
            walk(&distinct, "a", 200, &slow, &mut Trackers::default()),
            0
        );
        // Four ids each from two clients: neither walked five.
        let mut t = Trackers::default();
        assert_eq!(walk(&distinct[..4], "a", 200, &times, &mut t), 0);
        assert_eq!(walk(&distinct[..4], "b", 200, &times, &mut t), 0);
    }

    #[test]
    fn failure_bursts_need_the_threshold_within_the_window() {
        let s = 1_000_000_000u64;
        let same: Vec<String> = (1..=5).map(|_| "/users/1".to_string()).collect();
        let times: Vec<u64> = (1..=5).map(|i| i * s).collect();
        assert_eq!(walk(&same, "a", 401, &times, &mut Trackers::default()), 1);
        assert_eq!(
            walk(&same[..4], "a", 403, &times, &mut Trackers::default()),
            0
        );
        assert_eq!(walk(&same, "a", 404, &times, &mut Trackers::default()), 0);
        let slow: Vec<u64> = (1..=5).map(|i| i * 20 * s).collect();
        assert_eq!(walk(&same, "a", 401, &slow, &mut Trackers::default()), 0);
    }
}
