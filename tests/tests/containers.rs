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
    go_tls_fixture, go_tls_server, patience, python_http_server,
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

/// Containers of one image run the same program file (the image layer's inode, under each
/// container's own overlay): probed once, and each container's call reported once. The probes
/// were attached again for every container (each overlay has a device number of its own) and
/// the Nth container's calls were reported N times.
#[test]
fn containers_of_one_image_report_each_tls_call_once() {
    Engine::Docker.ready();
    let image = sightline_tests::docker::go_tls_image();
    let mut agent = Agent::start(&[]);
    let server = go_tls_server(&go_tls_fixture(false), &mut agent);
    let port = server.port;
    let runs = 3;
    for run in 0..runs {
        let url = format!("https://127.0.0.1:{port}/container-{run}");
        let out = Engine::Docker.cmd_with_input(
            &[
                "run",
                "-i",
                "--rm",
                "--network",
                "host",
                image,
                "/tls-go",
                "client",
                &url,
            ],
            b"go\n",
        );
        assert_eq!(out.lines().last(), Some("200"), "{out}");
    }
    let calls = agent.collect(port, runs, runs);
    for run in 0..runs {
        let path = format!("/container-{run}");
        let clients: Vec<&Value> = calls
            .iter()
            .filter(|c| c["span.kind"] == "client" && c["url.path"] == path.as_str())
            .collect();
        assert_eq!(clients.len(), 1, "{path}: {clients:#?}");
        assert_eq!(
            clients[0]["tls.library"], "go-crypto-tls",
            "{:#}",
            clients[0]
        );
        assert!(clients[0]["container.id"].is_string(), "{:#}", clients[0]);
    }
    let probed = agent
        .stderr()
        .lines()
        .filter(|l| l.contains("TLS probes attached") && l.contains("path=/tls-go"))
        .count();
    assert_eq!(probed, 1, "{}", agent.stderr());
}

/// A Kubernetes container on a node where the agent does not watch the API server: containerd
/// (the one dockerd runs) starts it the way the kubelet's CRI plugin does, in the kubelet's
/// cgroupfs layout and with the CRI annotations in its OCI bundle; the agent names the
/// container, its pod and namespace from that bundle (the cgroup path has only the ids).
#[test]
fn a_kubernetes_container_is_named_from_its_runtime_bundle_without_the_api_server() {
    let run = std::process::id();
    let uid = format!("{run:08x}-1a2b-4c3d-8e9f-0a1b2c3d4e5f");
    let id = format!("{:064x}", u128::from(run) * 0x9e37_79b9_7f4a_7c15);
    let port = sightline_tests::free_port();
    let config = tempfile::tempdir().unwrap();
    let config_file = config.path().join("sightline.toml");
    std::fs::write(
        &config_file,
        format!(
            "[identity]\ncontainerd_state = \"{}\"\n",
            sightline_tests::docker::CONTAINERD_STATE
        ),
    )
    .unwrap();
    let mut agent = Agent::start(&["--config", config_file.to_str().unwrap()]);
    let cgroup = format!("/kubepods/besteffort/pod{uid}/{id}");
    let bind = format!("127.0.0.1:{port}");
    let _container = sightline_tests::docker::CtrContainer::run(
        &id,
        &[
            "--cgroup",
            &cgroup,
            "--annotation",
            "io.kubernetes.cri.container-type=container",
            "--annotation",
            "io.kubernetes.cri.container-name=api",
            "--annotation",
            "io.kubernetes.cri.sandbox-name=shop-5d8f7c9b6-x2x7q",
            "--annotation",
            "io.kubernetes.cri.sandbox-namespace=prod",
        ],
        &["/bin/httpd", "-f", "-p", &bind, "-h", "/www"],
    );
    sightline_tests::wait_for_port(port);
    curl(&[&format!("http://{bind}/a.html")]);
    let calls = agent.collect(port, 1, 1);
    let served = calls
        .iter()
        .find(|c| c["span.kind"] == "server" && c["url.path"] == "/a.html")
        .unwrap_or_else(|| panic!("{calls:#?}"));
    assert_eq!(served["k8s.container.name"], "api", "{served:#}");
    assert_eq!(served["k8s.pod.name"], "shop-5d8f7c9b6-x2x7q");
    assert_eq!(served["k8s.namespace.name"], "prod");
    assert_eq!(served["k8s.pod.uid"], uid.as_str());
    assert_eq!(served["container.id"], id.as_str());
    assert_eq!(served["container.name"], "api");
    let client = calls
        .iter()
        .find(|c| c["span.kind"] == "client" && c["url.path"] == "/a.html")
        .unwrap_or_else(|| panic!("{calls:#?}"));
    assert_eq!(client["peer.k8s.container.name"], "api", "{client:#}");
    assert_eq!(client["peer.k8s.pod.name"], "shop-5d8f7c9b6-x2x7q");
}
