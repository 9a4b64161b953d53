//! The container image, built for real from deploy/Dockerfile (the base image a Debian 12 made
//! by debootstrap and imported, the agent the binary under test: `AGENT_FROM=prebuilt`), run by
//! a real Docker engine as the DaemonSet runs it: host PID namespace, root with the manifest's
//! capabilities only, read-only root file system, no privilege escalation, the manifest's host
//! mounts, arguments and environment, all read from `kubectl kustomize deploy/kubernetes/base`.
//! In that container the agent captures a busybox httpd container called from the host and from
//! another container, names both ends in its inventory, answers its health probe, and on
//! SIGTERM exits 0 with nothing left loaded.
#![allow(clippy::unwrap_used)]

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use sightline_tests::{
    Agent, agent_binary, curl, curl_status,
    docker::{self, Container, DEBIAN_IMAGE, DOCKER, Engine},
    loaded_program_ids,
    manifests::{deploy_dir, kustomize, object},
    patience,
};

/// Capabilities Docker 20.10 does not know (its list predates Linux 5.8). CAP_SYS_ADMIN, which
/// the manifest grants as well, covers both: the kernel's `bpf_capable()` and
/// `perfmon_capable()` accept it. A Kubernetes runtime grants them by name.
const UNKNOWN_TO_DOCKER_20: &[&str] = &["BPF", "PERFMON"];

/// Capability numbers (linux/capability.h) of what the agent's process must hold.
fn capability_bit(name: &str) -> u32 {
    match name {
        "DAC_READ_SEARCH" => 2,
        "SYS_PTRACE" => 19,
        "SYS_ADMIN" => 21,
        "PERFMON" => 38,
        "BPF" => 39,
        other => panic!("capability {other} not known to the test"),
    }
}

/// Where the test puts what the cluster would provide: the state directory (a hostPath on the
/// node; here a temporary one), the config file (a ConfigMap; here Kubernetes off, there is no
/// API server) and the specs directory (an optional ConfigMap; empty).
struct Volumes<'a> {
    state: &'a Path,
    config: &'a Path,
    specs: &'a Path,
}

/// `docker run` options for the DaemonSet's container, read from the manifest.
fn run_options(daemonset: &Value, volumes: &Volumes<'_>) -> Vec<String> {
    let pod = &daemonset["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    let mut options: Vec<String> = Vec::new();
    let mut add = |items: &[&str]| options.extend(items.iter().map(|s| s.to_string()));
    assert_eq!(pod["hostPID"], true);
    add(&["--pid=host"]);
    assert_eq!(security["privileged"], false);
    add(&[
        "--user",
        &security["runAsUser"].as_u64().unwrap().to_string(),
    ]);
    if security["readOnlyRootFilesystem"] == true {
        add(&["--read-only"]);
    }
    if security["allowPrivilegeEscalation"] == false {
        add(&["--security-opt", "no-new-privileges"]);
    }
    for (field, option) in [
        ("seccompProfile", "seccomp"),
        ("appArmorProfile", "apparmor"),
    ] {
        assert_eq!(security[field]["type"], "Unconfined");
        add(&["--security-opt", &format!("{option}=unconfined")]);
    }
    for dropped in security["capabilities"]["drop"].as_array().unwrap() {
        add(&["--cap-drop", dropped.as_str().unwrap()]);
    }
    for added in capabilities(daemonset) {
        if !UNKNOWN_TO_DOCKER_20.contains(&added.as_str()) {
            add(&["--cap-add", &added]);
        }
    }
    for mount in container["volumeMounts"].as_array().unwrap() {
        let name = mount["name"].as_str().unwrap();
        let target = mount["mountPath"].as_str().unwrap();
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap();
        let source = match (name, &volume["hostPath"]["path"]) {
            ("state", _) => volumes.state.display().to_string(),
            (_, Value::String(host)) => host.clone(),
            ("config", _) => volumes.config.display().to_string(),
            ("specs", _) => volumes.specs.display().to_string(),
            (_, _) if volume["emptyDir"].is_object() => {
                add(&["--tmpfs", target]);
                continue;
            }
            _ => panic!("volume {name}: a kind this test does not map yet: {volume}"),
        };
        let read_only = if mount["readOnly"] == true { ":ro" } else { "" };
        add(&["-v", &format!("{source}:{target}{read_only}")]);
    }
    for env in container["env"].as_array().unwrap() {
        let name = env["name"].as_str().unwrap();
        let value = match (name, &env["value"]) {
            // The cluster's collector: here the container's own loopback, where nothing
            // listens (no test traffic leaves the machine; export is the OTLP tests' subject).
            ("OTEL_EXPORTER_OTLP_ENDPOINT", _) => "http://127.0.0.1:4317".to_string(),
            (_, Value::String(value)) => value.clone(),
            _ if env["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName" => {
                sightline_tests::kernel_host_name()
            }
            _ => panic!("env {name}: a source this test does not map yet: {env}"),
        };
        add(&["-e", &format!("{name}={value}")]);
    }
    options
}

/// The capabilities the DaemonSet adds.
fn capabilities(daemonset: &Value) -> Vec<String> {
    daemonset["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

/// Builds the image from deploy/Dockerfile with the binary under test, returns its tag.
fn build_image() -> String {
    let tag = format!("sightline-test/agent:{}", std::process::id());
    let context = tempfile::tempdir().unwrap();
    std::fs::copy(agent_binary(), context.path().join("sightline")).unwrap();
    let out = Command::new(DOCKER)
        .env("DOCKER_BUILDKIT", "1")
        .arg("build")
        .arg("-f")
        .arg(deploy_dir().join("Dockerfile"))
        .args(["--build-arg", &format!("BASE_IMAGE={DEBIAN_IMAGE}")])
        .args(["--build-arg", "AGENT_FROM=prebuilt", "-t", &tag])
        .arg(context.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tag
}

/// Polls `done` until true (at most the tests' patience), saying `what` otherwise.
fn wait_for(what: &str, mut done: impl FnMut() -> bool, logs_of: &str) {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > patience() {
            let logs = Command::new(DOCKER)
                .args(["logs", logs_of])
                .output()
                .unwrap();
            panic!(
                "{what} never happened; agent log:\n{}",
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `sightline health` inside the agent's container, as the probes run it.
fn health(container: &str, extra: &[&str]) -> bool {
    let mut args = vec!["exec", container, "/usr/local/bin/sightline", "health"];
    args.extend_from_slice(extra);
    Command::new(DOCKER)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn the_image_runs_as_the_daemonset_runs_it_and_captures_containers_and_the_host() {
    docker::debian_image();
    let image = build_image();
    let objects = kustomize("base");
    let daemonset = object(&objects, "DaemonSet");
    let container = &daemonset["spec"]["template"]["spec"]["containers"][0];
    let dir = tempfile::tempdir().unwrap();
    let (state, specs, config) = (
        dir.path().join("state"),
        dir.path().join("specs"),
        dir.path().join("sightline.yaml"),
    );
    std::fs::create_dir(&state).unwrap();
    std::fs::create_dir(&specs).unwrap();
    std::fs::write(&config, "kubernetes:\n  mode: \"off\"\n").unwrap();
    let volumes = Volumes {
        state: &state,
        config: &config,
        specs: &specs,
    };

    let tag = std::process::id();
    let web = Container::run(
        &format!("sl-img-web-{tag}"),
        &["httpd", "-f", "-p", "80", "-h", "/www"],
    );
    let ip = web.ip();
    let url = |page: &str| format!("http://{ip}/{page}.html");
    let start = Instant::now();
    while curl_status(None, &[&url("index")]) != "200" {
        assert!(start.elapsed() < patience(), "httpd in {}", web.name);
        std::thread::sleep(Duration::from_millis(100));
    }

    let before = loaded_program_ids();
    let agent_name = format!("sl-img-agent-{tag}");
    let mut run: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "--name".into(),
        agent_name.clone(),
    ];
    run.extend(run_options(daemonset, &volumes));
    run.push(image.clone());
    run.extend(
        container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string()),
    );
    // The one addition to the manifest: this node runs Docker without Kubernetes, so container
    // names come from Docker's state files (in a cluster they come from the API server).
    let docker_state = "/var/lib/docker/containers:/var/lib/docker/containers:ro";
    let image_at = run.iter().position(|a| *a == image).unwrap();
    run.splice(
        image_at..image_at,
        ["-v".to_string(), docker_state.to_string()],
    );
    let args: Vec<&str> = run.iter().map(String::as_str).collect();
    let agent = Container {
        engine: Engine::Docker,
        name: agent_name.clone(),
        id: docker::docker(&args),
    };
    wait_for(
        "the startup probe",
        || health(&agent.name, &[]),
        &agent.name,
    );
    assert!(health(&agent.name, &["--live"]));

    // Exactly the manifest's capabilities (those Docker 20.10 cannot name through SYS_ADMIN).
    let pid = docker::docker(&["inspect", "-f", "{{.State.Pid}}", &agent.name]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
        .unwrap();
    let expected = capabilities(daemonset)
        .iter()
        .filter(|c| !UNKNOWN_TO_DOCKER_20.contains(&c.as_str()))
        .fold(0u64, |mask, c| mask | 1 << capability_bit(c));
    assert_eq!(effective, expected, "CapEff {effective:#x}");

    let (_, body) = curl(&[&url("a")]);
    assert_eq!(body, "a");
    let client = Container::run(
        &format!("sl-img-client-{tag}"),
        &["sh", "-c", &format!("wget -q -O - {}; sleep 60", url("b"))],
    );
    let db = state.join("inventory.sqlite");
    let served = |inventory: &[Value]| -> Vec<(String, String, u64, Vec<String>)> {
        let mut rows: Vec<_> = inventory
            .iter()
            .filter(|e| e["direction"] == "served" && e["api"] == web.name.as_str())
            .map(|e| {
                let clients = e["clients"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_str().unwrap_or("").to_string())
                    .collect();
                (
                    e["method"].as_str().unwrap().to_string(),
                    e["route"].as_str().unwrap().to_string(),
                    e["calls"].as_u64().unwrap(),
                    clients,
                )
            })
            .collect();
        rows.sort();
        rows
    };
    let start = Instant::now();
    while !(db.exists() && served(&Agent::inventory(&db)).len() == 2) {
        let inventory = if db.exists() {
            Agent::inventory(&db)
        } else {
            Vec::new()
        };
        assert!(
            start.elapsed() < patience(),
            "both calls never reached the inventory: {inventory:#?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        served(&Agent::inventory(&db)),
        [
            ("GET".into(), "/a.html".into(), 1, vec!["curl".to_string()]),
            ("GET".into(), "/b.html".into(), 1, vec![client.name.clone()]),
        ]
    );

    docker::docker(&["stop", "-t", "30", &agent.name]);
    let exit = docker::docker(&["inspect", "-f", "{{.State.ExitCode}}", &agent.name]);
    assert_eq!(exit, "0");
    let left: Vec<u64> = loaded_program_ids().difference(&before).copied().collect();
    assert!(left.is_empty(), "programs left loaded: {left:?}");
    docker::docker(&["rmi", "-f", &image]);
}
