//! A kernel that refuses some programs: the agent runs without what they give, says so once,
//! and `sightline check` says what is off; it stops (one line) only when the syscall capture
//! cannot load. No kernel of the matrix refuses anything now, so the refusals are simulated
//! ($SIGHTLINE_SIMULATE_REFUSED, agent/src/probes/simulate.rs) on the host's kernel.
#![allow(clippy::unwrap_used)]

use std::{collections::BTreeSet, process::Command};

use sightline_tests::{
    Agent, agent_binary, bpf_programs, calls_on_port, certificate, curl, openssl_s_server,
    python_http_server,
};

const REFUSE: &str = "SIGHTLINE_SIMULATE_REFUSED";

/// The running kernel's release, as the agent names it.
fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap()
        .trim()
        .to_string()
}

/// Names of the BPF programs loaded now (the kernel keeps the first 15 characters).
fn loaded_program_names() -> BTreeSet<String> {
    bpf_programs()
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect()
}

/// `sightline check ARGS` with `env` set: (exit code, stdout, stderr).
fn check(env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let out = Command::new(agent_binary())
        .arg("check")
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// OpenSSL's `tls_return` refused: one warning naming the program, the kernel and the reason;
/// plaintext capture goes on; OpenSSL's connections are reported as not captured with that
/// reason, and none of the TLS library programs stays loaded.
#[test]
fn a_refused_tls_program_turns_tls_off_with_one_warning_and_capture_goes_on() {
    let before = loaded_program_names();
    let mut agent = Agent::start_wrapped(&["env", &format!("{REFUSE}=tls_return")], &[]);
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("plain.txt"), "plain\n").unwrap();
    let (_plain_server, plain_port) = python_http_server(site.path(), "127.0.0.1");
    curl(&[&format!("http://127.0.0.1:{plain_port}/plain.txt")]);

    let cert = certificate();
    let (tls_server, tls_port) = openssl_s_server(&cert);
    let expected_error = format!(
        "TLS probes not loaded: kernel {} refused tls_return: refused on request (${REFUSE})",
        kernel()
    );
    agent.wait_until("the TLS report to name the refused program", |a| {
        a.tls_process(tls_server.pid()).is_some_and(|p| {
            p["libraries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["library"] == "openssl" && l["error"] == expected_error.as_str())
        })
    });
    let loaded_during = loaded_program_names();
    curl(&["-k", &format!("https://127.0.0.1:{tls_port}/tls/off")]);
    let calls = agent.collect(plain_port, 1, 1);

    for kind in ["client", "server"] {
        let plain = calls_on_port(&calls, kind, plain_port);
        assert_eq!(plain.len(), 1, "{calls:#?}");
        assert_eq!(plain[0]["url.path"], "/plain.txt");
    }
    assert!(
        calls.iter().all(|c| c["url.path"] != "/tls/off"),
        "no plaintext from OpenSSL: {calls:#?}"
    );
    let new: BTreeSet<&String> = loaded_during.difference(&before).collect();
    assert!(new.contains(&"go_tls_return".to_string()), "{new:?}");
    assert!(
        !new.iter()
            .any(|n| n.starts_with("tls_") || n.starts_with("bio_")),
        "the refused feature's programs are unloaded: {new:?}"
    );
    let log = agent.stderr();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("the kernel refused a program"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    for field in [
        "feature=\"tls_libraries\"",
        "program=\"tls_return\"",
        &format!("kernel=\"{}\"", kernel()),
        &format!("reason=\"refused on request (${REFUSE})\""),
    ] {
        assert!(warnings[0].contains(field), "{field}: {}", warnings[0]);
    }
}

/// `--no-tls` loads no TLS program at all, nor the mmap probe that only serves TLS.
#[test]
fn no_tls_loads_no_tls_program() {
    let before = loaded_program_names();
    let mut agent = Agent::start(&["--no-tls"]);
    let new: BTreeSet<String> = loaded_program_names()
        .difference(&before)
        .cloned()
        .collect();
    agent.stop();
    let expected: BTreeSet<String> = [
        "enter_read",
        "enter_write",
        "enter_readv",
        "enter_writev",
        "enter_recvfrom",
        "enter_sendto",
        "enter_recvmsg",
        "enter_sendmsg",
        "enter_sendfile",
        "enter_connect",
        "enter_close",
        "exit_socket_io",
        "exit_accept",
        "sched_exec",
        "sched_exit",
        "cgroup_mkdir",
    ]
    .iter()
    .map(|n| n.to_string())
    .collect();
    assert_eq!(new, expected);
}

/// The benchmark's floor (`--bench-empty-programs`): the empty twins, and only they, are
/// loaded, at the same hooks (the TLS uprobes attach to OpenSSL as usual), and nothing is
/// captured: plaintext and TLS calls made meanwhile give no call.
#[test]
fn the_benchmark_floor_attaches_empty_programs_and_captures_nothing() {
    // Servers first: without the exec and mmap events (empty too) a process started later is
    // probed at the next rescan only. The benchmark starts its servers first as well.
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("plain.txt"), "plain\n").unwrap();
    let (_plain_server, plain_port) = python_http_server(site.path(), "127.0.0.1");
    let cert = certificate();
    let (tls_server, tls_port) = openssl_s_server(&cert);
    let before = loaded_program_names();
    let mut agent = Agent::start(&["--bench-empty-programs"]);
    let new: BTreeSet<String> = loaded_program_names()
        .difference(&before)
        .cloned()
        .collect();
    let expected: BTreeSet<String> = ["empty_tracepoint", "empty_uprobe", "empty_uretprobe"]
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(new, expected);
    agent.wait_tls_ready(tls_server.pid(), "openssl");
    curl(&[&format!("http://127.0.0.1:{plain_port}/plain.txt")]);
    curl(&["-k", &format!("https://127.0.0.1:{tls_port}/floor")]);
    agent.stop();
    assert_eq!(agent.calls(), Vec::<serde_json::Value>::new());
}

/// `sightline check` names what the kernel refused and still says the agent can run (exit 0;
/// `--strict` makes it exit 1); a refused capture program is one line and exit 1, for the
/// check and the agent alike.
#[test]
fn check_says_what_is_off_and_fails_when_the_capture_cannot_load() {
    let refuse_go = [(REFUSE, "go_tls_return")];
    let (code, stdout, stderr) = check(&refuse_go, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let go_line = stdout.lines().find(|l| l.starts_with("go_tls ")).unwrap();
    assert_eq!(
        go_line,
        format!(
            "go_tls          off: the kernel refused go_tls_return: refused on request \
             (${REFUSE}); no plaintext from Go's crypto/tls: its connections are reported as \
             TLS, uncaptured"
        )
    );
    assert!(stdout.contains("\ntls_libraries   on\n"), "{stdout}");
    assert_eq!(
        stderr,
        "sightline: this host can run the agent, without: go_tls\n"
    );
    let (code, _, stderr) = check(&refuse_go, &["--strict"]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        "sightline: error: the agent would run without: go_tls\n"
    );

    let fatal = format!(
        "sightline: error: kernel {} refused program exit_socket_io, which the capture needs: \
         refused on request (${REFUSE})\n",
        kernel()
    );
    let refuse_capture = [(REFUSE, "exit_socket_io")];
    let (code, stdout, stderr) = check(&refuse_capture, &[]);
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (1, "", fatal.as_str())
    );
    let out = Command::new(agent_binary())
        .args(["--output", "json"])
        .envs(refuse_capture)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), fatal);
}
