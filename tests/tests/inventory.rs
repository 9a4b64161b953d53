//! The API inventory from real traffic: route templates, per-endpoint statistics, the SQLite
//! database (read by Python's sqlite3, not by our code) and its survival across a restart.
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use sightline_tests::{
    Agent, calls_on_port, curl, free_port, keepalive_server, python_fixture, report, the_one,
    wait_for_port,
};

/// The endpoint of (method, route).
fn endpoint<'a>(inventory: &'a [Value], method: &str, route: &str) -> &'a Value {
    the_one(inventory, &format!("{method} {route}"), |e| {
        e["method"] == method && e["route"] == route
    })
}

#[test]
fn endpoints_are_templated_counted_and_kept_across_restarts() {
    let (server, port) = keepalive_server();
    let api = server.executable_name();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inventory.sqlite");
    let db_arg = db.to_str().unwrap().to_string();
    let base = format!("http://127.0.0.1:{port}");

    let mut agent = Agent::start(&["--inventory-db", &db_arg]);
    for path in ["/users/1", "/users/2", "/users/3", "/health", "/missing/7"] {
        curl(&[&format!("{base}{path}"), "-o", "/dev/null"]);
    }
    curl(&[
        "-H",
        "Authorization: Bearer inventory-s3cr3t",
        &format!("{base}/users/4"),
    ]);
    curl(&["-d", "name=x", &format!("{base}/users")]);
    agent.wait_for_calls("seven server calls", |c| {
        calls_on_port(c, "server", port).len() == 7
    });
    agent.stop();
    let calls = agent.calls();
    let routes: Vec<(&str, &str)> = calls_on_port(&calls, "server", port)
        .iter()
        .map(|c| {
            (
                c["url.path"].as_str().unwrap(),
                c["http.route"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        routes,
        [
            ("/users/1", "/users/{id}"),
            ("/users/2", "/users/{id}"),
            ("/users/3", "/users/{id}"),
            ("/health", "/health"),
            ("/missing/7", "/missing/{id}"),
            ("/users/4", "/users/{id}"),
            ("/users", "/users"),
        ]
    );

    let inventory = Agent::inventory(&db);
    // Counted once, at the server (curl is a local process: no "called" entries).
    assert_eq!(inventory.len(), 4, "{inventory:#?}");
    assert!(
        inventory
            .iter()
            .all(|e| e["api"] == api.as_str() && e["direction"] == "served")
    );
    let users = endpoint(&inventory, "GET", "/users/{id}");
    assert_eq!(users["calls"], 4);
    assert_eq!(users["status"]["2xx"], 4);
    assert_eq!(users["clients"], serde_json::json!(["curl"]));
    assert_eq!(
        users["auth_schemes"],
        serde_json::json!(["bearer-opaque", "none"])
    );
    assert_eq!(
        users["response_content_types"],
        serde_json::json!(["text/plain"])
    );
    assert_eq!(users["tls_calls"], 0);
    assert_eq!(endpoint(&inventory, "GET", "/health")["calls"], 1);
    let missing = endpoint(&inventory, "GET", "/missing/{id}");
    assert_eq!(missing["status"]["4xx"], 1);
    let post = endpoint(&inventory, "POST", "/users");
    assert_eq!(post["status"]["2xx"], 1);
    assert_eq!(
        post["request_content_types"],
        serde_json::json!(["application/x-www-form-urlencoded"])
    );
    let first_seen = users["first_seen"].clone();

    // A restart keeps the inventory, and the same paths the same templates.
    let mut agent = Agent::start(&["--inventory-db", &db_arg]);
    curl(&[&format!("{base}/users/5"), "-o", "/dev/null"]);
    agent.wait_for_calls("the call after the restart", |c| {
        calls_on_port(c, "server", port).len() == 1
    });
    agent.stop();
    assert_eq!(
        calls_on_port(&agent.calls(), "server", port)[0]["http.route"],
        "/users/{id}"
    );
    let inventory = Agent::inventory(&db);
    let users = endpoint(&inventory, "GET", "/users/{id}");
    assert_eq!(users["calls"], 5);
    assert_eq!(users["first_seen"], first_seen);

    // A crash (SIGKILL) loses at most what was not written yet: wait until the running
    // agent's periodic write shows the next call (read while it runs), then kill it.
    let mut agent = Agent::start(&["--inventory-db", &db_arg]);
    curl(&[&format!("{base}/users/6"), "-o", "/dev/null"]);
    agent.wait_until("the running agent to write the call", |_| {
        endpoint(&Agent::inventory(&db), "GET", "/users/{id}")["calls"] == 6
    });
    sightline_tests::signal(agent.pid(), libc::SIGKILL);
    let inventory = Agent::inventory(&db);
    assert_eq!(endpoint(&inventory, "GET", "/users/{id}")["calls"], 6);

    // The database is plain SQLite with the documented columns (read here by Python's sqlite3).
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
             print(c.execute(\"SELECT method, route, calls, status_2xx FROM endpoints \
             WHERE route='/users/{id}'\").fetchall())",
            &db_arg,
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "[('GET', '/users/{id}', 6, 6)]",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No credential reaches the database.
    let bytes = std::fs::read(&db).unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains("inventory-s3cr3t"));
}

#[test]
fn endpoints_are_classified_against_the_specs_with_one_finding_each() {
    let (server, port) = keepalive_server();
    let api = server.executable_name();
    let dir = tempfile::tempdir().unwrap();
    let shop = "openapi: 3.0.3\ninfo: {title: shop, version: '1'}\nservers: [{url: /api}]\npaths:\n\
         \x20 /users/{userId}:\n    get: {responses: {'200': {description: ok}}}\n\
         \x20 /users:\n    post: {responses: {'201': {description: created}}}\n\
         \x20 /orders/{orderId}:\n    get: {deprecated: true, responses: {'200': {description: ok}}}\n\
         \x20 /reports:\n    get: {responses: {'200': {description: ok}}}\n";
    std::fs::write(dir.path().join("shop.yaml"), shop).unwrap();
    std::fs::write(
        dir.path().join("legacy.json"),
        r#"{"swagger": "2.0", "info": {"title": "legacy", "version": "0"}, "basePath": "/v0",
            "paths": {"/legacy": {"get": {"responses": {"200": {"description": "ok"}}}}}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("broken.yaml"),
        "openapi: 3.0.3\npaths:\n  /x: {get: [}\n",
    )
    .unwrap();
    let config = dir.path().join("sightline.toml");
    std::fs::write(
        &config,
        format!(
            "[[api_specs]]\npath = \"shop.yaml\"\nservice = {api:?}\n\n\
             [[api_specs]]\npath = \"legacy.json\"\nservice = {api:?}\nretired = true\n\n\
             [[api_specs]]\npath = \"broken.yaml\"\nservice = {api:?}\n"
        ),
    )
    .unwrap();
    let mut agent = Agent::with_config(&config, &[]);
    let db = agent.db();
    let base = format!("http://127.0.0.1:{port}");
    for path in [
        "/api/users/1",
        "/api/users/2",
        "/api/orders/9",
        "/api/orders/10",
        "/api/admin/export",
        "/api/admin/export",
        "/v0/legacy",
    ] {
        curl(&[&format!("{base}{path}"), "-o", "/dev/null"]);
    }
    curl(&[
        "-d",
        "name=x",
        &format!("{base}/api/users"),
        "-o",
        "/dev/null",
    ]);
    curl(&[
        "-X",
        "DELETE",
        &format!("{base}/api/users/3"),
        "-o",
        "/dev/null",
    ]);
    agent.wait_for_calls("nine server calls", |c| {
        calls_on_port(c, "server", port).len() == 9
    });

    // A broken edit of the spec: reported, and the last good version stays in use.
    std::fs::write(dir.path().join("shop.yaml"), "openapi: 3.0.3\npaths: [\n").unwrap();
    agent.wait_until("the broken spec to be reported", |a| {
        a.stderr().matches("API spec not loaded").count() == 2
    });
    curl(&[&format!("{base}/api/users/5"), "-o", "/dev/null"]);
    // A fixed spec that now documents /admin/export.
    let fixed =
        format!("{shop}  /admin/export:\n    get: {{responses: {{'200': {{description: ok}}}}}}\n");
    std::fs::write(dir.path().join("shop.yaml"), fixed).unwrap();
    agent.wait_until("the fixed spec to be loaded", |a| {
        a.stderr().matches("API spec loaded").count() == 3
    });
    curl(&[&format!("{base}/api/admin/export"), "-o", "/dev/null"]);
    agent.wait_for_calls("eleven server calls", |c| {
        calls_on_port(c, "server", port).len() == 11
    });
    let log = agent.stop();

    let inventory = Agent::inventory(&db);
    let classes: Vec<(String, String, String, u64)> = inventory
        .iter()
        .map(|e| {
            (
                e["method"].as_str().unwrap().to_string(),
                e["route"].as_str().unwrap().to_string(),
                e["class"].as_str().unwrap().to_string(),
                e["calls"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String, u64)> = [
        // Shadow until the spec documented it; its class is as of its last call.
        ("GET", "/api/admin/export", "documented", 3),
        ("GET", "/api/orders/{orderId}", "zombie", 2),
        ("POST", "/api/users", "documented", 1),
        ("DELETE", "/api/users/{userId}", "shadow", 1),
        ("GET", "/api/users/{userId}", "documented", 3),
        ("GET", "/v0/legacy", "zombie", 1),
        ("GET", "/api/reports", "unused", 0),
    ]
    .iter()
    .map(|(m, r, c, n)| (m.to_string(), r.to_string(), c.to_string(), *n))
    .collect();
    assert_eq!(classes, expected, "{inventory:#?}");

    // One finding per shadow or zombie endpoint, counting its calls (the shadow finding of
    // /admin/export stays: it was shadow when called).
    assert_eq!(log.matches("rule=\"SL-INV-001\"").count(), 2, "{log}");
    assert_eq!(log.matches("rule=\"SL-INV-002\"").count(), 2, "{log}");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
             [print(*r) for r in c.execute('SELECT rule, method, route, client, count \
             FROM findings WHERE rule_id LIKE \"SL-INV-%\" ORDER BY rule, route, method')]",
            db.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "shadow-endpoint GET /api/admin/export curl 2\n\
         shadow-endpoint DELETE /api/users/{userId} curl 1\n\
         zombie-endpoint GET /api/orders/{orderId} curl 2\n\
         zombie-endpoint GET /v0/legacy curl 1\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The broken spec is reported with its place, and the others still apply.
    assert!(log.contains("broken.yaml:3:"), "{log}");
    assert!(log.contains("inventory_spec_errors=2"), "{log}");
}

/// openapi-spec-validator from PyPI, installed once into the test target directory.
fn openapi_validator() -> std::path::PathBuf {
    sightline_tests::pip_package(
        env!("CARGO_TARGET_TMPDIR"),
        "openapi-spec-validator==0.7.1",
        "openapi_spec_validator",
    )
}

#[test]
fn the_openapi_document_reconstructed_from_traffic_validates() {
    let port = sightline_tests::free_port();
    let mut server = sightline_tests::Program::spawn(sightline_tests::python(&[
        sightline_tests::fixture("json_api.py").to_str().unwrap(),
        &port.to_string(),
    ]));
    assert_eq!(server.line(), "ready");
    let api = server.executable_name();
    let base = format!("http://127.0.0.1:{port}");
    let mut agent = Agent::start(&[]);
    curl(&[
        &format!("{base}/users/1?fields=name&page=2"),
        "-o",
        "/dev/null",
    ]);
    curl(&[
        "-H",
        "X-API-Key: openapi-s3cr3t",
        &format!("{base}/users/2"),
        "-o",
        "/dev/null",
    ]);
    curl(&[&format!("{base}/users/999"), "-o", "/dev/null"]);
    curl(&[
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"name": "carol-s3cr3t", "age": 31}"#,
        &format!("{base}/users"),
        "-o",
        "/dev/null",
    ]);
    curl(&["-X", "DELETE", &format!("{base}/users/3")]);
    agent.wait_for_calls("five server calls", |c| {
        calls_on_port(c, "server", port).len() == 5
    });
    agent.stop();

    let out = sightline_tests::report(
        "openapi",
        &agent.dir().join("inventory.sqlite"),
        &["--service", &api],
    );
    let text = String::from_utf8(out).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let get = &doc["paths"]["/users/{id}"]["get"];
    let statuses: Vec<&String> = get["responses"].as_object().unwrap().keys().collect();
    assert_eq!(statuses, ["200", "404"]);
    let params: Vec<(&str, &str)> = get["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["in"].as_str().unwrap()))
        .collect();
    assert_eq!(
        params,
        [("id", "path"), ("fields", "query"), ("page", "query")]
    );
    // Both 200 and 404 bodies are JSON: their schemas merge (types and names only).
    let schema = &get["responses"]["200"]["content"]["application/json"]["schema"];
    assert_eq!(schema["properties"]["id"]["type"], "integer", "{text}");
    assert_eq!(schema["properties"]["tags"]["items"]["type"], "string");
    assert_eq!(
        get["security"],
        serde_json::json!([{"apiKeyHeader_x-api-key": []}, {}])
    );
    let post = &doc["paths"]["/users"]["post"];
    assert_eq!(
        post["requestBody"]["content"]["application/json"]["schema"]["properties"]["age"]["type"],
        "integer"
    );
    assert!(post["responses"]["201"].is_object());
    assert!(doc["paths"]["/users/{id}"]["delete"]["responses"]["204"].is_object());
    assert!(
        !text.contains("s3cr3t") && !text.contains("user1"),
        "{text}"
    );

    // A validator nobody here wrote accepts it.
    let file = agent.dir().join("reconstructed.json");
    std::fs::write(&file, &text).unwrap();
    let validation = std::process::Command::new("python3")
        .env("PYTHONPATH", openapi_validator())
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        validation.status.success(),
        "{}{}\n{text}",
        String::from_utf8_lossy(&validation.stdout),
        String::from_utf8_lossy(&validation.stderr)
    );
}

/// A spec documents `GET /api/users/{name}`; the API also serves an undocumented debug dump at
/// `/api/users/debug` (every user's password). The dump answers another shape than the users
/// do, so it is counted as an endpoint of its own, suspected shadow, and the password finding
/// names it; ordinary names (`admin` among them) stay values of the documented route.
#[test]
fn a_hidden_endpoint_behind_a_path_parameter_is_told_from_its_values() {
    let port = free_port();
    let mut server = python_fixture("people_api.py", port);
    assert_eq!(server.line(), "ready");
    wait_for_port(port);
    let api = server.executable_name();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("people.yaml"),
        "openapi: 3.0.3\ninfo: {title: people, version: '1'}\npaths:\n\
         \x20 /api/users/{name}:\n    get: {responses: {'200': {description: ok}}}\n",
    )
    .unwrap();
    let config = dir.path().join("sightline.toml");
    std::fs::write(
        &config,
        format!("[[api_specs]]\npath = \"people.yaml\"\nservice = {api:?}\n"),
    )
    .unwrap();
    let mut agent = Agent::with_config(&config, &[]);
    let db = agent.db();
    let base = format!("http://127.0.0.1:{port}");
    for name in ["alice", "bob", "admin", "carol", "debug", "dave", "debug"] {
        curl(&[&format!("{base}/api/users/{name}"), "-o", "/dev/null"]);
    }
    agent.wait_for_calls("seven server calls", |c| {
        calls_on_port(c, "server", port).len() == 7
    });
    agent.stop();

    let mut classes: Vec<(String, String, u64)> = Agent::inventory(&db)
        .iter()
        .map(|e| {
            (
                e["route"].as_str().unwrap().to_string(),
                e["class"].as_str().unwrap().to_string(),
                e["calls"].as_u64().unwrap(),
            )
        })
        .collect();
    classes.sort();
    assert_eq!(
        classes,
        [
            (
                "/api/users/debug".to_string(),
                "suspected-shadow".to_string(),
                2
            ),
            ("/api/users/{name}".to_string(), "documented".to_string(), 5),
        ]
    );
    let findings: Vec<Value> =
        serde_json::from_slice(&report("findings", &db, &["--format", "json"])).unwrap();
    let mut found: Vec<(String, String)> = findings
        .iter()
        .map(|f| {
            (
                f["sightline.finding.rule"].as_str().unwrap().to_string(),
                f["http.route"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            (
                "sensitive-data-exposure".to_string(),
                "/api/users/debug".to_string()
            ),
            (
                "shadow-endpoint".to_string(),
                "/api/users/debug".to_string()
            ),
        ],
        "{findings:#?}"
    );
    let shadow = the_one(&findings, "the shadow finding", |f| {
        f["sightline.finding.rule"] == "shadow-endpoint"
    });
    assert_eq!(shadow["evidence"]["class"], "suspected-shadow");
    assert_eq!(shadow["evidence"]["documented_route"], "/api/users/{name}");
    assert_eq!(shadow["evidence"]["reason"], "other-response-shape");
    assert_eq!(shadow["evidence"]["sample_path"], "/api/users/debug");
}
