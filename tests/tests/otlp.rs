//! Export over OTLP to real OTLP servers (opentelemetry-proto's gRPC services, an HTTP/protobuf
//! server decoding the same messages): curl calling Python's http.server, one request with a
//! W3C traceparent and one with an API key in its URL. Each call's span carries exactly the
//! attributes of its JSON line (its identity as the resource), joins the caller's trace when
//! asked; the duration histograms, inventory gauges, finding counters and health metrics match
//! what the agent saw; every finding and inventory change arrives as a log record; the key
//! never does. Then a collector that is down while traffic flows: drops counted, the queue
//! bounded, and what it held (and the metrics' totals) delivered once the collector is back;
//! and one that answers errors, then slowly: capture unaffected, memory bounded, every refused
//! request counted as a failed export, every span exported or counted as dropped.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sightline_tests::{
    Agent, Program, calls_on_port, counter, curl, dashboards, free_port,
    otlp::{Collector, Faults, LogView, PointValue, Protocol, ServerTls, SpanView},
    python, python_http_server, report, signed_certificate,
};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const SECRET: &str = "otlp-s3cr3t-key";

/// JSON-line keys that are span fields rather than attributes.
const SPAN_FIELDS: &[&str] = &[
    "timestamp",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "duration_ns",
    "span.kind",
];

const SPEC: &str = "openapi: 3.0.3
info: {title: files, version: '1'}
paths:
  /hello.txt:
    get:
      responses:
        '200': {description: ok}
";

/// A file server named `files` by a service rule, its spec documenting `/hello.txt` only,
/// and an agent exporting to `endpoint` with `protocol`.
struct Setup {
    server: Program,
    /// A process with OpenSSL loaded and no connection: its TLS status is `ready`.
    tls_idle: Program,
    port: u16,
    agent: Agent,
    _site: tempfile::TempDir,
    _config: tempfile::TempDir,
}

fn setup(protocol: Protocol, otlp_port: u16, otlp_extra: &str) -> Setup {
    setup_with_endpoint(protocol, Some(&Collector::endpoint(otlp_port)), otlp_extra)
}

/// [`setup`] with the `[otlp]` endpoint given (or left to `otlp_extra` when `None`).
fn setup_with_endpoint(protocol: Protocol, endpoint: Option<&str>, otlp_extra: &str) -> Setup {
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("hello.txt"), "hello\n").unwrap();
    std::fs::write(site.path().join("other.txt"), "other\n").unwrap();
    let (server, port) = python_http_server(site.path(), "127.0.0.1");
    let mut tls_idle = Program::spawn(python(&[
        "-c",
        "import ssl, sys, time; print('ready', flush=True); time.sleep(600)",
    ]));
    assert_eq!(tls_idle.line(), "ready");
    let config_dir = tempfile::tempdir().unwrap();
    std::fs::write(config_dir.path().join("files.yaml"), SPEC).unwrap();
    let config = config_dir.path().join("sightline.toml");
    std::fs::write(
        &config,
        format!(
            "[[service_rules]]\nname = \"files\"\nport = {port}\n\n\
             [[api_specs]]\npath = \"files.yaml\"\nservice = \"files\"\n\n\
             [otlp]\n{endpoint}protocol = {protocol:?}\n\
             metrics_interval_seconds = 1\n{otlp_extra}\n\
             [otlp.resource_attributes]\n\"deployment.environment.name\" = \"test\"\n",
            endpoint = endpoint.map_or(String::new(), |e| format!("endpoint = {e:?}\n")),
            protocol = protocol.setting(),
        ),
    )
    .unwrap();
    let port_arg = port.to_string();
    let agent = Agent::with_config(&config, &["--port", &port_arg]);
    Setup {
        server,
        tls_idle,
        port,
        agent,
        _site: site,
        _config: config_dir,
    }
}

fn kernel_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// Compression and a header (a tenant id, as hosted backends want), for every signal.
const GZIP_AND_TENANT: &str = "compression = \"gzip\"\nheaders = { \"x-tenant\" = \"t1\" }";

#[test]
fn exports_calls_metrics_and_logs_over_grpc_with_gzip() {
    exports_everything(Protocol::Grpc, GZIP_AND_TENANT);
}

/// Compressed, as most deployments send to a remote collector.
#[test]
fn exports_calls_metrics_and_logs_over_http_protobuf_with_gzip() {
    exports_everything(Protocol::HttpProtobuf, GZIP_AND_TENANT);
}

fn exports_everything(protocol: Protocol, otlp_extra: &str) {
    let otlp_port = free_port();
    let collector = Collector::start(protocol, otlp_port);
    // Bound whole: its directories live as long as the test.
    let mut setup = setup(protocol, otlp_port, otlp_extra);
    let (server, port, agent) = (&setup.server, setup.port, &mut setup.agent);
    let base = format!("http://127.0.0.1:{port}");
    let traceparent = format!("traceparent: 00-{TRACE_ID}-{PARENT_ID}-01");
    curl(&["-H", &traceparent, &format!("{base}/hello.txt")]);
    curl(&[&format!("{base}/other.txt")]);
    curl(&[&format!("{base}/missing.txt")]);
    curl(&[&format!("{base}/hello.txt?api_key={SECRET}")]);
    let calls = agent.collect(port, 4, 4);
    let log = agent.stderr();
    let findings = agent.findings();
    let inventory = Agent::inventory(&agent.db());
    let changes: Vec<Value> =
        serde_json::from_slice(&report("changes", &agent.db(), &["--format", "json"])).unwrap();

    // Spans: one per call seen at each end, with the JSON line's attributes.
    let spans: Vec<SpanView> = collector
        .spans()
        .into_iter()
        .filter(|s| s.attributes.get("server.port") == Some(&json!(port)))
        .collect();
    let json_calls: Vec<&Value> = calls_on_port(&calls, "server", port)
        .into_iter()
        .chain(calls_on_port(&calls, "client", port))
        .collect();
    assert_eq!(json_calls.len(), 8, "{calls:#?}");
    assert_eq!(spans.len(), 8, "{spans:#?}");
    for call in &json_calls {
        let span = matching_span(&spans, call);
        assert_same_fields(call, span);
        assert_eq!(span.scope, "sightline");
        assert_eq!(span.resource["host.name"], json!(kernel_host_name()));
        assert_eq!(span.resource["deployment.environment.name"], "test");
        // A client's call to a server of this host is counted (and templated) at the server.
        let name = match call.get("http.route") {
            Some(route) => format!("GET {}", route.as_str().unwrap()),
            None => "GET".to_string(),
        };
        assert_eq!(span.name, name);
    }
    let server_span = |path: &str, query: Option<&str>| {
        spans
            .iter()
            .find(|s| {
                s.kind == 2
                    && s.attributes["url.path"] == path
                    && s.attributes.get("url.query").and_then(Value::as_str) == query
            })
            .unwrap_or_else(|| panic!("no server span for {path} {query:?}: {spans:#?}"))
    };
    let hello = server_span("/hello.txt", None);
    assert_eq!(hello.resource["service.name"], "files");
    assert_eq!(hello.resource["process.pid"], json!(server.pid()));
    assert_eq!(hello.attributes["http.route"], "/hello.txt");
    // The traced request joined its caller's trace, at both ends; the others started theirs.
    let traced: Vec<&SpanView> = spans.iter().filter(|s| s.trace_id == TRACE_ID).collect();
    assert_eq!(traced.len(), 2, "{spans:#?}");
    assert!(traced.iter().all(|s| s.parent_span_id == PARENT_ID));
    assert!(
        traced
            .iter()
            .all(|s| s.attributes["url.path"] == "/hello.txt")
    );
    let untraced: Vec<&SpanView> = spans.iter().filter(|s| s.trace_id != TRACE_ID).collect();
    assert!(untraced.iter().all(|s| s.parent_span_id.is_empty()));
    let mut trace_ids: Vec<&str> = untraced.iter().map(|s| s.trace_id.as_str()).collect();
    trace_ids.sort_unstable();
    trace_ids.dedup();
    assert_eq!(trace_ids.len(), 6);
    // A 404 is an error for the client, not for the server.
    let missing: Vec<&SpanView> = spans
        .iter()
        .filter(|s| s.attributes["url.path"] == "/missing.txt")
        .collect();
    let status = |kind: i32| missing.iter().find(|s| s.kind == kind).unwrap().status_code;
    assert_eq!((status(2), status(3)), (0, 2));

    // Metrics: the server durations by route and status are the calls made.
    let durations = collector.metric("http.server.request.duration").unwrap();
    assert_eq!(durations.unit, "s");
    assert_eq!(durations.resource["service.name"], "sightline");
    assert_eq!(durations.resource["host.name"], json!(kernel_host_name()));
    let mut expected: BTreeMap<(String, i64), (u64, f64)> = BTreeMap::new();
    for call in calls_on_port(&calls, "server", port) {
        let key = (
            call["http.route"].as_str().unwrap().to_string(),
            call["http.response.status_code"].as_i64().unwrap(),
        );
        let entry = expected.entry(key).or_default();
        entry.0 += 1;
        entry.1 += call["duration_ns"].as_u64().unwrap() as f64 / 1e9;
    }
    assert_eq!(
        expected.keys().cloned().collect::<Vec<_>>(),
        [
            ("/hello.txt".to_string(), 200),
            ("/missing.txt".to_string(), 404),
            ("/other.txt".to_string(), 200)
        ]
    );
    for ((route, status), (count, sum)) in &expected {
        let points = durations.select(&[
            ("service.name", json!("files")),
            ("http.route", json!(route)),
            ("http.response.status_code", json!(status)),
            ("http.request.method", json!("GET")),
        ]);
        assert_eq!(points.len(), 1, "{route} {status}: {points:#?}");
        let PointValue::Histogram {
            count: got,
            sum: got_sum,
            bounds,
            counts,
        } = &points[0].value
        else {
            panic!("not a histogram: {points:?}");
        };
        assert_eq!(got, count, "{route} {status}");
        assert!((got_sum - sum).abs() < 1e-9, "{route}: {got_sum} != {sum}");
        assert_eq!(counts.iter().sum::<u64>(), *count);
        assert_eq!(
            bounds,
            &[
                0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0
            ]
        );
    }
    let client = collector.metric("http.client.request.duration").unwrap();
    let client_count: u64 = client
        .select(&[("server.port", json!(port))])
        .iter()
        .map(|p| match p.value {
            PointValue::Histogram { count, .. } => count,
            _ => 0,
        })
        .sum();
    assert_eq!(client_count, 4);
    // Inventory gauges: the stored inventory, by class.
    let endpoints = collector.metric("sightline.inventory.endpoints").unwrap();
    let mut classes: BTreeMap<String, i64> = BTreeMap::new();
    for endpoint in inventory.iter().filter(|e| e["api"] == "files") {
        *classes
            .entry(endpoint["class"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(classes.get("documented"), Some(&1));
    assert_eq!(classes.get("shadow"), Some(&2));
    for (class, n) in &classes {
        let points = endpoints.select(&[
            ("service.name", json!("files")),
            ("sightline.inventory.class", json!(class)),
        ]);
        assert_eq!(points.len(), 1, "{class}: {points:#?}");
        assert_eq!(points[0].value, PointValue::Int(*n), "{class}");
    }
    // Findings counted by rule, as raised.
    let raised = collector.metric("sightline.findings.raised").unwrap();
    let mut by_rule: BTreeMap<String, i64> = BTreeMap::new();
    for finding in &findings {
        *by_rule
            .entry(
                finding["sightline.finding.rule_id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
            .or_default() += 1;
    }
    assert!(by_rule.contains_key("SL-AUTH-003"), "{findings:#?}");
    assert!(by_rule.contains_key("SL-INV-001"), "{findings:#?}");
    for (rule, n) in &by_rule {
        let total: i64 = raised
            .select(&[("sightline.finding.rule_id", json!(rule))])
            .iter()
            .map(|p| match p.value {
                PointValue::Int(i) => i,
                _ => 0,
            })
            .sum();
        assert_eq!(total, *n, "{rule}");
    }
    // Health: the last export ran after the last event, so it has the final counts.
    let captured = collector.metric("sightline.events.captured").unwrap();
    assert_eq!(
        captured.points[0].value,
        PointValue::Int(counter(&log, "events_read") as i64)
    );
    let dropped = collector.metric("sightline.events.dropped").unwrap();
    for stage in [
        "kernel_ringbuf_full_data",
        "capture_queue",
        "sink_queue",
        "otlp_traces",
    ] {
        assert_eq!(
            dropped
                .select(&[("sightline.drop.stage", json!(stage))])
                .len(),
            1,
            "{stage}"
        );
    }
    // Every capture feature the kernel accepted, each once, on (1).
    let features = collector.metric("sightline.probes.feature").unwrap();
    let mut seen: Vec<String> = features
        .points
        .iter()
        .map(|p| {
            assert_eq!(p.value, PointValue::Int(1), "{p:?}");
            assert_eq!(p.attributes["sightline.probes.feature.state"], "on");
            p.attributes["sightline.probes.feature"].to_string()
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            "\"capture\"",
            "\"go_tls\"",
            "\"library_loads\"",
            "\"process_events\"",
            "\"tls_libraries\""
        ]
    );
    let memory = collector.metric("process.memory.usage").unwrap();
    assert_eq!(memory.unit, "By");
    assert!(matches!(memory.points[0].value, PointValue::Int(n) if n > 1_000_000));
    assert_eq!(
        counter(&log, "otlp_metric_export_failures")
            + counter(&log, "otlp_trace_export_failures")
            + counter(&log, "otlp_log_export_failures"),
        0,
        "{log}"
    );

    // Logs: each finding, and each endpoint discovered.
    let logs = collector.logs();
    let finding_logs: Vec<&LogView> = logs
        .iter()
        .filter(|l| l.event_name == "sightline.finding")
        .collect();
    assert_eq!(finding_logs.len(), findings.len(), "{finding_logs:#?}");
    for finding in &findings {
        let log = finding_logs
            .iter()
            .find(|l| {
                [
                    "sightline.finding.rule_id",
                    "http.route",
                    "service.name",
                    "sightline.finding.client",
                ]
                .iter()
                .all(|k| l.attributes.get(*k) == finding.get(*k))
            })
            .unwrap_or_else(|| panic!("no log record for {finding:#}"));
        assert_eq!(
            log.attributes["sightline.finding.severity"],
            finding["sightline.finding.severity"]
        );
        assert_eq!(log.resource["service.name"], "sightline");
        assert!(
            log.body
                .as_str()
                .unwrap()
                .contains(finding["http.route"].as_str().unwrap())
        );
    }
    let endpoint_logs: Vec<&LogView> = logs
        .iter()
        .filter(|l| {
            l.event_name == "sightline.inventory.endpoint"
                && l.attributes["service.name"] == "files"
        })
        .collect();
    let files: Vec<&Value> = inventory.iter().filter(|e| e["api"] == "files").collect();
    assert_eq!(endpoint_logs.len(), files.len(), "{endpoint_logs:#?}");
    for endpoint in files {
        let log = endpoint_logs
            .iter()
            .find(|l| l.attributes["http.route"] == endpoint["route"])
            .unwrap_or_else(|| panic!("no log record for {endpoint:#}"));
        assert_eq!(log.attributes["http.request.method"], endpoint["method"]);
        assert_eq!(
            log.attributes["sightline.inventory.class"],
            endpoint["class"]
        );
        assert_eq!(log.attributes["sightline.inventory.change"], "discovered");
        let warn = endpoint["class"] == "shadow";
        assert_eq!(log.severity_number, if warn { 13 } else { 9 });
    }
    // Each change of the endpoints' history (here each one's first call), once.
    let change_logs: Vec<&LogView> = logs
        .iter()
        .filter(|l| l.event_name == "sightline.inventory.change")
        .collect();
    assert_eq!(change_logs.len(), changes.len(), "{change_logs:#?}");
    let new_files = changes
        .iter()
        .filter(|c| c["service.name"] == "files" && c["sightline.change.kind"] == "new-endpoint")
        .count();
    let file_endpoints = inventory.iter().filter(|e| e["api"] == "files").count();
    assert_eq!(new_files, file_endpoints, "{changes:#?}");
    for change in &changes {
        let keys = [
            "service.name",
            "http.request.method",
            "http.route",
            "sightline.change.kind",
            "sightline.change.detail",
        ];
        let log = change_logs
            .iter()
            .find(|l| keys.iter().all(|k| l.attributes.get(*k) == change.get(*k)))
            .unwrap_or_else(|| panic!("no log record for {change:#}"));
        assert_eq!(log.time_ns, change["time_unix_nano"].as_u64().unwrap());
        assert_eq!(log.severity_number, 9);
    }

    let tls = collector.metric("sightline.tls.process.status").unwrap();
    let idle = tls.select(&[("process.pid", json!(setup.tls_idle.pid()))]);
    assert_eq!(idle.len(), 1, "{tls:#?}");
    assert_eq!(idle[0].attributes["sightline.tls.status"], "ready");

    // The dashboards query only what this run exported.
    let problems = dashboards::check(&dashboards::Exported::from(&collector));
    assert!(problems.is_empty(), "dashboards:\n{}", problems.join("\n"));
    assert_eq!(dashboards::check_collector_config(), Vec::<String>::new());

    // Every request of every signal carried the header, compressed.
    let tenants = collector.with(|r| r.tenants.clone());
    for signal in ["traces", "metrics", "logs"] {
        assert!(tenants.iter().any(|(s, _)| *s == signal), "{tenants:?}");
    }
    assert!(
        tenants.iter().all(|(_, t)| t.as_deref() == Some("t1")),
        "{tenants:?}"
    );
    assert_eq!(collector.with(|r| r.gzip_requests), tenants.len());

    // The key sent in the URL reached no export.
    assert!(!collector.dump().contains(SECRET));
    assert!(!collector.dump().contains("otlp-s3cr3t"));
}

/// The span of a JSON call: same kind and the same start and end.
fn matching_span<'a>(spans: &'a [SpanView], call: &Value) -> &'a SpanView {
    let kind = if call["span.kind"] == "server" { 2 } else { 3 };
    let start = call["start_time_unix_nano"].as_u64().unwrap();
    let end = call["end_time_unix_nano"].as_u64().unwrap();
    let found: Vec<&SpanView> = spans
        .iter()
        .filter(|s| s.kind == kind && s.start_ns == start && s.end_ns == end)
        .collect();
    assert_eq!(found.len(), 1, "spans for {call:#}: {spans:#?}");
    found[0]
}

/// Every field of the JSON line is a span attribute or, for the observing end's identity, a
/// resource attribute, with the same value; the span has nothing the line does not.
fn assert_same_fields(call: &Value, span: &SpanView) {
    let fields = call.as_object().unwrap();
    for (key, value) in fields {
        if SPAN_FIELDS.contains(&key.as_str()) {
            continue;
        }
        let exported = span
            .attributes
            .get(key)
            .or_else(|| span.resource.get(key))
            .unwrap_or_else(|| panic!("{key} missing from the span {span:#?}"));
        assert_eq!(exported, value, "{key}");
    }
    for (key, value) in &span.attributes {
        assert_eq!(fields.get(key), Some(value), "span attribute {key}");
    }
    for (key, value) in &span.resource {
        if key != "deployment.environment.name" {
            assert_eq!(fields.get(key), Some(value), "resource attribute {key}");
        }
    }
}

/// TLS to the collector: an `https://` endpoint and the collector's certificate authority from
/// the config file (a test CA signed the collector's certificate for 127.0.0.1); with mTLS, the
/// collector also requires the agent's client certificate (signed by the same CA).
#[test]
fn exports_over_grpc_with_tls_to_a_collector_with_its_own_certificate_authority() {
    exports_over_tls(Protocol::Grpc, false);
}

#[test]
fn exports_over_http_with_mutual_tls() {
    exports_over_tls(Protocol::HttpProtobuf, true);
}

#[test]
fn exports_over_grpc_with_mutual_tls() {
    exports_over_tls(Protocol::Grpc, true);
}

fn exports_over_tls(protocol: Protocol, mutual: bool) {
    let otlp_port = free_port();
    let certificate = signed_certificate();
    let tls = ServerTls {
        cert: certificate.cert.clone(),
        key: certificate.key.clone(),
        client_ca: mutual.then(|| certificate.ca.clone()),
    };
    let collector = Collector::start_with_tls(protocol, otlp_port, Some(&tls));
    if mutual {
        // The collector really refuses a client without a certificate.
        let refused = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "--cacert"])
            .arg(&certificate.ca)
            .arg(format!("https://127.0.0.1:{otlp_port}/v1/traces"))
            .status()
            .unwrap();
        assert!(!refused.success());
    }
    let mut extra = format!(
        "endpoint = \"https://127.0.0.1:{otlp_port}\"\ncertificate = {:?}\n",
        certificate.ca.to_str().unwrap()
    );
    if mutual {
        extra += &format!(
            "client_certificate = {:?}\nclient_key = {:?}\n",
            certificate.client_cert.to_str().unwrap(),
            certificate.client_key.to_str().unwrap()
        );
    }
    // The endpoint comes with the certificate (a TOML key may be given only once).
    let mut setup = setup_with_endpoint(protocol, None, &extra);
    let port = setup.port;
    curl(&[&format!("http://127.0.0.1:{port}/hello.txt")]);
    setup.agent.collect(port, 1, 1);
    let spans = collector.spans();
    let served: Vec<&SpanView> = spans
        .iter()
        .filter(|s| s.kind == 2 && s.attributes.get("server.port") == Some(&json!(port)))
        .collect();
    assert_eq!(served.len(), 1, "{spans:#?}");
    assert_eq!(served[0].attributes["url.path"], "/hello.txt");
    assert!(collector.metric("http.server.request.duration").is_some());
}

/// The collector is unreachable while 250 calls are made (500 spans): the span queue (50)
/// and the batch being retried (10) hold what they can, the rest is dropped and counted; once
/// a collector listens on the port, what was held arrives, then new calls, and the metrics'
/// totals include the calls made while it was down.
#[test]
fn a_collector_that_comes_back_gets_what_the_queue_held() {
    let otlp_port = free_port();
    let mut setup = setup(
        Protocol::Grpc,
        otlp_port,
        "span_queue = 50\nlog_queue = 50\nbatch_size = 10",
    );
    let (port, agent) = (setup.port, &mut setup.agent);
    let base = format!("http://127.0.0.1:{port}");
    // One curl, 250 requests on one connection.
    curl(&["-o", "/dev/null", &format!("{base}/hello.txt?n=[1-250]")]);
    agent.wait_for_calls("the calls made while the collector is down", |c| {
        calls_on_port(c, "server", port).len() == 250
            && calls_on_port(c, "client", port).len() == 250
    });
    agent.wait_until("failed span and metric exports", |a| {
        let log = a.stderr();
        log.contains("OTLP export failed") && log.contains("OTLP metrics export failed")
    });

    let collector = Collector::start(Protocol::Grpc, otlp_port);
    collector.wait_until("spans held in the queue", |c| !c.spans().is_empty());
    drain_then_export_five_more(&collector, &base, 1);
    let log = agent.stop();

    let spans = collector.spans();
    let held = spans.iter().filter(|s| !is_after(s)).count();
    assert!(
        held > 0 && held <= 60,
        "{held} spans held for a queue of 50 and a batch of 10"
    );
    let exported = counter(&log, "otlp_spans_exported");
    let dropped = counter(&log, "otlp_spans_dropped");
    assert_eq!(exported as usize, spans.len());
    assert_eq!(exported + dropped, 510, "{log}");
    assert!(counter(&log, "otlp_trace_export_failures") > 0);
    assert!(counter(&log, "otlp_metric_export_failures") > 0);
    // Cumulative metrics: the totals include the calls made while the collector was down.
    let durations = collector.metric("http.server.request.duration").unwrap();
    let count: u64 = durations
        .select(&[("service.name", json!("files"))])
        .iter()
        .map(|p| match p.value {
            PointValue::Histogram { count, .. } => count,
            _ => 0,
        })
        .sum();
    assert_eq!(count, 255);
    let dropped_metric = collector.metric("sightline.events.dropped").unwrap();
    let otlp_drops = dropped_metric.select(&[("sightline.drop.stage", json!("otlp_traces"))]);
    assert_eq!(otlp_drops[0].value, PointValue::Int(dropped as i64));
}

/// Waits until the queue has drained (no span for `quiet_secs`: calls made while it is still
/// full would be dropped, by design, and the test would wait for spans never to come), then
/// makes five calls (`?after=`) and waits for their ten spans.
fn drain_then_export_five_more(collector: &Collector, base: &str, quiet_secs: u64) {
    let last = std::cell::Cell::new((collector.spans().len(), std::time::Instant::now()));
    collector.wait_until("the held spans to stop arriving", |c| {
        let n = c.spans().len();
        if n != last.get().0 {
            last.set((n, std::time::Instant::now()));
        }
        last.get().1.elapsed() > std::time::Duration::from_secs(quiet_secs)
    });
    curl(&["-o", "/dev/null", &format!("{base}/hello.txt?after=[1-5]")]);
    collector.wait_until("the spans of the calls made after", |c| {
        c.spans().iter().filter(|s| is_after(s)).count() == 10
    });
}

/// A span of a call made by [`drain_then_export_five_more`].
fn is_after(span: &SpanView) -> bool {
    span.attributes
        .get("url.query")
        .and_then(Value::as_str)
        .is_some_and(|q| q.starts_with("after="))
}

#[test]
fn a_collector_answering_errors_then_slowly_over_grpc() {
    a_collector_answering_errors_then_slowly(Protocol::Grpc);
}

#[test]
fn a_collector_answering_errors_then_slowly_over_http() {
    a_collector_answering_errors_then_slowly(Protocol::HttpProtobuf);
}

/// The collector refuses its first 20 requests (a retryable error), then answers each one
/// 1.5 s late, while 250 requests are made (500 calls: both ends); then it recovers.
/// (Refused requests are not kept, so a span the collector has was accepted once.)
fn a_collector_answering_errors_then_slowly(protocol: Protocol) {
    let otlp_port = free_port();
    let collector = Collector::start(protocol, otlp_port);
    collector.set_faults(Faults {
        errors: 20,
        delay: std::time::Duration::from_millis(1500),
    });
    let mut setup = setup(
        protocol,
        otlp_port,
        "span_queue = 50\nlog_queue = 50\nbatch_size = 10",
    );
    let (port, agent) = (setup.port, &mut setup.agent);
    let before = agent.rss_kib();
    let base = format!("http://127.0.0.1:{port}");
    curl(&["-o", "/dev/null", &format!("{base}/hello.txt?n=[1-250]")]);
    // Capture does not wait for the exporter: every call, at both ends.
    agent.wait_for_calls("every call while the collector misbehaves", |c| {
        calls_on_port(c, "server", port).len() == 250
            && calls_on_port(c, "client", port).len() == 250
    });
    collector.wait_until("all 20 errors answered", |c| c.with(|r| r.refused) == 20);
    let peak = agent.rss_kib();

    // Recovered: what is queued drains, then new calls are exported as they come.
    collector.set_faults(Faults::default());
    drain_then_export_five_more(&collector, &base, 2);
    let log = agent.stop();
    let calls = agent.calls();
    assert_eq!(calls_on_port(&calls, "server", port).len(), 255);
    assert_eq!(calls_on_port(&calls, "client", port).len(), 255);

    // Every span was either delivered once or counted as dropped. Failed exports are counted:
    // the exporter retries a refused request itself a few times before an export fails, so
    // there are fewer failures than refusals, but never none.
    let spans = collector.spans();
    let exported = counter(&log, "otlp_spans_exported");
    let dropped = counter(&log, "otlp_spans_dropped");
    assert_eq!(exported as usize, spans.len(), "{log}");
    assert_eq!(exported + dropped, 510, "{log}");
    assert!(
        dropped > 0,
        "a queue of 50 and a slow collector drop spans: {log}"
    );
    let failures = counter(&log, "otlp_trace_export_failures")
        + counter(&log, "otlp_log_export_failures")
        + counter(&log, "otlp_metric_export_failures");
    assert!((1..=20).contains(&failures), "{failures} failures\n{log}");
    // Each span once: the refused batches were sent again, never twice after success.
    let mut ids: Vec<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), spans.len());
    // Bounded: the queues are small, whatever the collector does.
    assert!(
        peak < before + 32 * 1024,
        "RSS rose from {before} KiB to {peak} KiB while the collector misbehaved"
    );
}

/// gRPC calls (Debian's grpcio, cleartext) export as RPC spans and metrics: spans named
/// `{service}/{method}` with the JSON line's `rpc.*` attributes, gRPC error rules (NOT_FOUND
/// fails the client's span only), and `rpc.{server,client}.call.duration` by method and status.
#[test]
fn exports_grpc_calls_as_rpc_spans_and_metrics() {
    let otlp_port = free_port();
    let collector = Collector::start(Protocol::Grpc, otlp_port);
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("sightline.toml");
    std::fs::write(
        &config,
        format!(
            "[otlp]\nendpoint = {:?}\nmetrics_interval_seconds = 1\n",
            Collector::endpoint(otlp_port)
        ),
    )
    .unwrap();
    let port = free_port();
    let port_arg = port.to_string();
    let mut agent = Agent::with_config(&config, &["--port", &port_arg]);
    let demo = sightline_tests::fixture("grpc_demo.py");
    let mut server = Program::spawn({
        let mut cmd = std::process::Command::new("/usr/bin/python3");
        cmd.arg(&demo).args(["serve", &port_arg]);
        cmd
    });
    assert_eq!(server.line(), "ready");
    let client = Program::spawn({
        let mut cmd = std::process::Command::new("/usr/bin/python3");
        cmd.arg(&demo).args(["call", &port_arg]);
        cmd
    });
    assert_eq!(client.finish().len(), 5);
    let calls = agent.collect(port, 5, 5);
    let spans = collector.spans();
    for call in &calls {
        let span = matching_span(&spans, call);
        assert_same_fields(call, span);
        let method = call["rpc.method"].as_str().unwrap();
        assert_eq!(span.name, format!("demo.Echo/{method}"));
        let not_found = call["rpc.grpc.status_code"] == 5;
        let failed = not_found && call["span.kind"] == "client";
        assert_eq!(span.status_code, if failed { 2 } else { 0 }, "{call:#}");
    }
    collector.wait_until("the rpc duration metrics", |c| {
        c.metric("rpc.server.call.duration").is_some()
            && c.metric("rpc.client.call.duration").is_some()
    });
    for (name, kind) in [
        ("rpc.server.call.duration", "server"),
        ("rpc.client.call.duration", "client"),
    ] {
        let metric = collector.metric(name).unwrap();
        assert_eq!(metric.unit, "s");
        for (method, status, count) in [
            ("Say", 0, 1),
            ("Say", 5, 1),
            ("Collect", 0, 1),
            ("Split", 0, 1),
            ("Chat", 0, 1),
        ] {
            let points = metric.select(&[
                ("rpc.system", json!("grpc")),
                ("rpc.service", json!("demo.Echo")),
                ("rpc.method", json!(method)),
                ("rpc.grpc.status_code", json!(status)),
            ]);
            assert_eq!(points.len(), 1, "{name} {method} {status}: {metric:#?}");
            let PointValue::Histogram { count: n, .. } = points[0].value else {
                panic!("{name} is not a histogram");
            };
            assert_eq!(n, count, "{kind} {method} {status}");
            // Only the client's NOT_FOUND is an error (gRPC server rules).
            let error = points[0].attributes.get("error.type");
            let expected = (status == 5 && kind == "client").then(|| json!("5"));
            assert_eq!(error, expected.as_ref(), "{kind} {method} {status}");
        }
    }
}
