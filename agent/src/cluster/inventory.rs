//! The cluster's inventory, read from a metrics store that every node's agent feeds (scraped
//! at `/metrics`, or through OTLP and a collector): the union of the endpoints of every node,
//! each with its class, authentication schemes, clients, the nodes that saw it, the calls of
//! all of them, and when it was first and last seen anywhere; and the spec operations that no
//! node saw called within the window (unused judged over the whole cluster, not per node).
//!
//! Instant queries: a node whose agent is gone stops counting once the store marks its series
//! stale (at once when scraped; after 5 minutes through remote write).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::prometheus_api::{Prometheus, QueryError, Sample};
use crate::inventory::{
    endpoint::{Direction, EndpointKey},
    report::{Unused, rfc3339},
};

/// Where a node's series say which node they came from.
const NODE_LABEL: &str = "instance";

#[derive(Clone, Debug, PartialEq)]
pub struct ClusterEndpoint {
    pub key: EndpointKey,
    pub class: String,
    pub auth_schemes: BTreeSet<String>,
    pub clients: BTreeSet<String>,
    pub nodes: BTreeSet<String>,
    pub calls: u64,
    pub first_seen_unix_ms: u64,
    pub last_seen_unix_ms: u64,
    /// Where callers came from, on any node (`host`, `cluster`, `private`, `internet`).
    pub exposure: BTreeSet<String>,
    /// The highest risk score a node gave it (each node scores what it saw).
    pub risk: f64,
}

impl ClusterEndpoint {
    pub fn external(&self) -> bool {
        self.exposure.contains("internet")
    }
}

/// The query results the cluster's inventory is joined from.
pub struct Series<'a> {
    pub info: &'a [Sample],
    pub calls: &'a [Sample],
    pub first: &'a [Sample],
    pub last: &'a [Sample],
    pub risk: &'a [Sample],
    pub operations: &'a [Sample],
}

/// What the store holds of the cluster's inventory.
#[derive(Debug, Default)]
pub struct ClusterInventory {
    pub endpoints: Vec<ClusterEndpoint>,
    /// Spec operations (with the spec's file unknown: `spec_file` is empty).
    pub unused: Vec<Unused>,
}

/// Reads the inventory; `unused_since_unix_ms`: an operation is unused when no endpoint of it
/// was last seen after this.
pub async fn read(
    prometheus: &Prometheus,
    unused_since_unix_ms: u64,
) -> Result<ClusterInventory, QueryError> {
    let keys = "service_name, service_namespace, sightline_endpoint_direction, \
                http_request_method, http_route";
    let info = prometheus
        .query("sightline_inventory_endpoint_info")
        .await?;
    let calls = prometheus
        .query(&format!(
            "sum by ({keys}) (sightline_inventory_endpoint_calls_total)"
        ))
        .await?;
    let (first, last) = first_and_last(prometheus, "sightline_inventory_endpoint", keys).await?;
    let risk = prometheus
        .query(&format!(
            "max by ({keys}) (sightline_inventory_endpoint_risk)"
        ))
        .await?;
    let operations = prometheus
        .query("sightline_inventory_operation_info")
        .await?;
    Ok(assemble(
        &Series {
            info: &info,
            calls: &calls,
            first: &first,
            last: &last,
            risk: &risk,
            operations: &operations,
        },
        unused_since_unix_ms,
    ))
}

/// `min` of `{metric}_first_seen_seconds` and `max` of `{metric}_last_seen_seconds` by `keys`:
/// the earliest and latest any node saw.
pub(crate) async fn first_and_last(
    prometheus: &Prometheus,
    metric: &str,
    keys: &str,
) -> Result<(Vec<Sample>, Vec<Sample>), QueryError> {
    let first = prometheus
        .query(&format!("min by ({keys}) ({metric}_first_seen_seconds)"))
        .await?;
    let last = prometheus
        .query(&format!("max by ({keys}) ({metric}_last_seen_seconds)"))
        .await?;
    Ok((first, last))
}

/// Joins the query results (a pure function: the tests give it samples).
pub fn assemble(series: &Series<'_>, unused_since_unix_ms: u64) -> ClusterInventory {
    let mut endpoints: BTreeMap<EndpointKey, ClusterEndpoint> = BTreeMap::new();
    for sample in series.info {
        let Some(key) = endpoint_key(sample) else {
            continue;
        };
        let label = |name: &str| sample.labels.get(name).cloned().unwrap_or_default();
        let endpoint = endpoints
            .entry(key.clone())
            .or_insert_with(|| ClusterEndpoint {
                key,
                class: label("sightline_inventory_class"),
                auth_schemes: BTreeSet::new(),
                clients: BTreeSet::new(),
                nodes: BTreeSet::new(),
                calls: 0,
                first_seen_unix_ms: 0,
                last_seen_unix_ms: 0,
                exposure: BTreeSet::new(),
                risk: 0.0,
            });
        // Nodes with different specs could disagree: the most telling class wins.
        endpoint.class = worse_class(&endpoint.class, &label("sightline_inventory_class"));
        endpoint
            .auth_schemes
            .extend(list(&label("sightline_auth_schemes")));
        endpoint
            .clients
            .extend(list(&label("sightline_inventory_clients")));
        endpoint
            .exposure
            .extend(list(&label("sightline_endpoint_exposure")).filter(|ring| ring != "-"));
        endpoint.nodes.insert(label(NODE_LABEL));
    }
    for (samples, set) in [
        (
            series.calls,
            (|e, v| e.calls = v as u64) as fn(&mut ClusterEndpoint, f64),
        ),
        (series.first, |e, v| e.first_seen_unix_ms = millis(v)),
        (series.last, |e, v| e.last_seen_unix_ms = millis(v)),
        (series.risk, |e, v| e.risk = v),
    ] {
        for sample in samples {
            if let Some(e) = endpoint_key(sample).and_then(|k| endpoints.get_mut(&k)) {
                set(e, sample.value);
            }
        }
    }
    let recent: BTreeSet<(&str, &str, &str)> = endpoints
        .values()
        .filter(|e| e.last_seen_unix_ms >= unused_since_unix_ms)
        .map(|e| {
            (
                e.key.api.as_str(),
                e.key.method.as_str(),
                e.key.route.as_str(),
            )
        })
        .collect();
    let mut unused: Vec<Unused> = series
        .operations
        .iter()
        .filter_map(|s| {
            let get = |name: &str| s.labels.get(name).cloned();
            Some(Unused {
                api: get("service_name")?,
                method: get("http_request_method")?,
                route: get("http_route")?,
                spec_file: String::new(),
            })
        })
        .filter(|u| !recent.contains(&(u.api.as_str(), u.method.as_str(), u.route.as_str())))
        .collect();
    unused.sort_by(|a, b| (&a.api, &a.route, &a.method).cmp(&(&b.api, &b.route, &b.method)));
    unused.dedup();
    ClusterInventory {
        endpoints: endpoints.into_values().collect(),
        unused,
    }
}

pub(crate) fn endpoint_key(sample: &Sample) -> Option<EndpointKey> {
    let get = |name: &str| sample.labels.get(name).cloned();
    Some(EndpointKey {
        api: get("service_name")?,
        namespace: get("service_namespace").unwrap_or_default(),
        direction: Direction::parse(&get("sightline_endpoint_direction")?)?,
        method: get("http_request_method")?,
        route: get("http_route")?,
    })
}

/// Unix seconds (exported to the millisecond) to milliseconds.
pub(crate) fn millis(seconds: f64) -> u64 {
    (seconds * 1000.0).round().max(0.0) as u64
}

fn list(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Of two class names, the one a security team would rather hear of.
fn worse_class(a: &str, b: &str) -> String {
    let rank = |c: &str| match c {
        "zombie" => 4,
        "shadow" => 3,
        "suspected-shadow" => 2,
        "documented" => 1,
        _ => 0,
    };
    if rank(b) > rank(a) { b } else { a }.to_string()
}

/// One JSON object per endpoint, then one per unused operation (`class` "unused").
pub fn to_json(inventory: &ClusterInventory) -> Value {
    let unused = inventory.unused.iter().map(|u| {
        json!({"api": u.api, "method": u.method, "route": u.route, "class": "unused", "calls": 0})
    });
    Value::Array(
        inventory
            .endpoints
            .iter()
            .map(|e| {
                json!({
                    "api": e.key.api,
                    "namespace": e.key.namespace,
                    "direction": e.key.direction.name(),
                    "method": e.key.method,
                    "route": e.key.route,
                    "class": e.class,
                    "calls": e.calls,
                    "first_seen": rfc3339(e.first_seen_unix_ms * 1_000_000),
                    "last_seen": rfc3339(e.last_seen_unix_ms * 1_000_000),
                    "auth_schemes": e.auth_schemes,
                    "clients": e.clients,
                    "nodes": e.nodes,
                    "exposure": e.exposure,
                    "external": e.external(),
                    "risk": {"score": e.risk},
                })
            })
            .chain(unused)
            .collect(),
    )
}

/// A line per endpoint for people, then the unused operations.
pub fn render_table(inventory: &ClusterInventory) -> String {
    let mut out = format!(
        "{:<20} {:<6} {:<7} {:<40} {:<16} {:>4}  {:<16} {:>8} {:>5}  {:<24} {}\n",
        "SERVICE",
        "DIR",
        "METHOD",
        "ROUTE",
        "CLASS",
        "RISK",
        "EXPOSURE",
        "CALLS",
        "NODES",
        "LAST SEEN",
        "CLIENTS"
    );
    for e in &inventory.endpoints {
        let clients: Vec<&str> = e.clients.iter().map(String::as_str).collect();
        let exposure: Vec<&str> = e.exposure.iter().map(String::as_str).collect();
        out.push_str(&format!(
            "{:<20} {:<6} {:<7} {:<40} {:<16} {:>4.1}  {:<16} {:>8} {:>5}  {:<24} {}\n",
            e.key.api,
            e.key.direction.name(),
            e.key.method,
            e.key.route,
            e.class,
            e.risk,
            if exposure.is_empty() {
                "-".to_string()
            } else {
                exposure.join(",")
            },
            e.calls,
            e.nodes.len(),
            rfc3339(e.last_seen_unix_ms * 1_000_000),
            clients.join(",")
        ));
    }
    for u in &inventory.unused {
        out.push_str(&format!(
            "{:<20} {:<6} {:<7} {:<40} {:<16} {:>4}  {:<16} {:>8}\n",
            u.api, "-", u.method, u.route, "unused", "-", "-", 0
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        }
    }

    fn endpoint(
        route: &str,
        extra: &[(&'static str, &'static str)],
    ) -> Vec<(&'static str, String)> {
        let mut labels = vec![
            ("service_name", "demo".to_string()),
            ("sightline_endpoint_direction", "served".to_string()),
            ("http_request_method", "GET".to_string()),
            ("http_route", route.to_string()),
        ];
        labels.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        labels
    }

    fn of(labels: Vec<(&'static str, String)>, value: f64) -> Sample {
        Sample {
            labels: labels
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            value,
        }
    }

    #[test]
    fn nodes_add_up_and_unused_is_judged_over_the_cluster() {
        let node = |n: &'static str, class: &'static str, clients: &'static str| {
            [
                ("instance", n),
                ("sightline_inventory_class", class),
                ("sightline_auth_schemes", "none"),
                ("sightline_inventory_clients", clients),
                (
                    "sightline_endpoint_exposure",
                    if n.starts_with('a') {
                        "host"
                    } else {
                        "host,internet"
                    },
                ),
            ]
        };
        let info = [
            of(endpoint("/debug", &node("a:9467", "shadow", "curl")), 1.0),
            of(endpoint("/debug", &node("b:9467", "shadow", "wget")), 1.0),
            of(
                endpoint("/items", &node("b:9467", "documented", "curl")),
                1.0,
            ),
        ];
        let calls = [
            of(endpoint("/debug", &[]), 5.0),
            of(endpoint("/items", &[]), 2.0),
        ];
        let first = [
            of(endpoint("/debug", &[]), 1000.001),
            of(endpoint("/items", &[]), 1500.0),
        ];
        let last = [
            of(endpoint("/debug", &[]), 2000.0),
            of(endpoint("/items", &[]), 3000.0),
        ];
        let operations = [
            sample(
                &[
                    ("service_name", "demo"),
                    ("http_request_method", "GET"),
                    ("http_route", "/items"),
                ],
                1.0,
            ),
            sample(
                &[
                    ("service_name", "demo"),
                    ("http_request_method", "GET"),
                    ("http_route", "/old"),
                ],
                1.0,
            ),
        ];
        let risk = [of(endpoint("/debug", &[]), 6.5)];
        let series = Series {
            info: &info,
            calls: &calls,
            first: &first,
            last: &last,
            risk: &risk,
            operations: &operations,
        };
        let cluster = assemble(&series, 2_500_000);
        assert_eq!(cluster.endpoints.len(), 2);
        let debug = &cluster.endpoints[0];
        assert_eq!(debug.key.route, "/debug");
        assert_eq!((debug.class.as_str(), debug.calls), ("shadow", 5));
        assert_eq!(debug.nodes.iter().collect::<Vec<_>>(), ["a:9467", "b:9467"]);
        assert_eq!(debug.clients.iter().collect::<Vec<_>>(), ["curl", "wget"]);
        assert_eq!(
            debug.exposure.iter().collect::<Vec<_>>(),
            ["host", "internet"]
        );
        assert!(debug.external());
        assert_eq!((debug.risk, cluster.endpoints[1].risk), (6.5, 0.0));
        assert_eq!(
            (debug.first_seen_unix_ms, debug.last_seen_unix_ms),
            (1_000_001, 2_000_000)
        );
        // /items was called (on node b only) after the cutoff: not unused; /old never was.
        let unused: Vec<&str> = cluster.unused.iter().map(|u| u.route.as_str()).collect();
        assert_eq!(unused, ["/old"]);
        let older = assemble(&series, 3_500_000);
        assert_eq!(older.unused.len(), 2);
    }
}
