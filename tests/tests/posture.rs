//! API posture from real traffic (a Python http.server orders API called by curl, nginx in
//! front of it, clients in network namespaces): what changed between two versions of the
//! API, where each endpoint's callers come from and its risk score with its reasons, and
//! objects read by credentials the API never gave their ids.
#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::Value;
use sightline_tests::{
    Agent, Program, calls_on_port, cgroups::TestCgroup, curl, curl_status, free_port,
    netns::TwoHosts, python_api, report, signal, wait_for_port,
};

const ALICE: &str = "Authorization: Bearer alice-token";
const BOB: &str = "Authorization: Bearer bob-token";

fn orders_api(bind: &str, port: u16, ns: Option<&str>) -> Program {
    python_api("orders_api.py", bind, port, ns)
}

/// An endpoint gone quiet after 4 s; an object read by 3 credentials never given it.
fn config(dir: &Path) -> PathBuf {
    let path = dir.join("sightline.toml");
    std::fs::write(
        &path,
        "[inventory]\nquiet_after_seconds = 4\n\n\
         [findings.rules.object-read-by-many]\nthreshold = 3\n",
    )
    .unwrap();
    path
}

fn json_report(subcommand: &str, db: &Path, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    serde_json::from_slice(&report(subcommand, db, &all)).unwrap()
}

/// (method, route, kind, detail) of each change; a gone-quiet's time is left out.
fn change_rows(changes: &[Value]) -> Vec<(String, String, String, String)> {
    let mut rows: Vec<(String, String, String, String)> = changes
        .iter()
        .map(|c| {
            let text = |key: &str| c[key].as_str().unwrap().to_string();
            let mut detail = text("sightline.change.detail");
            if text("sightline.change.kind") == "gone-quiet" {
                assert!(detail.starts_with("last called 20"), "{c}");
                detail = "last called …".into();
            }
            (
                text("http.request.method"),
                text("http.route"),
                text("sightline.change.kind"),
                detail,
            )
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn changes_between_two_versions_of_an_api_are_exactly_what_changed() {
    let port = free_port();
    let server = orders_api("127.0.0.1", port, None);
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::with_config(&config(dir.path()), &[]);
    let db = agent.db();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let json = "Content-Type: application/json";
    // Version 1: the health check first (it goes quiet), then six calls of each endpoint
    // (the first five set each endpoint's baseline).
    for _ in 0..6 {
        curl(&[&url("/api/health")]);
    }
    for i in 0..6 {
        curl(&["-H", ALICE, &url("/api/orders")]);
        curl(&["-H", ALICE, &url(&format!("/api/orders/{}", 101 + i % 2))]);
        let order = r#"{"item":"book","qty":1}"#;
        curl(&["-H", ALICE, "-H", json, "-d", order, &url("/api/orders")]);
    }
    agent.wait_for_calls("version 1's calls", |c| {
        calls_on_port(c, "server", port).len() == 24
    });
    // Version 2: an order has a card's last digits instead of its status, one order fails,
    // orders take a coupon, an export appears, a new client and an API key show up.
    signal(server.pid(), libc::SIGUSR1);
    let reports_job = dir.path().join("reports-job");
    std::fs::copy("/usr/bin/curl", &reports_job).unwrap();
    let start = Instant::now();
    for round in 0.. {
        curl(&["-H", ALICE, "-H", "X-Api-Key: k-7", &url("/api/orders")]);
        curl(&["-H", ALICE, &url("/api/orders/101")]);
        assert_eq!(
            curl_status(None, &["-H", ALICE, &url("/api/orders/13")]),
            "500"
        );
        let order = r#"{"item":"book","qty":1,"coupon":"SPRING"}"#;
        curl(&["-H", ALICE, "-H", json, "-d", order, &url("/api/orders")]);
        curl(&["-H", ALICE, &url("/api/export")]);
        if round == 0 {
            let out = std::process::Command::new(&reports_job)
                .args(["-s", "-H", ALICE, &url("/api/orders")])
                .output()
                .unwrap();
            assert!(out.status.success());
        }
        let quiet = json_report("changes", &db, &[])
            .iter()
            .any(|c| c["sightline.change.kind"] == "gone-quiet");
        if round >= 6 && quiet {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the health check never went quiet:\n{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    agent.stop();
    let stored = json_report("changes", &db, &[]);
    let row = |method: &str, route: &str, kind: &str, detail: &str| {
        (method.into(), route.into(), kind.into(), detail.into())
    };
    let mut expected = vec![
        row("GET", "/api/health", "new-endpoint", ""),
        row("GET", "/api/orders", "new-endpoint", ""),
        row("GET", "/api/orders/{id}", "new-endpoint", ""),
        row("POST", "/api/orders", "new-endpoint", ""),
        row("GET", "/api/export", "new-endpoint", ""),
        row("GET", "/api/health", "gone-quiet", "last called …"),
        row(
            "GET",
            "/api/orders",
            "new-auth-scheme",
            "api-key-header:x-api-key",
        ),
        row("GET", "/api/orders", "new-client", "reports-job"),
        row("GET", "/api/orders", "new-response-field", "[].card_last4"),
        row("GET", "/api/orders", "removed-response-field", "[].status"),
        row("GET", "/api/orders/{id}", "new-status-class", "5xx"),
        row(
            "GET",
            "/api/orders/{id}",
            "new-response-field",
            "card_last4",
        ),
        row(
            "GET",
            "/api/orders/{id}",
            "removed-response-field",
            "status",
        ),
        row("POST", "/api/orders", "new-request-field", "coupon"),
    ];
    expected.sort();
    assert_eq!(change_rows(&stored), expected, "{stored:#?}");
    // The same changes went out as events (JSON lines here; OTLP log records alike).
    assert_eq!(change_rows(&agent.changes()), expected);
    // Filters: by service, and by age.
    let service = stored[0]["service.name"].as_str().unwrap();
    assert_eq!(
        json_report("changes", &db, &["--service", service]).len(),
        expected.len()
    );
    assert!(json_report("changes", &db, &["--service", "nobody"]).is_empty());
    let table = String::from_utf8(report("changes", &db, &["--since", "1h"])).unwrap();
    assert_eq!(table.lines().count(), expected.len() + 1, "{table}");
    assert!(
        table.lines().any(|l| l.contains("/api/orders/{id}")
            && l.contains("removed-response-field")
            && l.ends_with(" status")),
        "{table}"
    );
}

/// nginx in `ns` on `listen`, forwarding to `127.0.0.1:upstream` with X-Forwarded-For.
fn nginx_proxy(ns: &str, listen: &str, upstream: u16) -> (Program, tempfile::TempDir) {
    let prefix = tempfile::tempdir().unwrap();
    let p = prefix.path().display();
    let conf = prefix.path().join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\ndaemon off;\nmaster_process off;\nerror_log {p}/error.log;\n\
             pid {p}/nginx.pid;\nevents {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {p}/body;\n\
             proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fastcgi;\n\
             uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n\
             server {{\n    listen {listen};\n    location = /ready {{ return 200; }}\n\
             location / {{\n\
             proxy_pass http://127.0.0.1:{upstream};\n\
             proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    }}\n  }}\n}}\n"
        ),
    )
    .unwrap();
    let args = ["-p", &p.to_string(), "-c", conf.to_str().unwrap()];
    (
        Program::spawn(TwoHosts::command(ns, "/usr/sbin/nginx", &args)),
        prefix,
    )
}

/// The endpoint `method route` of the orders API (served by python) in an inventory report.
fn endpoint<'a>(inventory: &'a [Value], api: &str, method: &str, route: &str) -> &'a Value {
    inventory
        .iter()
        .find(|e| e["api"] == api && e["method"] == method && e["route"] == route)
        .unwrap_or_else(|| panic!("{method} {route} of {api} not in {inventory:#?}"))
}

fn reasons(endpoint: &Value) -> (f64, Vec<(f64, String)>) {
    let risk = &endpoint["risk"];
    let reasons = risk["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["points"].as_f64().unwrap(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (risk["score"].as_f64().unwrap(), reasons)
}

/// `curl -s -o /dev/null -w %{http_code} ARGS` in network namespace `ns` and cgroup
/// `outside`; the HTTP status it got.
fn curl_from(outside: &TestCgroup, ns: &str, args: &[&str]) -> String {
    let quoted: Vec<String> = args
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    let out = outside
        .command(&format!(
            "ip netns exec {ns} curl -s -o /dev/null -w %{{http_code}} {}",
            quoted.join(" ")
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn exposure_follows_the_callers_address_and_a_local_proxy_and_scores_give_their_reasons() {
    // Host A serves; host B calls from a public-looking address (203.0.113.2, documentation
    // space: not private, so the internet) and from a private one (10.77.0.2). B's programs
    // run in a cgroup the agent does not capture: to the agent they are another machine (a
    // process it sees on this host, in any namespace, is this host).
    let hosts = TwoHosts::create_in("203.0.113", 0);
    hosts.add_subnet("10.77.0.1/24", "10.77.0.2/24");
    let outside = TestCgroup::create(&format!("sightline-outside-{}", std::process::id()));
    let (port, proxy_port) = (free_port(), free_port());
    let _api = orders_api("0.0.0.0", port, Some(&hosts.a));
    let (_nginx, _prefix) = nginx_proxy(&hosts.a, &format!("203.0.113.1:{proxy_port}"), port);
    let mut agent = Agent::start(&["--exclude-cgroup", &outside.path]);
    let from_b = |args: &[&str]| curl_from(&outside, &hosts.b, args);
    let public = format!("http://203.0.113.1:{port}");
    assert_eq!(
        from_b(&["-d", "x=1", &format!("{public}/api/checkout")]),
        "200"
    );
    assert_eq!(
        from_b(&["-d", "x=2", &format!("{public}/api/checkout")]),
        "200"
    );
    let private = format!("http://10.77.0.1:{port}/api/internal/stats");
    assert_eq!(from_b(&["-H", ALICE, &private]), "200");
    let local = format!("http://127.0.0.1:{port}/api/health");
    assert_eq!(curl_status(Some(&hosts.a), &[&local]), "200");
    // Through nginx on host A: the API sees nginx, and nginx's X-Forwarded-For.
    wait_for_proxy(&hosts.a, proxy_port);
    let proxied = format!("http://203.0.113.1:{proxy_port}/api/orders");
    assert_eq!(from_b(&["-H", ALICE, &proxied]), "200");
    agent.wait_for_calls("the API's five calls and nginx's", |c| {
        calls_on_port(c, "server", port).len() == 5
            && calls_on_port(c, "server", proxy_port)
                .iter()
                .any(|c| c["url.path"] == "/api/orders")
    });
    agent.stop();
    let inventory = json_report("inventory", &agent.db(), &["--sort", "risk"]);
    let api = calls_on_port(&agent.calls(), "server", port)[0]["service.name"]
        .as_str()
        .unwrap()
        .to_string();
    let nginx = calls_on_port(&agent.calls(), "server", proxy_port)[0]["service.name"]
        .as_str()
        .unwrap()
        .to_string();
    let exposure = |e: &Value| {
        (
            e["exposure"].clone(),
            e["external"].clone(),
            e["via"].clone(),
        )
    };
    let checkout = endpoint(&inventory, &api, "POST", "/api/checkout");
    let stats = endpoint(&inventory, &api, "GET", "/api/internal/stats");
    let health = endpoint(&inventory, &api, "GET", "/api/health");
    let orders = endpoint(&inventory, &api, "GET", "/api/orders");
    let front = endpoint(&inventory, &nginx, "GET", "/api/orders");
    let v = |text: &str| -> Value { serde_json::from_str(text).unwrap() };
    assert_eq!(
        exposure(checkout),
        (v(r#"["internet"]"#), v("true"), v("[]"))
    );
    assert_eq!(exposure(stats), (v(r#"["private"]"#), v("false"), v("[]")));
    assert_eq!(exposure(health), (v(r#"["host"]"#), v("false"), v("[]")));
    let via = Value::from(vec![nginx.clone()]);
    assert_eq!(exposure(orders), (v(r#"["internet"]"#), v("true"), via));
    assert_eq!(exposure(front), (v(r#"["internet"]"#), v("true"), v("[]")));
    let owned = |pairs: &[(f64, &str)]| -> Vec<(f64, String)> {
        pairs.iter().map(|(p, r)| (*p, r.to_string())).collect()
    };
    assert_eq!(
        reasons(checkout),
        (
            8.0,
            owned(&[
                (3.0, "called from the internet"),
                (2.0, "2 calls without credentials succeeded where expected"),
                (2.0, "returns payment_card"),
                (1.0, "writes (POST)"),
            ])
        )
    );
    assert_eq!(
        reasons(stats),
        (
            3.0,
            owned(&[
                (1.5, "called from private networks"),
                (1.5, "high finding SL-AUTH-002 cleartext-credentials"),
            ])
        )
    );
    assert_eq!(reasons(health), (0.0, vec![]));
    let through = format!("called from the internet (through {nginx})");
    assert_eq!(reasons(orders), (3.0, owned(&[(3.0, &through)])));
    assert_eq!(
        reasons(front),
        (
            4.5,
            owned(&[
                (3.0, "called from the internet"),
                (1.5, "high finding SL-AUTH-002 cleartext-credentials"),
            ])
        )
    );
    // Riskiest first; --min-risk drops the rest.
    let scores: Vec<f64> = inventory
        .iter()
        .filter_map(|e| e["risk"]["score"].as_f64())
        .collect();
    // nginx's own /ready is the last 0.
    assert_eq!(scores, [8.0, 4.5, 3.0, 3.0, 0.0, 0.0], "{inventory:#?}");
    let risky = json_report("inventory", &agent.db(), &["--min-risk", "4"]);
    let routes: Vec<(&str, &str)> = risky
        .iter()
        .map(|e| (e["api"].as_str().unwrap(), e["route"].as_str().unwrap()))
        .collect();
    assert_eq!(
        routes,
        [
            (nginx.as_str(), "/api/orders"),
            (api.as_str(), "/api/checkout")
        ]
    );
}

/// nginx answers on `port` inside `ns` (itself: the API behind it sees nothing).
fn wait_for_proxy(ns: &str, port: u16) {
    let start = Instant::now();
    let url = format!("http://203.0.113.1:{port}/ready");
    while curl_status(Some(ns), &[&url]) != "200" {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nginx never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn objects_read_by_credentials_never_given_their_ids_are_reported_and_near_misses_are_not() {
    let port = free_port();
    let _server = orders_api("127.0.0.1", port, None);
    wait_for_port(port);
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::with_config(&config(dir.path()), &[]);
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let get = |who: &str, path: &str| curl_status(None, &["-H", who, &url(path)]);
    // Each lists their own orders.
    assert_eq!(get(ALICE, "/api/orders"), "200");
    assert_eq!(get(BOB, "/api/orders"), "200");
    // Near misses: Alice reads what she was given; the API refuses Bob her order 102; Alice
    // reads an order nobody was given.
    assert_eq!(get(ALICE, "/api/orders/101"), "200");
    assert_eq!(get(BOB, "/api/orders/102"), "403");
    assert_eq!(get(ALICE, "/api/orders/999"), "200");
    // Bob reads Alice's order 101.
    assert_eq!(get(BOB, "/api/orders/101"), "200");
    // Three credentials read order 555, which none of them was given.
    for who in ["carol", "dave", "erin"] {
        let header = format!("Authorization: Bearer {who}-token");
        assert_eq!(get(&header, "/api/orders/555"), "200");
    }
    agent.wait_for_calls("nine calls", |c| {
        calls_on_port(c, "server", port).len() == 9
    });
    agent.stop();
    let findings: Vec<Value> = json_report("findings", &agent.db(), &[])
        .into_iter()
        .filter(|f| {
            f["sightline.finding.rule_id"]
                .as_str()
                .unwrap()
                .starts_with("SL-AUTHZ")
        })
        .collect();
    let summary: Vec<(&str, &str, &str, u64, &Value)> = findings
        .iter()
        .map(|f| {
            (
                f["sightline.finding.rule_id"].as_str().unwrap(),
                f["http.route"].as_str().unwrap(),
                f["evidence"]["sample_path"].as_str().unwrap(),
                f["count"].as_u64().unwrap(),
                &f["evidence"],
            )
        })
        .collect();
    assert_eq!(summary.len(), 2, "{findings:#?}");
    let never_given = summary.iter().find(|s| s.0 == "SL-AUTHZ-001").unwrap();
    assert_eq!(
        (never_given.1, never_given.2, never_given.3),
        ("/api/orders/{id}", "/api/orders/101", 1)
    );
    assert_eq!(never_given.4["other_credentials_given_it"], 1);
    let bob = agent
        .calls()
        .into_iter()
        .find(|c| c["url.path"] == "/api/orders/102")
        .unwrap()["sightline.auth.fingerprint"]
        .clone();
    assert_eq!(never_given.4["credential_fingerprint"], bob);
    let many = summary.iter().find(|s| s.0 == "SL-AUTHZ-002").unwrap();
    assert_eq!(
        (many.1, many.2, many.3),
        ("/api/orders/{id}", "/api/orders/555", 1)
    );
    assert_eq!(many.4["distinct_credentials"], 3);
    let text = String::from_utf8(report("findings", &agent.db(), &["--format", "json"])).unwrap();
    assert!(!text.contains("-token"), "a token reached the report");
}
