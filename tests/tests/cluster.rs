//! One inventory for the whole cluster, kept in the metrics store: two agents stand for two
//! nodes, each capturing only its own replica of one service (`--port`), both scraped by a real
//! Prometheus (Debian's) at `/metrics`. An operation called only through node B is unused in
//! node A's local inventory and not in the cluster's; a shadow endpoint both nodes saw is listed
//! once with both nodes' calls; `sightline inventory --prometheus` equals the union of the two
//! local inventories; `sightline openapi --db A --db B` documents what either node saw.
#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use sightline_tests::{
    Agent, Program, agent_binary, curl, curl_status, fixture, free_port, patience, python, report,
    wait_for_port,
};

/// A node: the agent capturing its replica's port only, named `demo` there, with the spec.
fn node(dir: &Path, name: &str, replica: u16, health: u16) -> Agent {
    std::fs::copy(fixture("shift_left/api.yaml"), dir.join("api.yaml")).ok();
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[[service_rules]]\nname = \"demo\"\nport = {replica}\n\n\
             [[api_specs]]\npath = \"api.yaml\"\nservice = \"demo\"\n"
        ),
    )
    .unwrap();
    let health = format!("127.0.0.1:{health}");
    let port = replica.to_string();
    Agent::with_config(&config, &["--port", &port, "--health-listen", &health])
}

fn replica(port: u16) -> Program {
    let mut server = Program::spawn(python(&[
        fixture("shift_left/api.py").to_str().unwrap(),
        &port.to_string(),
    ]));
    assert_eq!(server.line(), "ready");
    server
}

fn call(port: u16, method: &str, path: &str) {
    let url = format!("http://127.0.0.1:{port}{path}");
    let status = if method == "POST" {
        curl_status(None, &["-d", "{}", &url])
    } else {
        curl_status(None, &[&url])
    };
    assert!(status.starts_with('2'), "{method} {path}: {status}");
}

/// Debian's Prometheus, scraping both agents every second, with its data in `dir`.
fn prometheus(dir: &Path, targets: &[u16]) -> (Program, u16) {
    let port = free_port();
    let targets: Vec<String> = targets.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sightline\n    \
             static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    let mut command = Command::new("prometheus");
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn");
    let server = Program::spawn(command);
    wait_for_port(port);
    (server, port)
}

/// `sightline SUBCOMMAND ARGS --format json`, as a list.
fn json_list(subcommand: &str, args: &[&str]) -> Vec<Value> {
    let out = Command::new(agent_binary())
        .arg(subcommand)
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn inventory_json(args: &[&str]) -> Vec<Value> {
    json_list("inventory", args)
}

/// `class route calls` of each endpoint and unused operation, sorted.
fn summary(items: &[Value]) -> Vec<String> {
    let mut lines: Vec<String> = items
        .iter()
        .map(|e| {
            format!(
                "{} {} {} calls={}",
                e["class"].as_str().unwrap(),
                e["method"].as_str().unwrap(),
                e["route"].as_str().unwrap(),
                e["calls"]
            )
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn the_cluster_inventory_in_prometheus_is_the_union_of_the_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let (port_a, port_b) = (free_port(), free_port());
    let (health_a, health_b) = (free_port(), free_port());
    let _replica_a = replica(port_a);
    let _replica_b = replica(port_b);
    let mut node_a = node(dir.path(), "a", port_a, health_a);
    let mut node_b = node(dir.path(), "b", port_b, health_b);
    let (_prometheus, prometheus_port) = prometheus(dir.path(), &[health_a, health_b]);
    // Nodes are listed sorted by their `instance` label.
    let mut both_nodes = [
        format!("127.0.0.1:{health_a}"),
        format!("127.0.0.1:{health_b}"),
    ];
    both_nodes.sort();

    call(port_a, "GET", "/items");
    call(port_a, "GET", "/items");
    call(port_a, "GET", "/debug/config");
    call(port_a, "POST", "/items");
    call(port_b, "GET", "/items/1");
    call(port_b, "GET", "/debug/config");
    call(port_b, "GET", "/debug/config");
    call(port_b, "POST", "/items");

    // The cluster's view, once both nodes' last calls are in Prometheus.
    let url = format!("http://127.0.0.1:{prometheus_port}");
    let expected = [
        "documented GET /items calls=2",
        "documented GET /items/{id} calls=1",
        "documented POST /items calls=2",
        "shadow GET /debug/config calls=3",
        "unused DELETE /items/{id} calls=0",
    ];
    let start = Instant::now();
    let cluster = loop {
        let cluster = inventory_json(&["--prometheus", &url]);
        if summary(&cluster) == expected {
            break cluster;
        }
        assert!(
            start.elapsed() < patience(),
            "Prometheus never held the expected inventory: {:?}",
            summary(&cluster)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let debug = cluster
        .iter()
        .find(|e| e["route"] == "/debug/config")
        .unwrap();
    assert_eq!(debug["nodes"], serde_json::json!(both_nodes));

    // Each node scores what it saw; the cluster shows the highest score, riskiest first: the
    // unauthenticated write (2 + 1), the shadow endpoint (1.5); all called from this host.
    let expected = [
        "POST /items risk=3.0 exposure=[\"host\"]",
        "GET /debug/config risk=1.5 exposure=[\"host\"]",
        "GET /items risk=0.0 exposure=[\"host\"]",
        "GET /items/{id} risk=0.0 exposure=[\"host\"]",
    ];
    let scores = |list: &[Value]| -> Vec<String> {
        list.iter()
            .filter(|e| e["class"] != "unused")
            .map(|e| {
                format!(
                    "{} {} risk={:.1} exposure={}",
                    e["method"].as_str().unwrap(),
                    e["route"].as_str().unwrap(),
                    e["risk"]["score"].as_f64().unwrap(),
                    e["exposure"]
                )
            })
            .collect()
    };
    let start = Instant::now();
    loop {
        let ranked = inventory_json(&["--prometheus", &url, "--sort", "risk"]);
        if scores(&ranked) == expected {
            break;
        }
        assert!(
            start.elapsed() < patience(),
            "Prometheus never held the expected scores: {:?}",
            scores(&ranked)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let risky = inventory_json(&["--prometheus", &url, "--min-risk", "1", "--sort", "risk"]);
    assert_eq!(scores(&risky), expected[..2]);

    // The unauthenticated write both replicas accepted: one finding, both nodes' calls.
    let start = Instant::now();
    let finding = loop {
        let list = json_list(
            "findings",
            &["--prometheus", &url, "--rule", "unauthenticated-success"],
        );
        if let [one] = list.as_slice()
            && one["count"] == 2
        {
            break one.clone();
        }
        assert!(
            start.elapsed() < patience(),
            "findings in Prometheus: {list:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(
        (
            &finding["http.request.method"],
            &finding["http.route"],
            &finding["sightline.finding.severity"]
        ),
        (
            &Value::from("POST"),
            &Value::from("/items"),
            &Value::from("high")
        )
    );
    assert_eq!(finding["evidence"]["nodes"], serde_json::json!(both_nodes));

    // /metrics itself: node A's own series, only what node A saw.
    let (_, metrics) = curl(&[&format!("http://127.0.0.1:{health_a}/metrics")]);
    let endpoint = "http_request_method=\"GET\",http_route=\"/items\",service_name=\"demo\",\
                    sightline_endpoint_direction=\"served\"";
    assert!(
        metrics.contains(&format!(
            "\nsightline_inventory_endpoint_calls_total{{{endpoint}}} 2\n"
        )),
        "{metrics}"
    );
    assert!(
        !metrics.contains(
            "http_route=\"/items/{id}\",service_name=\"demo\",sightline_endpoint_direction"
        )
    );
    assert!(metrics.contains("# TYPE http_server_request_duration_seconds histogram\n"));

    node_a.stop();
    node_b.stop();
    let local_a = inventory_json(&["--db", node_a.db().to_str().unwrap()]);
    let local_b = inventory_json(&["--db", node_b.db().to_str().unwrap()]);
    // Per node, GET /items/{id} is unused on A (only B's replica was called there).
    assert!(summary(&local_a).contains(&"unused GET /items/{id} calls=0".to_string()));
    assert!(
        !summary(&local_b)
            .iter()
            .any(|l| l.starts_with("unused GET /items/{id}"))
    );
    assert_eq!(union(&local_a, &local_b), union(&cluster, &[]));

    // One document from both nodes' databases.
    let doc: Value = serde_json::from_slice(&report(
        "openapi",
        &node_a.db(),
        &["--db", node_b.db().to_str().unwrap(), "--service", "demo"],
    ))
    .unwrap();
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    assert_eq!(paths, ["/debug/config", "/items", "/items/{id}"]);
    assert!(doc["paths"]["/items"]["post"].is_object());
}

/// An endpoint's calls, first seen, last seen, clients and schemes.
type Joined = (u64, String, String, Vec<String>, Vec<String>);

/// Endpoints of two inventories joined as the cluster view joins them: calls added, first
/// seen the earliest, last seen the latest, clients and schemes together (unused left out:
/// per node it means something else).
fn union(a: &[Value], b: &[Value]) -> BTreeMap<String, Joined> {
    let mut all: BTreeMap<String, Joined> = BTreeMap::new();
    for e in a.iter().chain(b).filter(|e| e["class"] != "unused") {
        let key = format!(
            "{} {} {} {} {}",
            e["api"], e["direction"], e["method"], e["route"], e["class"]
        );
        let strings = |field: &str| -> Vec<String> {
            e[field]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        let (first, last) = (
            e["first_seen"].as_str().unwrap(),
            e["last_seen"].as_str().unwrap(),
        );
        let entry =
            all.entry(key)
                .or_insert((0, first.to_string(), last.to_string(), vec![], vec![]));
        entry.0 += e["calls"].as_u64().unwrap();
        entry.1 = entry.1.clone().min(first.to_string());
        entry.2 = entry.2.clone().max(last.to_string());
        for (list, field) in [(&mut entry.3, "clients"), (&mut entry.4, "auth_schemes")] {
            list.extend(strings(field));
            list.sort();
            list.dedup();
        }
    }
    all
}
