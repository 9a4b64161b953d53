//! SIGHUP with the real agent: a broken config or spec is refused with its file and place and
//! the last good one stays in use; a good one changes what the running agent reports, without
//! a restart (same process, same inventory).
#![allow(clippy::unwrap_used)]

use std::path::Path;

use serde_json::Value;
use sightline_tests::{Agent, calls_on_port, curl, keepalive_server, report, signal};

const SIGHUP: i32 = 1;

/// (path, auth scheme) of the server's calls, in order.
fn seen(calls: &[Value], port: u16) -> Vec<(String, String)> {
    calls_on_port(calls, "server", port)
        .iter()
        .map(|c| {
            (
                c["url.path"].as_str().unwrap().to_string(),
                c["sightline.auth.scheme"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// (route, class, calls) of the inventory's endpoints of `api`, sorted.
fn endpoints(db: &Path, api: &str) -> Vec<(String, String, u64)> {
    let mut list: Vec<(String, String, u64)> = Agent::inventory(db)
        .iter()
        .filter(|e| e["api"] == api)
        .map(|e| {
            (
                e["route"].as_str().unwrap().to_string(),
                e["class"].as_str().unwrap().to_string(),
                e["calls"].as_u64().unwrap(),
            )
        })
        .collect();
    list.sort();
    list
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn spec(paths: &[&str]) -> String {
    let mut text = "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n".to_string();
    for path in paths {
        text.push_str(&format!(
            "  {path}:\n    get: {{responses: {{'200': {{description: ok}}}}}}\n"
        ));
    }
    text
}

fn config(dir: &Path, api: &str, key_header: &str, specs: &[&str], host: &str) {
    let mut text = format!("[identity]\nhost_name = {host:?}\n\n");
    for spec in specs {
        text.push_str(&format!(
            "[[api_specs]]\npath = {spec:?}\nservice = {api:?}\n\n"
        ));
    }
    text.push_str(&format!("[findings]\napi_key_headers = [{key_header:?}]\n"));
    std::fs::write(dir.join("sightline.toml"), text).unwrap();
}

#[test]
fn sighup_refuses_a_broken_config_or_spec_and_applies_a_good_one() {
    let (server, port) = keepalive_server();
    let api = server.executable_name();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("api.yaml"), spec(&["/documented"])).unwrap();
    std::fs::write(dir.path().join("more.yaml"), spec(&["/later"])).unwrap();
    config(dir.path(), &api, "x-team-key", &["api.yaml"], "node-a");
    let mut agent = Agent::with_config(&dir.path().join("sightline.toml"), &[]);
    let base = format!("http://127.0.0.1:{port}");
    let call = |path: &str, header: &str| {
        curl(&["-H", header, &format!("{base}{path}"), "-o", "/dev/null"]);
    };
    call("/documented", "x-team-key: k1");
    call("/later", "x-other-key: k2");
    agent.wait_for_calls("two server calls", |c| {
        calls_on_port(c, "server", port).len() == 2
    });

    // A config that is not TOML: refused with its file and place; nothing changes.
    std::fs::write(
        dir.path().join("sightline.toml"),
        "[findings]\napi_key_headers = [\"x-other-key\"]\n[[api_specs]\n",
    )
    .unwrap();
    signal(agent.pid(), SIGHUP);
    agent.wait_until("the broken config to be refused", |a| {
        a.stderr().contains("config not reloaded")
    });
    call("/later", "x-team-key: k3");
    agent.wait_for_calls("three server calls", |c| {
        calls_on_port(c, "server", port).len() == 3
    });

    // A good config (other key header, one more spec, another host name) while api.yaml is
    // broken: the config applies, api.yaml keeps its last good version, the host name waits
    // for a restart.
    std::fs::write(
        dir.path().join("api.yaml"),
        "openapi: 3.0.3\npaths:\n  /x: {get: [}\n",
    )
    .unwrap();
    config(
        dir.path(),
        &api,
        "x-other-key",
        &["api.yaml", "more.yaml"],
        "node-b",
    );
    signal(agent.pid(), SIGHUP);
    // more.yaml is read on the processor task, in the step that applies the whole reload.
    agent.wait_until("the good config to be in use", |a| {
        a.stderr().contains("config reloaded path=") && a.stderr().contains("more.yaml format=")
    });
    call("/documented", "x-team-key: k4");
    call("/later", "x-other-key: k5");
    agent.wait_for_calls("five server calls", |c| {
        calls_on_port(c, "server", port).len() == 5
    });
    assert!(agent.is_running());
    let log = agent.stop();
    let calls = agent.calls();

    assert_eq!(
        seen(&calls, port),
        pairs(&[
            ("/documented", "api-key"),
            ("/later", "none"),
            // After the refused reload: the first config's header name still decides.
            ("/later", "api-key"),
            // After the good one: the new header name.
            ("/documented", "none"),
            ("/later", "api-key"),
        ]),
        "{log}"
    );
    // /later was shadow for its first two calls (one finding, counting both) and documented
    // by more.yaml after the reload; /documented stayed documented by api.yaml's last good
    // version. The same inventory all along: one process, no restart.
    assert_eq!(
        endpoints(&agent.db(), &api),
        [
            ("/documented".to_string(), "documented".to_string(), 2),
            ("/later".to_string(), "documented".to_string(), 3),
        ]
    );
    let shadow: Vec<Value> = serde_json::from_slice(&report(
        "findings",
        &agent.db(),
        &["--format", "json", "--rule", "shadow-endpoint"],
    ))
    .unwrap();
    assert_eq!(shadow.len(), 1, "{shadow:#?}");
    assert_eq!(
        (&shadow[0]["http.route"], &shadow[0]["count"]),
        (&Value::from("/later"), &Value::from(2))
    );
    // The refusal names the file, line and column; the broken spec its file and line.
    let config_path = dir.path().join("sightline.toml");
    assert!(
        log.contains(&format!("{}:3:", config_path.display())),
        "{log}"
    );
    assert!(log.contains("api.yaml:3:"), "{log}");
    assert!(log.contains("API spec not loaded"), "{log}");
    assert!(
        log.contains("take effect only after a restart") && log.contains("identity"),
        "{log}"
    );
    assert!(log.contains("config_reloads=1"), "{log}");
    assert!(log.contains("config_reload_errors=1"), "{log}");
    // Every call kept the host name the agent started with.
    for call in calls_on_port(&calls, "server", port) {
        assert_eq!(call["host.name"], "node-a", "{call}");
    }
}
