//! Real Docker containers (Debian's docker.io, its daemon started by the test when none runs;
//! the image imported from busybox-static, nothing pulled), on this machine's hybrid cgroup
//! layout: a busybox httpd server container called from the host, from a client container that
//! stays up, and from a `docker run --rm` client that is gone right after its call. Each end is
//! named with its container's id and name (the short-lived one included: its cgroup is known
//! from the kernel's cgroup_mkdir event, before its process could be read in /proc).
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use sightline_tests::{
    Agent, curl,
    docker::{self, Container, IMAGE},
};

/// (span kind, path, status, container name, container id, peer container name) of each call
/// on port 80, sorted; every container end also names the test image.
fn named(calls: &[Value]) -> Vec<(String, String, u64, String, String, String)> {
    let text = |c: &Value, key: &str| c[key].as_str().unwrap_or("").to_string();
    let mut out: Vec<_> = calls
        .iter()
        .filter(|c| c["server.port"] == 80)
        .inspect(|c| {
            for (name, image) in [
                ("container.name", "container.image.name"),
                ("peer.container.name", "peer.container.image.name"),
            ] {
                if c[name].is_string() {
                    assert_eq!(c[image], IMAGE, "{c:#}");
                }
            }
        })
        .map(|c| {
            (
                text(c, "span.kind"),
                text(c, "url.path"),
                c["http.response.status_code"].as_u64().unwrap_or(0),
                text(c, "container.name"),
                text(c, "container.id"),
                text(c, "peer.container.name"),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn containers_are_named_at_both_ends_short_lived_ones_too() {
    docker::engine();
    let tag = std::process::id();
    let web = Container::run(
        &format!("sl-web-{tag}"),
        &["httpd", "-f", "-p", "80", "-h", "/www"],
    );
    let ip = web.ip();
    let url = |page: &str| format!("http://{ip}/{page}.html");
    // Up before the agent starts (this probe is not one of the calls counted).
    let start = std::time::Instant::now();
    while sightline_tests::curl_status(None, &[&url("index")]) != "200" {
        assert!(
            start.elapsed() < sightline_tests::patience(),
            "httpd in {}",
            web.name
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut agent = Agent::start(&[]);

    let (_, body) = curl(&[&url("a")]);
    assert_eq!(body, "a");
    let long = Container::run(
        &format!("sl-long-{tag}"),
        &["sh", "-c", &format!("wget -q -O - {}; sleep 60", url("b"))],
    );
    let short = format!("sl-short-{tag}");
    let cidfile = tempfile::tempdir().unwrap().keep().join("cid");
    let cidfile = cidfile.to_str().unwrap();
    let got = docker::docker(&[
        "run",
        "--rm",
        "--cidfile",
        cidfile,
        "--name",
        &short,
        IMAGE,
        "wget",
        "-q",
        "-O",
        "-",
        &url("c"),
    ]);
    assert_eq!(got, "c");
    let short_id = std::fs::read_to_string(cidfile).unwrap();

    agent.wait_for_calls("three calls at both ends", |c| named(c).len() == 6);
    agent.stop();
    let calls = agent.calls();
    let s = |v: &str| v.to_string();
    let mut expected = vec![
        (
            s("client"),
            s("/a.html"),
            200,
            s(""),
            s(""),
            web.name.clone(),
        ),
        (
            s("server"),
            s("/a.html"),
            200,
            web.name.clone(),
            web.id.clone(),
            s(""),
        ),
        (
            s("client"),
            s("/b.html"),
            200,
            long.name.clone(),
            long.id.clone(),
            web.name.clone(),
        ),
        (
            s("server"),
            s("/b.html"),
            200,
            web.name.clone(),
            web.id.clone(),
            long.name.clone(),
        ),
        (
            s("client"),
            s("/c.html"),
            200,
            short.clone(),
            short_id.trim().to_string(),
            web.name.clone(),
        ),
        (
            s("server"),
            s("/c.html"),
            200,
            web.name.clone(),
            web.id.clone(),
            short.clone(),
        ),
    ];
    expected.sort();
    assert_eq!(named(&calls), expected);
}
