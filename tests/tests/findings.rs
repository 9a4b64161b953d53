//! Zero-trust findings from real traffic: a Python http.server API with broken authentication
//! and data exposure, called by curl and Python's urllib (one of them from another network
//! namespace). Every rule fires on its case and stays quiet on its near miss, and none of the
//! secrets the clients sent appears in any output: JSON lines, the terminal view, the logs,
//! the SQLite files, or what `sightline findings|inventory|openapi` print.
#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeSet,
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sightline_tests::{
    Agent, Program, calls_on_port, certificate, curl, curl_status, free_port, netns::TwoHosts,
    nginx_with_tls, python, python_api, report, the_one,
};

/// The tokens and keys the clients send; none may reach an output.
struct Secrets {
    good_jwt: String,
    none_jwt: String,
    expired_jwt: String,
    no_exp_jwt: String,
}

const QUERY_KEY: &str = "qk-s3cr3t-KEY1";
const HEADER_KEY: &str = "hk-s3cr3t-KEY2";
const REMOTE_KEY: &str = "nk-s3cr3t-KEY3";
const SESSION_WALKER: &str = "sess-s3cr3t-AAA";
const SESSION_OTHER: &str = "sess-s3cr3t-BBB";
const BASIC_PASSWORD: &str = "basic-s3cr3t-pw";
const LOGIN_PASSWORD: &str = "login-s3cr3t-";
/// A password sent where no password belongs (an order), beside a card number.
const ORDER_PASSWORD: &str = "order-s3cr3t-pw";
const ORDER_CARD: &str = "4111 1111 1111 1111";
const SUBJECTS: [&str; 4] = [
    "alice-subj-7f3a",
    "mallory-subj-2b",
    "bob-subj-9c",
    "carol-subj-4d",
];

fn jwt(header: &Value, claims: &Value, signature: &str) -> String {
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{}",
        enc(header),
        enc(claims),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

impl Secrets {
    fn new() -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let hs256 = json!({"alg": "HS256", "typ": "JWT"});
        Self {
            good_jwt: jwt(
                &hs256,
                &json!({"iss": "https://issuer.test", "sub": SUBJECTS[0], "aud": "shop",
                        "scope": "read:users", "iat": now, "exp": now + 3600}),
                "good-sig-s3cr3t",
            ),
            none_jwt: jwt(
                &json!({"alg": "none"}),
                &json!({"sub": SUBJECTS[1], "exp": now + 3600}),
                "",
            ),
            expired_jwt: jwt(
                &hs256,
                &json!({"sub": SUBJECTS[2], "iat": now - 10_800, "exp": now - 7200}),
                "exp-sig-s3cr3t",
            ),
            no_exp_jwt: jwt(
                &hs256,
                &json!({"sub": SUBJECTS[3], "iat": now}),
                "noexp-sig-s3cr3t",
            ),
        }
    }

    /// Every secret byte string: tokens whole and in parts, keys, sessions, passwords (and
    /// curl's Basic encoding), subjects.
    fn all(&self) -> Vec<String> {
        let mut out: Vec<String> = [
            QUERY_KEY,
            HEADER_KEY,
            REMOTE_KEY,
            SESSION_WALKER,
            SESSION_OTHER,
            BASIC_PASSWORD,
            LOGIN_PASSWORD,
            ORDER_PASSWORD,
            ORDER_CARD,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        out.push(
            base64::engine::general_purpose::STANDARD.encode(format!("alice:{BASIC_PASSWORD}")),
        );
        out.extend(SUBJECTS.iter().map(|s| s.to_string()));
        for token in [
            &self.good_jwt,
            &self.none_jwt,
            &self.expired_jwt,
            &self.no_exp_jwt,
        ] {
            out.push(token.clone());
            // The claims and signature parts (the header part is the same in many tokens).
            out.extend(
                token
                    .split('.')
                    .skip(1)
                    .filter(|p| !p.is_empty())
                    .map(str::to_string),
            );
        }
        out.push("s3cr3t".to_string());
        out
    }
}

fn assert_no_secret(what: &str, bytes: &[u8], secrets: &[String]) {
    let text = String::from_utf8_lossy(bytes);
    for secret in secrets {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret:?} appears in {what}:\n{text}"
        );
    }
}

/// The config: the service's name, a spec saying which operations are secured, and low
/// thresholds so a test walks few ids.
fn config(dir: &Path, port: u16) -> std::path::PathBuf {
    std::fs::write(
        dir.join("shop.yaml"),
        "openapi: 3.0.3\ninfo: {title: shop, version: '1'}\n\
         components: {securitySchemes: {bearer: {type: http, scheme: bearer}}}\npaths:\n  \
         /healthz: {get: {security: [], responses: {'200': {description: ok}}}}\n  \
         /api/users/{id}: {get: {security: [{bearer: []}], responses: {'200': {description: ok}}}}\n  \
         /api/items/{id}: {get: {responses: {'200': {description: ok}}}}\n  \
         /api/orders: {post: {responses: {'201': {description: ok}}}}\n  \
         /api/login: {post: {security: [], responses: {'200': {description: ok}}}}\n  \
         /api/admin: {get: {security: [{bearer: []}], responses: {'200': {description: ok}}}}\n",
    )
    .unwrap();
    let path = dir.join("sightline.toml");
    std::fs::write(
        &path,
        format!(
            "[[service_rules]]\nname = \"shop\"\nport = {port}\n\n\
             [[api_specs]]\npath = \"shop.yaml\"\nservice = \"shop\"\n\n\
             [findings.rules.object-enumeration]\nthreshold = 10\n\n\
             [findings.rules.auth-failure-burst]\nthreshold = 5\n"
        ),
    )
    .unwrap();
    path
}

fn secure_api(bind: &str, port: u16, ns: Option<&str>) -> Program {
    python_api("secure_api.py", bind, port, ns)
}

/// Every case and near miss; returns how many calls the servers answered.
fn traffic(port: u16, s: &Secrets, hosts: &TwoHosts) -> usize {
    let base = format!("http://127.0.0.1:{port}");
    let url = |path: &str| format!("{base}{path}");
    let bearer = |token: &str| format!("Authorization: Bearer {token}");
    // Public by the spec and the built-in allowlist: quiet.
    curl(&[&url("/healthz")]);
    // Personal data to an unauthenticated caller of a secured operation.
    curl(&[&url("/api/users/1")]);
    // A good token (quiet but for the data it receives), then broken ones, all accepted.
    curl(&["-H", &bearer(&s.good_jwt), &url("/api/users/2")]);
    curl(&["-H", &bearer(&s.none_jwt), &url("/api/users/3")]);
    curl(&["-H", &bearer(&s.expired_jwt), &url("/api/users/4")]);
    curl(&["-H", &bearer(&s.no_exp_jwt), &url("/api/users/5")]);
    // Credentials in the URL; the near miss has none.
    curl(&[&url(&format!("/api/public/1?access_token={}", s.good_jwt))]);
    curl(&[&url(&format!("/api/public/2?api_key={QUERY_KEY}"))]);
    curl(&[&url("/api/public/3?page=2")]);
    // A token in the path: templated, removed from url.path.
    curl(&[&url(&format!("/api/reset/{}", s.good_jwt))]);
    // A state-changing call without credentials; the near miss has an API key.
    curl(&["-d", "qty=1", &url("/api/orders")]);
    curl(&[
        "-H",
        &format!("X-API-Key: {HEADER_KEY}"),
        "-d",
        "qty=2",
        &url("/api/orders"),
    ]);
    // One session walks 12 ids (threshold 10), another only 9.
    let walk = |session: &str, n: usize| {
        let cookie = format!("Cookie: theme=dark; sid={session}");
        let urls: Vec<String> = (1..=n).map(|i| url(&format!("/api/items/{i}"))).collect();
        let mut args = vec!["-H", cookie.as_str()];
        args.extend(urls.iter().map(String::as_str));
        curl(&args);
    };
    walk(SESSION_WALKER, 12);
    walk(SESSION_OTHER, 9);
    // Another client, without credentials, on an endpoint whose other client authenticates.
    let out = python(&[
        "-c",
        &format!(
            "import urllib.request; urllib.request.urlopen('{}').read()",
            url("/api/items/1")
        ),
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Six failed logins in a row (threshold 5).
    for i in 0..6 {
        let form = format!("user=alice&password={LOGIN_PASSWORD}{i}");
        assert_eq!(curl_status(None, &["-d", &form, &url("/api/login")]), "401");
    }
    // Basic authentication over loopback: quiet.
    curl(&["-u", &format!("alice:{BASIC_PASSWORD}"), &url("/api/admin")]);
    // An API key in cleartext from another host.
    let remote = format!("http://{}:{port}/api/items/1", hosts.b_ips[0]);
    let key = format!("X-API-Key: {REMOTE_KEY}");
    assert_eq!(curl_status(Some(&hosts.a), &["-H", &key, &remote]), "200");
    // A card number and a password in an order (authenticated: no other rule fires), sent
    // from a file: curl's command line, which the agent reports, stays without them.
    let order = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        order.path(),
        format!(r#"{{"qty":3,"card":{{"number":"{ORDER_CARD}"}},"password":"{ORDER_PASSWORD}"}}"#),
    )
    .unwrap();
    curl(&[
        "-H",
        &format!("X-API-Key: {HEADER_KEY}"),
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &format!("@{}", order.path().display()),
        &url("/api/orders"),
    ]);
    43
}

/// The database and its WAL, byte for byte.
fn database_bytes(db: &Path) -> Vec<u8> {
    ["", "-wal", "-shm"]
        .iter()
        .flat_map(|suffix| std::fs::read(format!("{}{suffix}", db.display())).unwrap_or_default())
        .collect()
}

#[test]
fn each_rule_fires_on_its_case_and_no_secret_reaches_an_output() {
    let secrets = Secrets::new();
    let hosts = TwoHosts::create(0);
    let port = free_port();
    let _local = secure_api("127.0.0.1", port, None);
    let _remote = secure_api(&hosts.b_ips[0], port, Some(&hosts.b));
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), port);
    let mut agent = Agent::with_config(&config, &[]);
    let db = agent.db();
    let served = traffic(port, &secrets, &hosts);
    agent.wait_for_calls("every server call", |c| {
        calls_on_port(c, "server", port).len() == served
    });
    let log = agent.stop();
    let calls = agent.calls();
    let server_calls: Vec<Value> = calls_on_port(&calls, "server", port)
        .into_iter()
        .cloned()
        .collect();
    let python_client = the_one(&calls, "the Python client's call", |c| {
        c["span.kind"] == "server"
            && c["peer.process.executable.name"]
                .as_str()
                .is_some_and(|n| n.starts_with("python"))
    })["peer.process.executable.name"]
        .as_str()
        .unwrap()
        .to_string();

    // The findings, in the JSON output (each once: none got worse later) and in the database.
    let expected: BTreeSet<(String, String, String, String)> = [
        ("SL-AUTH-001", "GET", "/api/users/{id}", "curl"),
        ("SL-DATA-001", "GET", "/api/users/{id}", "curl"),
        ("SL-JWT-001", "GET", "/api/users/{id}", "curl"),
        ("SL-JWT-002", "GET", "/api/users/{id}", "curl"),
        ("SL-JWT-003", "GET", "/api/users/{id}", "curl"),
        ("SL-JWT-004", "GET", "/api/public/{id}", "curl"),
        ("SL-AUTH-003", "GET", "/api/public/{id}", "curl"),
        ("SL-INV-001", "GET", "/api/public/{id}", "curl"),
        ("SL-JWT-004", "GET", "/api/reset/{token}", "curl"),
        ("SL-INV-001", "GET", "/api/reset/{token}", "curl"),
        ("SL-AUTH-001", "POST", "/api/orders", "curl"),
        ("SL-ABUSE-001", "GET", "/api/items/{id}", "curl"),
        (
            "SL-AUTH-001",
            "GET",
            "/api/items/{id}",
            python_client.as_str(),
        ),
        ("SL-ABUSE-002", "POST", "/api/login", "curl"),
        ("SL-AUTH-002", "GET", "/api/items/{id}", "curl"),
        ("SL-DATA-002", "POST", "/api/orders", "curl"),
    ]
    .iter()
    .map(|(r, m, p, c)| (r.to_string(), m.to_string(), p.to_string(), c.to_string()))
    .collect();
    let key = |f: &Value| {
        (
            f["sightline.finding.rule_id"].as_str().unwrap().to_string(),
            f["http.request.method"].as_str().unwrap().to_string(),
            f["http.route"].as_str().unwrap().to_string(),
            f["sightline.finding.client"].as_str().unwrap().to_string(),
        )
    };
    let live = agent.findings();
    assert_eq!(
        live.iter().map(key).collect::<BTreeSet<_>>(),
        expected,
        "{live:#?}"
    );
    assert_eq!(live.len(), expected.len(), "{live:#?}");
    let stored: Vec<Value> =
        serde_json::from_slice(&report("findings", &db, &["--format", "json"])).unwrap();
    assert_eq!(
        stored.iter().map(key).collect::<BTreeSet<_>>(),
        expected,
        "{stored:#?}"
    );
    assert_eq!(stored.len(), expected.len());
    assert!(stored.iter().all(|f| f["service.name"] == "shop"));

    // What each finding says.
    let finding = |rule: &str, route: &str, client: &str| {
        the_one(&stored, rule, |f| {
            f["sightline.finding.rule_id"] == rule
                && f["http.route"] == route
                && f["sightline.finding.client"] == client
        })
        .clone()
    };
    let spec_secured = finding("SL-AUTH-001", "/api/users/{id}", "curl");
    assert_eq!(spec_secured["evidence"]["reasons"], json!(["spec-secured"]));
    assert_eq!(spec_secured["sightline.finding.severity"], "high");
    assert_eq!(
        spec_secured["sightline.finding.owasp"],
        "API2:2023 Broken Authentication"
    );
    assert_eq!(spec_secured["count"], 1);
    let others = finding("SL-AUTH-001", "/api/items/{id}", &python_client);
    assert_eq!(
        others["evidence"]["reasons"],
        json!(["other-callers-authenticate"])
    );
    let orders = finding("SL-AUTH-001", "/api/orders", "curl");
    assert_eq!(
        orders["evidence"]["reasons"],
        json!(["state-changing-method"])
    );
    assert_eq!(
        (
            orders["sightline.finding.severity"].as_str(),
            orders["count"].as_u64()
        ),
        (Some("medium"), Some(1))
    );
    let data = finding("SL-DATA-001", "/api/users/{id}", "curl");
    assert_eq!(data["count"], 5);
    assert_eq!(
        data["sightline.finding.severity"], "critical",
        "an unauthenticated caller got SSNs"
    );
    for (kind, path) in [
        ("email", "$.email"),
        ("phone", "$.phone"),
        ("us_ssn", "$.ssn"),
        ("payment_card", "$.card"),
    ] {
        assert_eq!(
            data["evidence"][kind]["paths"],
            json!([path]),
            "{kind}: {data:#}"
        );
    }
    let alg_none = finding("SL-JWT-001", "/api/users/{id}", "curl");
    assert_eq!(alg_none["sightline.finding.severity"], "critical");
    assert_eq!(alg_none["evidence"]["accepted"], true);
    // Which call it was: the concrete path, secrets removed.
    assert_eq!(alg_none["evidence"]["sample_path"], "/api/users/3");
    assert_eq!(
        finding("SL-JWT-004", "/api/reset/{token}", "curl")["evidence"]["sample_path"],
        "/api/reset/REDACTED"
    );
    let expired = finding("SL-JWT-002", "/api/users/{id}", "curl");
    let age = expired["evidence"]["expired_seconds_before_call"]
        .as_i64()
        .unwrap();
    assert!((7200..7300).contains(&age), "{expired:#}");
    let walk = finding("SL-ABUSE-001", "/api/items/{id}", "curl");
    assert_eq!(walk["evidence"]["distinct_ids"], 10);
    let stuffing = finding("SL-ABUSE-002", "/api/login", "curl");
    assert_eq!(stuffing["evidence"]["failures"], 5);
    // The login form's passwords are expected there; the order's card and password are not.
    let order = finding("SL-DATA-002", "/api/orders", "curl");
    assert_eq!(
        (&order["sightline.finding.severity"], &order["count"]),
        (&json!("critical"), &json!(1)),
        "a card sent without TLS: {order:#}"
    );
    assert_eq!(
        order["evidence"]["payment_card"],
        json!({"count": 1, "paths": ["$.card.number"]})
    );
    assert_eq!(
        order["evidence"]["password"],
        json!({"count": 1, "paths": ["$.password"]})
    );
    assert_eq!(order["evidence"]["over_tls"], false);
    assert_eq!(
        order["sightline.finding.owasp"],
        "API8:2023 Security Misconfiguration"
    );
    let cleartext = finding("SL-AUTH-002", "/api/items/{id}", "curl");
    assert_eq!(cleartext["evidence"]["scheme"], "api-key");
    assert_eq!(cleartext["evidence"]["location"], "header:x-api-key");
    assert_eq!(cleartext["evidence"]["peer_address"], hosts.a_ip.as_str());
    assert_eq!(
        finding("SL-AUTH-003", "/api/public/{id}", "curl")["evidence"]["location"],
        "query:api_key"
    );

    // Each call says how it authenticated, by fingerprints only.
    let on = |path: &str| {
        the_one(&server_calls, path, |c| {
            c["url.path"] == path && c["network.local.address"] == "127.0.0.1"
        })
        .clone()
    };
    let good = on("/api/users/2");
    assert_eq!(good["sightline.auth.scheme"], "bearer-jwt");
    assert_eq!(good["sightline.auth.location"], "header:authorization");
    assert_eq!(good["sightline.auth.jwt.alg"], "HS256");
    assert_eq!(good["sightline.auth.jwt.iss"], "https://issuer.test");
    assert_eq!(good["sightline.auth.jwt.aud"], json!(["shop"]));
    assert_eq!(good["sightline.auth.jwt.scopes"], json!(["read:users"]));
    assert_eq!(good["sightline.findings"], json!(["SL-DATA-001"]));
    let in_url = on("/api/public/1");
    assert_eq!(in_url["url.query"], "access_token=REDACTED");
    assert_eq!(in_url["sightline.auth.location"], "query:access_token");
    // The same token in a header and in a URL: the same fingerprint (keyed, 16 hex digits).
    let fp = good["sightline.auth.fingerprint"].as_str().unwrap();
    assert_eq!(fp.len(), 16);
    assert_eq!(in_url["sightline.auth.fingerprint"], fp);
    assert_ne!(on("/api/users/3")["sightline.auth.fingerprint"], fp);
    assert_eq!(on("/api/users/1")["sightline.auth.scheme"], "none");
    assert_eq!(on("/api/admin")["sightline.auth.scheme"], "basic");
    assert!(on("/healthz").get("sightline.findings").is_none());
    assert!(
        on("/api/public/3")
            .get("sightline.auth.fingerprint")
            .is_none()
    );
    let reset = on("/api/reset/REDACTED");
    assert_eq!(reset["http.route"], "/api/reset/{token}");
    assert_eq!(reset["sightline.auth.location"], "path");
    assert_eq!(
        reset["sightline.auth.fingerprint"], fp,
        "the same token as in the header"
    );
    let fingerprint_key = std::fs::metadata(agent.dir().join("fingerprint.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&fingerprint_key.permissions()) & 0o777,
        0o600
    );
    assert!(log.contains("rule=\"SL-JWT-001\""), "{log}");

    // No secret anywhere.
    let all = secrets.all();
    assert_no_secret(
        "the JSON output, log, event dump and TLS report",
        agent.all_output().as_bytes(),
        &all,
    );
    assert_no_secret("the database files", &database_bytes(&db), &all);
    assert_no_secret("sightline findings", &report("findings", &db, &[]), &all);
    assert_no_secret(
        "sightline inventory",
        &report("inventory", &db, &["--format", "json"]),
        &all,
    );
    assert_no_secret(
        "sightline openapi",
        &report("openapi", &db, &["--service", "shop"]),
        &all,
    );
    let table =
        String::from_utf8(report("findings", &db, &["--min-severity", "critical"])).unwrap();
    assert_eq!(
        table.lines().count(),
        4,
        "header, SL-DATA-001, SL-DATA-002, SL-JWT-001:\n{table}"
    );

    // The terminal view, on the same traffic.
    let mut terminal = Agent::with_config(&config, &["--output", "terminal"]);
    let terminal_db = terminal.db();
    traffic(port, &secrets, &hosts);
    terminal.wait_until("the terminal to show the alg-none finding", |a| {
        a.output_text()
            .contains("FINDING critical SL-JWT-001 jwt-alg-none shop GET /api/users/{id}")
    });
    let log = terminal.stop();
    let text = terminal.output_text();
    assert!(
        text.contains("/api/public/1?access_token=REDACTED"),
        "{text}"
    );
    assert_no_secret("the terminal view", text.as_bytes(), &all);
    assert_no_secret("the terminal run's log", log.as_bytes(), &all);
    assert_no_secret(
        "the terminal run's database",
        &database_bytes(&terminal_db),
        &all,
    );
}

#[test]
fn client_certificates_are_seen_in_tls12_and_unknown_in_tls13() {
    let mut agent = Agent::start(&[]);
    let cert = certificate();
    let site = tempfile::tempdir().unwrap();
    for page in ["tls12-cert", "tls12-no-cert", "tls13-cert"] {
        std::fs::write(site.path().join(page), "ok\n").unwrap();
    }
    // nginx asks every client for a certificate (optional, any issuer: only its presence
    // matters here).
    let (server, port, _prefix) = nginx_with_tls(
        site.path(),
        Some(&cert),
        "ssl_verify_client optional_no_ca; ssl_protocols TLSv1.2 TLSv1.3;",
    );
    agent.wait_tls_ready(server.pid(), "openssl");
    let url = |path: &str| format!("https://127.0.0.1:{port}{path}");
    let (key, crt) = (cert.key.to_str().unwrap(), cert.cert.to_str().unwrap());
    curl(&[
        "-k",
        "--tls-max",
        "1.2",
        "--cert",
        crt,
        "--key",
        key,
        &url("/tls12-cert"),
    ]);
    curl(&["-k", "--tls-max", "1.2", &url("/tls12-no-cert")]);
    curl(&[
        "-k",
        "--tlsv1.3",
        "--cert",
        crt,
        "--key",
        key,
        &url("/tls13-cert"),
    ]);
    let calls = agent.collect(port, 3, 3);
    for (path, mtls, scheme) in [
        ("/tls12-cert", Some(true), "mtls"),
        ("/tls12-no-cert", Some(false), "none"),
        ("/tls13-cert", None, "none"),
    ] {
        for kind in ["server", "client"] {
            let call = the_one(&calls, &format!("{kind} {path}"), |c| {
                c["span.kind"] == kind && c["url.path"] == path
            });
            assert_eq!(call["tls"], true);
            assert_eq!(
                call.get("sightline.auth.mtls").and_then(Value::as_bool),
                mtls,
                "{call:#}"
            );
            assert_eq!(call["sightline.auth.scheme"], scheme, "{call:#}");
        }
    }
}
