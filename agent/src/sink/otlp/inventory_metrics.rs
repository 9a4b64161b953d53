//! The inventory as metrics that add up across nodes: one series per endpoint and per spec
//! operation, so a metrics store that every node's agent writes to (Prometheus, Mimir, Thanos)
//! holds the cluster's inventory, and a query joins what each node saw.
//! - `sightline.inventory.endpoint.info` (1): service, namespace, direction, method, route,
//!   class, the authentication schemes and the clients seen (sorted, comma-separated), where
//!   callers came from (`sightline.endpoint.exposure`, `host,internet`) and whether from
//!   outside (`sightline.endpoint.external`);
//! - `sightline.inventory.endpoint.risk` (0 to 10): the endpoint's risk score (the reasons
//!   are in `sightline inventory`);
//! - `sightline.inventory.endpoint.calls`: the calls counted (a counter: it survives restarts
//!   through the database, and adds up across nodes);
//! - `sightline.inventory.endpoint.first_seen` and `.last_seen` (Unix seconds): the same
//!   endpoint without class or schemes (a query takes the min and the max over nodes);
//! - `sightline.inventory.operation.info` (1): each spec operation, deprecated or not.
//!
//! Bounded by the inventory's caps (50,000 endpoints by default): the SDK's cardinality limit
//! of these instruments is raised to that, so no endpoint falls into an overflow series.

use std::sync::Arc;

use opentelemetry::{KeyValue, metrics::Meter};
use opentelemetry_sdk::metrics::{Instrument, Stream};

use crate::inventory::{InventoryLimits, counts::InventoryCounts, endpoint::EndpointKey};

pub const ENDPOINT_INFO: &str = "sightline.inventory.endpoint.info";
pub const FIRST_SEEN: &str = "sightline.inventory.endpoint.first_seen";
pub const LAST_SEEN: &str = "sightline.inventory.endpoint.last_seen";
pub const OPERATION_INFO: &str = "sightline.inventory.operation.info";
pub const CALLS: &str = "sightline.inventory.endpoint.calls";
pub const RISK: &str = "sightline.inventory.endpoint.risk";

/// The view that lets every endpoint have its series (the SDK's default limit is 2,000).
pub fn cardinality_view(instrument: &Instrument) -> Option<Stream> {
    [
        ENDPOINT_INFO,
        FIRST_SEEN,
        LAST_SEEN,
        OPERATION_INFO,
        CALLS,
        RISK,
    ]
    .contains(&instrument.name())
    .then(|| {
        Stream::builder()
            .with_cardinality_limit(InventoryLimits::default().max_endpoints + 1)
            .build()
            .ok()
    })
    .flatten()
}

/// Unix nanoseconds as seconds truncated to the millisecond: a reader (`cluster`) rounds the
/// float back to exactly the milliseconds the local reports print.
pub fn unix_seconds_to_ms(unix_nano: u64) -> f64 {
    (unix_nano / 1_000_000) as f64 / 1e3
}

/// The endpoint's identity as attributes (what first and last seen are keyed by).
fn endpoint_attributes(key: &EndpointKey) -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new("service.name", key.api.clone()),
        KeyValue::new("sightline.endpoint.direction", key.direction.name()),
        KeyValue::new("http.request.method", key.method.clone()),
        KeyValue::new("http.route", key.route.clone()),
    ];
    if !key.namespace.is_empty() {
        attributes.push(KeyValue::new("service.namespace", key.namespace.clone()));
    }
    attributes
}

pub fn register(meter: &Meter, inventory: Arc<InventoryCounts>) {
    let source = inventory.clone();
    meter
        .u64_observable_gauge(ENDPOINT_INFO)
        .with_unit("1")
        .with_description(
            "An endpoint of the inventory (1), with its class and authentication schemes",
        )
        .with_callback(move |o| {
            for (key, series) in source.endpoint_series() {
                let mut attributes = endpoint_attributes(&key);
                attributes.push(KeyValue::new(
                    "sightline.inventory.class",
                    series.class.name(),
                ));
                attributes.push(KeyValue::new("sightline.auth.schemes", series.auth_schemes));
                attributes.push(KeyValue::new("sightline.inventory.clients", series.clients));
                attributes.push(KeyValue::new(
                    "sightline.endpoint.exposure",
                    series.exposure,
                ));
                attributes.push(KeyValue::new(
                    "sightline.endpoint.external",
                    series.external,
                ));
                o.observe(1, &attributes);
            }
        })
        .build();
    let source = inventory.clone();
    meter
        .f64_observable_gauge(RISK)
        .with_unit("1")
        .with_description("The endpoint's risk score, 0 to 10")
        .with_callback(move |o| {
            for (key, series) in source.endpoint_series() {
                o.observe(series.risk, &endpoint_attributes(&key));
            }
        })
        .build();
    let source = inventory.clone();
    meter
        .u64_observable_counter(CALLS)
        .with_unit("{call}")
        .with_description("Calls the inventory counted at the endpoint")
        .with_callback(move |o| {
            for (key, series) in source.endpoint_series() {
                o.observe(series.calls, &endpoint_attributes(&key));
            }
        })
        .build();
    for (name, description, first) in [
        (
            FIRST_SEEN,
            "When the endpoint was first called (Unix time)",
            true,
        ),
        (
            LAST_SEEN,
            "When the endpoint was last called (Unix time)",
            false,
        ),
    ] {
        let source = inventory.clone();
        meter
            .f64_observable_gauge(name)
            .with_unit("s")
            .with_description(description)
            .with_callback(move |o| {
                for (key, series) in source.endpoint_series() {
                    let at = if first {
                        series.first_seen_unix_nano
                    } else {
                        series.last_seen_unix_nano
                    };
                    o.observe(unix_seconds_to_ms(at), &endpoint_attributes(&key));
                }
            })
            .build();
    }
    meter
        .u64_observable_gauge(OPERATION_INFO)
        .with_unit("1")
        .with_description("An operation of an API spec (1), deprecated or not")
        .with_callback(move |o| {
            for op in inventory.operation_series() {
                o.observe(
                    1,
                    &[
                        KeyValue::new("service.name", op.api),
                        KeyValue::new("http.request.method", op.method),
                        KeyValue::new("http.route", op.route),
                        KeyValue::new("sightline.spec.deprecated", op.deprecated),
                    ],
                );
            }
        })
        .build();
}

#[cfg(test)]
mod tests {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::{
        ManualReader, SdkMeterProvider, data::ResourceMetrics, reader::MetricReader,
    };

    use super::*;
    use crate::inventory::{
        classify::Class,
        endpoint::{Direction, EndpointStats},
    };

    #[test]
    fn each_endpoint_has_one_series_that_follows_its_class() {
        let reader = Arc::new(ManualReader::builder().build());
        let provider = SdkMeterProvider::builder()
            .with_reader(crate::sink::otlp::metrics::SharedReader(reader.clone()))
            .with_view(cardinality_view)
            .build();
        let counts = Arc::new(InventoryCounts::default());
        register(&provider.meter("test"), counts.clone());
        let key = EndpointKey {
            api: "demo".into(),
            namespace: String::new(),
            direction: Direction::Served,
            method: "GET".into(),
            route: "/debug".into(),
        };
        let mut stats = EndpointStats {
            calls: 3,
            first_seen_unix_nano: 1_700_000_000_123_456_789,
            last_seen_unix_nano: 1_700_000_100_987_654_321,
            class: Some(Class::Shadow),
            ..EndpointStats::default()
        };
        stats.clients.insert("curl".into());
        stats.auth_schemes.insert("none".into());
        stats.posture.reach.extend([
            crate::inventory::reach::Reach::Host,
            crate::inventory::reach::Reach::Internet,
        ]);
        let text = |counts: &InventoryCounts, stats: &EndpointStats| {
            counts.update_endpoints([(&key, stats)]);
            counts.set_risks([(&key, 6.5)]);
            let mut collected = ResourceMetrics::default();
            reader.collect(&mut collected).unwrap();
            crate::sink::otlp::prometheus::render(&collected)
        };
        let first = text(&counts, &stats);
        let labels = "http_request_method=\"GET\",http_route=\"/debug\",service_name=\"demo\",sightline_endpoint_direction=\"served\"";
        for line in [
            "sightline_inventory_endpoint_info{http_request_method=\"GET\",http_route=\"/debug\",service_name=\"demo\",sightline_auth_schemes=\"none\",sightline_endpoint_direction=\"served\",sightline_endpoint_exposure=\"host,internet\",sightline_endpoint_external=\"true\",sightline_inventory_class=\"shadow\",sightline_inventory_clients=\"curl\"} 1\n".to_string(),
            format!("sightline_inventory_endpoint_risk{{{labels}}} 6.5\n"),
            format!("sightline_inventory_endpoint_calls_total{{{labels}}} 3\n"),
            format!("sightline_inventory_endpoint_first_seen_seconds{{{labels}}} 1700000000.123\n"),
            format!("sightline_inventory_endpoint_last_seen_seconds{{{labels}}} 1700000100.987\n"),
        ] {
            assert!(first.contains(&line), "{line} not in:\n{first}");
        }
        stats.class = Some(Class::Documented);
        let second = text(&counts, &stats);
        let info: Vec<&str> = second
            .lines()
            .filter(|l| l.starts_with("sightline_inventory_endpoint_info{"))
            .collect();
        assert_eq!(info.len(), 1, "{second}");
        assert!(info[0].contains("sightline_inventory_class=\"documented\""));
    }
}
