//! Real containers of Docker (Debian's docker.io, its daemon started by the test when none
//! runs) and Podman (Debian's, daemonless), the image imported from busybox-static (nothing
//! pulled), on this machine's hybrid cgroup layout: a busybox httpd server container called from the host, from a client container that
//! stays up, and from a `docker run --rm` client that is gone right after its call, and a
//! server on the host called from a `--rm` container. Each end is
//! named with its container's id and name (the short-lived one included: its cgroup is known
//! from the kernel's cgroup_mkdir event, before its process could be read in /proc).
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use sightline_tests::{
    Agent, curl,
    docker::{Container, Engine, IMAGE},
    patience, python_http_server,
};

/// (span kind, path, status, container name, container id, peer container name) of each call
/// to the server ports, sorted; every container end also names the test image (Podman's with
/// its `localhost/` registry).
fn named(calls: &[Value], ports: [u16; 2]) -> Vec<(String, String, u64, String, String, String)> {
    let text = |c: &Value, key: &str| c[key].as_str().unwrap_or("").to_string();
    let mut out: Vec<_> = calls
        .iter()
        .filter(|c| ports.iter().any(|p| c["server.port"] == *p))
        .inspect(|c| {
            for (name, image) in [
                ("container.name", "container.image.name"),
                ("peer.container.name", "peer.container.image.name"),
            ] {
                if c[name].is_string() {
                    let image = c[image].as_str().unwrap_or_default();
                    assert_eq!(image.trim_start_matches("localhost/"), IMAGE, "{c:#}");
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

/// `ENGINE run --rm --name NAME IMAGE ARGS...` to its end: (its output, its container id).
fn run_once(engine: Engine, name: &str, args: &[&str]) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let cidfile = dir.path().join("cid");
    let mut all = vec!["run", "--rm", "--cidfile", cidfile.to_str().unwrap()];
    all.extend_from_slice(engine.run_options());
    all.extend_from_slice(&["--name", name, IMAGE]);
    all.extend_from_slice(args);
    let out = engine.cmd(&all);
    (
        out,
        std::fs::read_to_string(cidfile).unwrap().trim().to_string(),
    )
}

/// A busybox httpd container called from the host, from a container that stays up and from
/// one gone right after its call; a server on the host called from a `--rm` container: every
/// end named, the server calls whole.
fn named_at_both_ends(engine: Engine) {
    engine.ready();
    let tag = format!("{}-{}", engine.runtime(), std::process::id());
    let web = Container::run_on(
        engine,
        &format!("sl-web-{tag}"),
        &["httpd", "-f", "-p", "80", "-h", "/www"],
    );
    let ip = web.ip();
    let url = |page: &str| format!("http://{ip}/{page}.html");
    // Up before the agent starts (this probe is not one of the calls counted).
    let start = std::time::Instant::now();
    while sightline_tests::curl_status(None, &[&url("index")]) != "200" {
        assert!(start.elapsed() < patience(), "httpd in {}", web.name);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let gateway = engine.gateway();
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("d.txt"), "d").unwrap();
    let (host_server, host_port) = python_http_server(site.path(), &gateway);
    let mut agent = Agent::start(&[]);

    let (_, body) = curl(&[&url("a")]);
    assert_eq!(body, "a");
    let long = Container::run_on(
        engine,
        &format!("sl-long-{tag}"),
        &["sh", "-c", &format!("wget -q -O - {}; sleep 60", url("b"))],
    );
    let short = format!("sl-short-{tag}");
    let (got, short_id) = run_once(engine, &short, &["wget", "-q", "-O", "-", &url("c")]);
    assert_eq!(got, "c");
    let to_host = format!("sl-to-host-{tag}");
    let host_url = format!("http://{gateway}:{host_port}/d.txt");
    let (got, to_host_id) = run_once(engine, &to_host, &["wget", "-q", "-O", "-", &host_url]);
    assert_eq!(got, "d");

    let ports = [80, host_port];
    agent.wait_for_calls("four calls at both ends", |c| named(c, ports).len() == 8);
    agent.stop();
    let calls = agent.calls();
    let row = |kind: &str, path: &str, name: &str, id: &str, peer: &str| {
        let s = |v: &str| v.to_string();
        (s(kind), s(path), 200, s(name), s(id), s(peer))
    };
    let (web_name, web_id) = (web.name.as_str(), web.id.as_str());
    let mut expected = vec![
        row("client", "/a.html", "", "", web_name),
        row("server", "/a.html", web_name, web_id, ""),
        row("client", "/b.html", &long.name, &long.id, web_name),
        row("server", "/b.html", web_name, web_id, &long.name),
        row("client", "/c.html", &short, &short_id, web_name),
        row("server", "/c.html", web_name, web_id, &short),
        row("client", "/d.txt", &to_host, &to_host_id, ""),
        row("server", "/d.txt", "", "", &to_host),
    ];
    expected.sort();
    assert_eq!(named(&calls, ports), expected);
    for call in &calls {
        if call["container.id"].is_string() {
            assert_eq!(call["container.runtime"], engine.runtime(), "{call:#}");
        }
    }
    // The host's server is the host's Python, named as such.
    let server = calls
        .iter()
        .find(|c| c["span.kind"] == "server" && c["url.path"] == "/d.txt")
        .unwrap();
    assert_eq!(server["process.pid"], host_server.pid(), "{server:#}");
}

#[test]
fn docker_containers_are_named_at_both_ends_short_lived_ones_too() {
    named_at_both_ends(Engine::Docker);
}

/// Debian's podman 4.3 (runc, the cgroupfs manager on this hybrid layout: `libpod_parent/
/// libpod-<id>`); names and images from its storage's containers.json and images.json.
#[test]
fn podman_containers_are_named_at_both_ends_short_lived_ones_too() {
    named_at_both_ends(Engine::Podman);
}
