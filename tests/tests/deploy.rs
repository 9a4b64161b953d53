//! Deployment: the Kustomize base and example overlay render and validate against the
//! Kubernetes schemas of the versions we claim (kubernetes-validate from PyPI); the DaemonSet and
//! the systemd unit grant exactly the capabilities `sightline capabilities` lists, and the agent
//! captures plaintext and TLS calls with those and no others; the health endpoint answers; and
//! SIGTERM leaves no program loaded, the database consistent.
#![allow(clippy::unwrap_used)]

use std::{collections::BTreeSet, path::Path, process::Command};

use sightline_tests::{
    Agent, agent_binary, calls_on_port, curl, free_port, loaded_program_ids,
    manifests::{deploy_dir, kustomize, object},
    pip_package, python_http_server, tls_nginx,
};

/// The Kubernetes versions the manifests are validated for (README: "Kubernetes 1.30 to 1.35").
const KUBERNETES_VERSIONS: &[&str] = &["1.30.0", "1.33.0", "1.35.0"];

#[test]
fn manifests_render_and_validate_for_the_kubernetes_versions_we_claim() {
    let validator = pip_package(
        env!("CARGO_TARGET_TMPDIR"),
        "kubernetes-validate==1.37.0",
        "kubernetes_validate",
    );
    let dir = tempfile::tempdir().unwrap();
    for name in ["base", "overlays/example", "overlays/prometheus"] {
        let objects = kustomize(name);
        let kinds: BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
        assert_eq!(
            kinds,
            BTreeSet::from([
                "ClusterRole",
                "ClusterRoleBinding",
                "ConfigMap",
                "DaemonSet",
                "Namespace",
                "ServiceAccount"
            ]),
            "{name}"
        );
        let file = dir.path().join(format!("{}.yaml", name.replace('/', "-")));
        let text: Vec<String> = objects
            .iter()
            .map(|o| serde_yaml_ng::to_string(o).unwrap())
            .collect();
        std::fs::write(&file, text.join("---\n")).unwrap();
        for version in KUBERNETES_VERSIONS {
            let out = Command::new("python3")
                .args(["-m", "kubernetes_validate", "--strict", "-k", version])
                .arg(&file)
                .env("PYTHONPATH", &validator)
                .output()
                .unwrap();
            let report = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{name} on {version}:\n{report}");
            assert_eq!(
                report.matches(" passed for resource ").count(),
                objects.len(),
                "{report}"
            );
        }
    }
    // The Prometheus overlay: /metrics reachable on the pod's address, declared and annotated.
    let scraped = kustomize("overlays/prometheus");
    let pod = &object(&scraped, "DaemonSet")["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["args"][4], "--health-listen=0.0.0.0:9467");
    assert_eq!(container["ports"][0]["name"], "metrics");
    assert_eq!(
        pod["metadata"]["annotations"]["prometheus.io/path"],
        "/metrics"
    );
    // The overlay's changes are in what it renders.
    let overlay = kustomize("overlays/example");
    let daemonset = object(&overlay, "DaemonSet");
    let container = &daemonset["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"],
        "registry.example.com/platform/sightline:0.1.0"
    );
    let specs = overlay
        .iter()
        .find(|o| {
            o["kind"] == "ConfigMap"
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("sightline-specs"))
        })
        .unwrap();
    assert!(
        specs["data"]["orders.yaml"]
            .as_str()
            .unwrap()
            .contains("/orders/{id}")
    );
    // The DaemonSet's mounted specs ConfigMap is the generated one (kustomize renamed both).
    let volumes = daemonset["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    assert!(
        volumes
            .iter()
            .any(|v| v["configMap"]["name"] == specs["metadata"]["name"])
    );
}

/// `CAP_X` names from `sightline capabilities`.
fn agent_capabilities() -> Vec<String> {
    let out = Command::new(agent_binary())
        .arg("capabilities")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[test]
fn the_daemonset_and_the_systemd_unit_grant_the_capabilities_the_agent_lists() {
    let expected: BTreeSet<String> = agent_capabilities().into_iter().collect();
    assert!(expected.contains("CAP_BPF") && expected.contains("CAP_PERFMON"));
    let base = kustomize("base");
    let spec = &object(&base, "DaemonSet")["spec"]["template"]["spec"];
    let security = &spec["containers"][0]["securityContext"];
    let added: BTreeSet<String> = security["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("CAP_{}", c.as_str().unwrap()))
        .collect();
    assert_eq!(added, expected);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(security["privileged"], false);
    assert_eq!(spec["hostPID"], true);

    let unit = std::fs::read_to_string(deploy_dir().join("systemd/sightline.service")).unwrap();
    for key in ["CapabilityBoundingSet=", "AmbientCapabilities="] {
        let line = unit
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in the unit"));
        let listed: BTreeSet<String> = line.split_whitespace().map(str::to_string).collect();
        assert_eq!(listed, expected, "{key}");
    }
}

#[test]
fn the_agent_captures_with_its_capabilities_and_no_others() {
    let caps: Vec<String> = agent_capabilities()
        .iter()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let bounding = format!("--bounding-set=-all,{}", caps.join(","));
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("hello.txt"), "hello\n").unwrap();
    let (_server, port) = python_http_server(site.path(), "127.0.0.1");
    let mut agent = Agent::start_wrapped(&["setpriv", &bounding], &[]);

    // Exactly those capabilities, effective.
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).unwrap();
    let effective = sightline::probes::preflight::parse_cap_eff(&status).unwrap();
    let expected: u64 = sightline::probes::capabilities::CAPABILITIES
        .iter()
        .map(|c| 1u64 << c.number)
        .sum();
    assert_eq!(effective, expected, "{status}");

    curl(&[&format!("http://127.0.0.1:{port}/hello.txt")]);
    let nginx = tls_nginx(&mut agent);
    let (_, body) = curl(&["-k", &format!("https://127.0.0.1:{}/hello.txt", nginx.port)]);
    assert_eq!(body, "hello over tls\n");
    let calls = agent.wait_for_calls("the plaintext and TLS calls", |c| {
        calls_on_port(c, "server", port).len() == 1
            && calls_on_port(c, "server", nginx.port).len() == 1
    });
    let tls = calls_on_port(&calls, "server", nginx.port);
    assert_eq!(tls[0]["tls.library"], "openssl");
    assert_eq!(tls[0]["url.path"], "/hello.txt");
    let log = agent.stop();
    assert!(!log.contains("missing capability"), "{log}");
    assert!(!log.contains("attaching TLS probes failed"), "{log}");
}

fn health(args: &[&str]) -> (bool, String) {
    let out = Command::new(agent_binary())
        .arg("health")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

#[test]
fn health_answers_and_sigterm_leaves_no_probe_and_a_consistent_database() {
    let before = loaded_program_ids();
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("hello.txt"), "hello\n").unwrap();
    let (_server, port) = python_http_server(site.path(), "127.0.0.1");
    let mut agent = Agent::start(&["--health-listen", "127.0.0.1:9467"]);
    assert_eq!(health(&[]), (true, "sightline: ready".to_string()));
    assert_eq!(health(&["--live"]), (true, "sightline: ok".to_string()));
    let ours: BTreeSet<u64> = loaded_program_ids().difference(&before).copied().collect();
    assert!(ours.len() >= 20, "the agent's programs: {ours:?}");

    curl(&[&format!("http://127.0.0.1:{port}/hello.txt")]);
    agent.wait_for_calls("the call", |c| calls_on_port(c, "server", port).len() == 1);
    let log = agent.stop_with(libc::SIGTERM);
    assert!(log.contains("stopped"), "{log}");

    let left: Vec<u64> = loaded_program_ids().intersection(&ours).copied().collect();
    assert!(
        left.is_empty(),
        "programs still loaded after SIGTERM: {left:?}"
    );
    let (ok, line) = health(&[]);
    assert!(
        !ok && line.starts_with("sightline: error: asking 127.0.0.1:9467: "),
        "{line}"
    );

    // The database: intact, with the endpoint the call made, readable by another SQLite.
    assert_eq!(sqlite_check(&agent.db()), "ok\n1\n");
    let inventory = Agent::inventory(&agent.db());
    assert_eq!(inventory.len(), 1, "{inventory:#?}");
    assert_eq!(inventory[0]["route"], "/hello.txt");
}

/// SQLite's own integrity check of `db` and its endpoint count, as another program sees them.
fn sqlite_check(db: &Path) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); \
             print(c.execute('pragma integrity_check').fetchone()[0]); \
             print(c.execute('select count(*) from endpoints').fetchone()[0])",
        )
        .arg(db)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The calls of `route` in the inventory at `db` (0 when absent).
fn inventory_calls(db: &Path, route: &str) -> u64 {
    Agent::inventory(db)
        .iter()
        .filter(|e| e["route"] == route && e["direction"] == "served")
        .filter_map(|e| e["calls"].as_u64())
        .sum()
}

/// kill -9 while traffic flows, then a restart: the kernel lets go of every program (nothing is
/// pinned: they live as long as the agent's descriptors), the traced server and its clients
/// never notice, and the inventory kept in SQLite is intact and goes on counting.
#[test]
fn kill_9_during_traffic_leaves_nothing_loaded_and_a_restart_keeps_the_inventory() {
    let before = loaded_program_ids();
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("hello.txt"), "hello\n").unwrap();
    let (_server, port) = python_http_server(site.path(), "127.0.0.1");
    let url = format!("http://127.0.0.1:{port}/hello.txt");
    let state = tempfile::tempdir().unwrap();
    let db = state.path().join("inventory.sqlite");
    let db_arg = db.to_str().unwrap().to_string();
    let mut agent = Agent::start(&["--inventory-db", &db_arg]);
    let ours: BTreeSet<u64> = loaded_program_ids().difference(&before).copied().collect();
    assert!(ours.len() >= 20, "the agent's programs: {ours:?}");
    for _ in 0..3 {
        curl(&[&url]);
    }
    agent.wait_until("the calls in the database", |_| {
        inventory_calls(&db, "/hello.txt") == 3
    });

    // Calls keep going while the agent dies; each must still get its answer.
    let traffic = {
        let url = url.clone();
        std::thread::spawn(move || {
            (0..30)
                .map(|_| curl(&[&url]).1)
                .filter(|body| body == "hello\n")
                .count()
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    agent.kill_9();
    assert_eq!(traffic.join().unwrap(), 30);
    // Closing the agent's descriptors frees its programs; the kernel may take a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let left = loop {
        let left: Vec<u64> = loaded_program_ids().intersection(&ours).copied().collect();
        if left.is_empty() || std::time::Instant::now() > deadline {
            break left;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(
        left.is_empty(),
        "programs still loaded after kill -9: {left:?}"
    );
    assert!(
        std::fs::read_dir("/sys/fs/bpf").map_or(true, |d| d.count() == 0),
        "something pinned under /sys/fs/bpf"
    );
    assert_eq!(sqlite_check(&db), "ok\n1\n");
    let kept = inventory_calls(&db, "/hello.txt");
    assert!(kept >= 3, "the calls written before the kill: {kept}");

    let mut agent = Agent::start(&["--inventory-db", &db_arg]);
    curl(&[&url]);
    agent.wait_until("the restarted agent to count on", |_| {
        inventory_calls(&db, "/hello.txt") > kept
    });
    agent.stop();
    assert_eq!(sqlite_check(&db), "ok\n1\n");
}

/// The sockets `pid` listens on (TCP in LISTEN, and any bound UDP socket), as "address:port" in
/// /proc/net's hexadecimal form, found through the inodes of its descriptors.
fn listening_sockets(pid: u32) -> Vec<String> {
    let inodes: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let text = target.to_string_lossy().into_owned();
            Some(
                text.strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let mut listening = Vec::new();
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (fields[1], fields[3], fields[9]);
            let listens = table.starts_with("udp") || state == "0A";
            if listens && inodes.contains(inode) {
                listening.push(format!("{table} {local}"));
            }
        }
    }
    listening
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Least privilege on the host: by default the agent listens on nothing; asked for a health
/// port it listens there only; every file it creates is readable by its owner alone.
#[test]
fn nothing_listens_by_default_and_every_file_is_private() {
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("hello.txt"), "hello\n").unwrap();
    let (_server, port) = python_http_server(site.path(), "127.0.0.1");
    let mut agent = Agent::start(&[]);
    curl(&[&format!("http://127.0.0.1:{port}/hello.txt")]);
    agent.wait_for_calls("the call", |c| calls_on_port(c, "server", port).len() == 1);
    assert_eq!(listening_sockets(agent.pid()), Vec::<String>::new());
    // The inventory is written on its own schedule: wait for the endpoint to be in it.
    let db = agent.db();
    agent.wait_until("the endpoint in the database", |_| {
        Command::new(agent_binary())
            .args(["inventory", "--format", "json", "--db"])
            .arg(&db)
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("/hello.txt"))
    });
    let dir = agent.dir().to_path_buf();
    let files = [
        "inventory.sqlite",
        "inventory.sqlite-wal",
        "fingerprint.key",
        "tls.json",
        "calls.jsonl",
        "events.jsonl",
    ];
    for file in files {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    agent.stop();

    let health = free_port();
    let address = format!("127.0.0.1:{health}");
    let agent = Agent::start(&["--health-listen", &address]);
    assert_eq!(
        listening_sockets(agent.pid()),
        vec![format!("tcp 0100007F:{health:04X}")]
    );
}
