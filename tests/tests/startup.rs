//! Start-up checks: a missing privilege gives one clear line; tracefs is mounted when missing.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use sightline_tests::{Agent, agent_binary, calls_on_port, curl, keepalive_server};

#[test]
fn missing_privileges_give_one_clear_line() {
    // The agent as an unprivileged user, with no capabilities at all.
    let mut command = Command::new("setpriv");
    command
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(agent_binary());
    let stderr = one_line_failure(command);
    assert!(
        stderr.starts_with(
            "sightline: error: missing capabilities: sightline needs CAP_BPF and CAP_PERFMON"
        ),
        "{stderr}"
    );
}

/// Runs `command` (the agent), which must fail with exit code 1 and one line on stderr (no
/// panic, no backtrace); returns the line.
fn one_line_failure(mut command: Command) -> String {
    let out = command.env("RUST_LOG", "off").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("sightline: error: "), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"));
    stderr
}

#[test]
fn tracefs_is_mounted_when_missing() {
    // Unmount every tracefs mount, as on a fresh host.
    let umount = |path: &str| {
        Command::new("umount")
            .arg(path)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    while umount("/sys/kernel/tracing") {}
    umount("/sys/kernel/debug/tracing");
    assert!(!std::path::Path::new("/sys/kernel/tracing/events").exists());

    let (_server, port) = keepalive_server();
    let mut agent = Agent::start(&[]);
    assert!(std::path::Path::new("/sys/kernel/tracing/events").exists());
    curl(&[&format!("http://127.0.0.1:{port}/traced")]);
    agent.wait_for_calls("the call", |c| calls_on_port(c, "client", port).len() == 1);
    let log = agent.stop();
    assert!(log.contains("tracefs is not mounted; mounting it"), "{log}");
}

#[test]
fn a_bad_config_file_is_one_line_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "agent.yaml",
            "identity:\n  host_name: edge\nkubernetes:\n  moed: on\n",
            ":4:3: kubernetes: unknown field `moed`, expected one of `mode`, `kubeconfig`, `node_name`",
        ),
        (
            "agent.toml",
            "[[service_rules]]\nname = \"orders\"\nprot = 8080\n",
            ":3:1: unknown field `prot`",
        ),
        (
            "kube.toml",
            "[kubernetes]\nkubeconfig = \"missing-kubeconfig.yaml\"\n",
            "missing-kubeconfig.yaml",
        ),
    ];
    for (name, text, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let mut command = Command::new(agent_binary());
        command.arg("--config").arg(&path);
        let stderr = one_line_failure(command);
        assert!(stderr.contains(expected), "{name}: {stderr}");
        if !name.starts_with("kube") {
            assert!(stderr.contains(&format!("{}:", path.display())), "{stderr}");
        }
    }
}
