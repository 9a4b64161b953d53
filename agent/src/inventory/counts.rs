//! What the inventory metrics read: endpoints by API and class (kept up to date as endpoints
//! appear and change class), and each endpoint's and spec operation's own series (refreshed
//! at each flush of the inventory, every few seconds). Read by the metrics export every
//! interval; bounded by the inventory's own caps.

use std::{collections::HashMap, sync::Mutex};

use super::{
    classify::{Class, Specs},
    endpoint::{Direction, EndpointKey, EndpointStats},
};

/// Whose endpoints are counted: an API (service name and namespace), its direction, a class.
pub type CountKey = (String, String, Direction, Class);

/// One endpoint as its metrics show it: what adds up across nodes (the class and schemes as
/// labels, first and last seen as values a query takes the min and max of).
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointSeries {
    pub class: Class,
    /// The authentication schemes seen, sorted, comma-separated (`none` included).
    pub auth_schemes: String,
    /// The clients seen (service names, else addresses), sorted, comma-separated; `…` last
    /// when there were more than the inventory keeps.
    pub clients: String,
    pub first_seen_unix_nano: u64,
    pub last_seen_unix_nano: u64,
    /// Calls counted (across restarts: the database keeps them).
    pub calls: u64,
    /// Where callers came from (`host,internet`; `-` for an API this host calls).
    pub exposure: String,
    pub external: bool,
    /// The risk score (0 to 10), as of the last flush that scored it.
    pub risk: f64,
}

/// One spec operation as its metric shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationSeries {
    pub api: String,
    pub method: String,
    pub route: String,
    pub deprecated: bool,
}

#[derive(Debug, Default)]
pub struct InventoryCounts {
    counts: Mutex<HashMap<CountKey, u64>>,
    endpoints: Mutex<HashMap<EndpointKey, EndpointSeries>>,
    operations: Mutex<Vec<OperationSeries>>,
}

impl InventoryCounts {
    /// The endpoint `key` moved from class `from` (`None`: it is new) to `to`.
    pub fn moved(&self, key: &EndpointKey, from: Option<Class>, to: Class) {
        if from == Some(to) {
            return;
        }
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        let api = |class| (key.api.clone(), key.namespace.clone(), key.direction, class);
        if let Some(from) = from
            && let Some(n) = counts.get_mut(&api(from))
        {
            *n = n.saturating_sub(1);
        }
        *counts.entry(api(to)).or_default() += 1;
    }

    /// Refreshes the series of endpoints whose statistics changed (or were loaded).
    pub fn update_endpoints<'a>(
        &self,
        changed: impl IntoIterator<Item = (&'a EndpointKey, &'a EndpointStats)>,
    ) {
        let Ok(mut endpoints) = self.endpoints.lock() else {
            return;
        };
        for (key, stats) in changed {
            let series = EndpointSeries {
                class: stats.class.unwrap_or(Class::NoSpec),
                auth_schemes: stats
                    .auth_schemes
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                clients: stats
                    .clients
                    .iter()
                    .map(String::as_str)
                    .chain(stats.more_clients.then_some("…"))
                    .collect::<Vec<_>>()
                    .join(","),
                first_seen_unix_nano: stats.first_seen_unix_nano,
                last_seen_unix_nano: stats.last_seen_unix_nano,
                calls: stats.calls,
                exposure: stats.posture.reach_names(),
                external: stats.posture.external(),
                risk: 0.0,
            };
            match endpoints.get_mut(key) {
                Some(old) => {
                    let risk = old.risk;
                    *old = EndpointSeries { risk, ..series };
                }
                None => {
                    endpoints.insert(key.clone(), series);
                }
            }
        }
    }

    /// Sets endpoints' risk scores (endpoints without a series are skipped).
    pub fn set_risks<'a>(&self, scores: impl IntoIterator<Item = (&'a EndpointKey, f64)>) {
        let Ok(mut endpoints) = self.endpoints.lock() else {
            return;
        };
        for (key, score) in scores {
            if let Some(series) = endpoints.get_mut(key) {
                series.risk = score;
            }
        }
    }

    /// The specs' operations, for every API each applies to (replaced when the specs change).
    pub fn set_operations(&self, specs: &Specs) {
        let mut operations = Vec::new();
        for bound in specs.bound() {
            for api in bound.service.iter().chain(&bound.spec.hosts) {
                for (method, route, deprecated) in bound.routes() {
                    operations.push(OperationSeries {
                        api: api.clone(),
                        method,
                        route,
                        deprecated,
                    });
                }
            }
        }
        if let Ok(mut current) = self.operations.lock() {
            *current = operations;
        }
    }

    pub fn endpoint_series(&self) -> Vec<(EndpointKey, EndpointSeries)> {
        self.endpoints
            .lock()
            .map(|e| e.iter().map(|(k, s)| (k.clone(), s.clone())).collect())
            .unwrap_or_default()
    }

    pub fn operation_series(&self) -> Vec<OperationSeries> {
        self.operations
            .lock()
            .map(|o| o.clone())
            .unwrap_or_default()
    }

    /// Every count, zeros included (a class that emptied reports 0 rather than vanishing).
    pub fn snapshot(&self) -> Vec<(CountKey, u64)> {
        self.counts
            .lock()
            .map(|counts| counts.iter().map(|(k, n)| (k.clone(), *n)).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_class_changes() {
        let counts = InventoryCounts::default();
        let key = |route: &str| EndpointKey {
            api: "shop".into(),
            namespace: String::new(),
            direction: Direction::Served,
            method: "GET".into(),
            route: route.into(),
        };
        counts.moved(&key("/a"), None, Class::Shadow);
        counts.moved(&key("/b"), None, Class::Shadow);
        counts.moved(&key("/a"), Some(Class::Shadow), Class::Documented);
        counts.moved(&key("/b"), Some(Class::Shadow), Class::Shadow);
        let mut snapshot = counts.snapshot();
        snapshot.sort_by_key(|((.., class), _)| class.name());
        let shop = |class| ("shop".to_string(), String::new(), Direction::Served, class);
        assert_eq!(
            snapshot,
            vec![(shop(Class::Documented), 1), (shop(Class::Shadow), 1)]
        );
    }
}
