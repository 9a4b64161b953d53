//! The kernel matrix's smoke suite: `cargo xtask test` runs it on the host's kernel with the
//! other integration tests, then again inside a virtual machine booted on each kernel Debian's
//! packages offer (xtask/src/kernels.rs). One test per capability an older verifier could take
//! away: every program loads, plaintext HTTP/1 at both ends, a socket shared by fork (the
//! file reference count's layout changed in 6.13), TLS through OpenSSL and through Go's
//! crypto/tls, HTTP/2, and the inventory and a finding written. Short on purpose: the
//! guests run under emulation, several times slower than the host.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use serde_json::Value;
use sightline_tests::{
    Agent, agent_binary, calls_on_port, certificate, curl, go_tls_fixture, go_tls_request,
    go_tls_server, nghttpd, openssl_s_server, python_http_server, report, the_one,
};

/// The one call of `kind` ("client" or "server") for `path` on `port`, answered `status`, made
/// (client) or served (server) by process `pid`, over TLS from `library` when given.
fn the_call<'a>(
    calls: &'a [Value],
    kind: &str,
    port: u16,
    path: &str,
    status: u64,
    pid: u32,
    library: Option<&str>,
) -> &'a Value {
    let found: Vec<&Value> = calls_on_port(calls, kind, port)
        .into_iter()
        .filter(|c| c["url.path"] == path)
        .collect();
    assert_eq!(found.len(), 1, "one {kind} call for {path}: {calls:#?}");
    let call = found[0];
    assert_eq!(call["http.request.method"], "GET", "{call:#}");
    assert_eq!(call["http.response.status_code"], status, "{call:#}");
    assert_eq!(call["process.pid"], pid, "{call:#}");
    assert_eq!(call["tls"], library.is_some(), "{call:#}");
    if let Some(library) = library {
        assert_eq!(call["tls.library"], library, "{call:#}");
    }
    call
}

/// Both ends of one call, each naming the other's process.
fn assert_both_ends(
    calls: &[Value],
    port: u16,
    path: &str,
    (client_pid, server_pid): (u32, u32),
    library: Option<&str>,
) {
    let client = the_call(calls, "client", port, path, 200, client_pid, library);
    let server = the_call(calls, "server", port, path, 200, server_pid, library);
    assert_eq!(client["peer.process.pid"], server_pid, "{client:#}");
    assert_eq!(server["peer.process.pid"], client_pid, "{server:#}");
}

/// `sightline check --strict` loads every program the agent would (the verifier is the judge)
/// and says each feature is on, in both forms of the capture programs.
#[test]
fn every_program_loads_on_this_kernel() {
    let out = Command::new(agent_binary())
        .args(["check", "--strict"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    let features: Vec<&str> = stdout
        .lines()
        .filter(|l| l.ends_with(" on"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        features,
        [
            "capture",
            "process_events",
            "library_loads",
            "tls_libraries",
            "go_tls"
        ],
        "{stdout}"
    );
    assert!(
        stdout.contains("bpf_loop        ok"),
        "every kernel in the matrix has bpf_loop: {stdout}"
    );
    assert!(
        stderr.contains("sightline: this host can run the agent\n"),
        "{stderr}"
    );

    // The form kernels before 5.17 load (iovecs copied by an unrolled loop, no bpf_loop):
    // judged by this kernel's verifier too.
    let out = Command::new(agent_binary())
        .args(["check", "--strict"])
        .env("SIGHTLINE_SIMULATE_NO_BPF_LOOP", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("\nbpf_loop        no (Linux 5.17+)"),
        "{stdout}"
    );
    assert!(stdout.contains("\ncapture         on\n"), "{stdout}");
}

/// curl against Python's http.server with an unsigned JWT: the call at both ends, its endpoint
/// in the inventory database and the `jwt-alg-none` finding stored, the token in no output.
#[test]
fn plaintext_http1_at_both_ends_with_its_endpoint_and_finding_stored() {
    // {"alg":"none"}.{"sub":"smoke"}. : accepted (200) by a server that checks nothing.
    const TOKEN: &str = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJzbW9rZSJ9.";
    let mut agent = Agent::start(&[]);
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("smoke.txt"), "smoke\n").unwrap();
    let (server, port) = python_http_server(site.path(), "127.0.0.1");
    let (client_pid, body) = curl(&[
        "-H",
        &format!("Authorization: Bearer {TOKEN}"),
        &format!("http://127.0.0.1:{port}/smoke.txt"),
    ]);
    assert_eq!(body, "smoke\n");
    let calls = agent.collect(port, 1, 1);
    assert_both_ends(&calls, port, "/smoke.txt", (client_pid, server.pid()), None);

    let served = Agent::inventory(&agent.db());
    let endpoint = the_one(&served, "the served endpoint", |e| {
        e["direction"] == "served" && e["route"] == "/smoke.txt"
    });
    assert_eq!(endpoint["calls"], 1, "{endpoint:#}");
    let stored: Vec<Value> =
        serde_json::from_slice(&report("findings", &agent.db(), &["--format", "json"])).unwrap();
    let finding = the_one(&stored, "the jwt-alg-none finding", |f| {
        f["sightline.finding.rule_id"] == "SL-JWT-001"
    });
    assert_eq!(finding["http.route"], "/smoke.txt", "{finding:#}");
    assert_eq!(
        finding["sightline.finding.severity"], "critical",
        "{finding:#}"
    );
    assert!(
        !agent.all_output().contains(TOKEN),
        "the token reached an output"
    );
}

/// busybox httpd: the parent accepts and closes its copy, a forked child serves on descriptors
/// 0 and 1. The file reference count (`f_count` before Linux 6.13, `f_ref` since) says which
/// close ends the connection: the server call is whole, served by the child.
#[test]
fn a_socket_shared_by_fork_ends_with_its_last_descriptor() {
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("fork.txt"), "fork\n").unwrap();
    let port = sightline_tests::free_port();
    let mut httpd = Command::new("busybox");
    httpd
        .args(["httpd", "-f", "-p", &format!("127.0.0.1:{port}"), "-h"])
        .arg(site.path());
    let server = sightline_tests::Program::spawn(httpd);
    sightline_tests::wait_for_port(port);
    let mut agent = Agent::start(&[]);
    let (client_pid, body) = curl(&[&format!("http://127.0.0.1:{port}/fork.txt")]);
    assert_eq!(body, "fork\n");
    let calls = agent.collect(port, 1, 1);
    let client = the_call(&calls, "client", port, "/fork.txt", 200, client_pid, None);
    let served = calls_on_port(&calls, "server", port);
    assert_eq!(served.len(), 1, "{calls:#?}");
    let call = served[0];
    assert_eq!(call["http.response.status_code"], 200, "{call:#}");
    assert_eq!(
        call["sightline.connection.joined_midstream"], false,
        "{call:#}"
    );
    assert_ne!(call["process.pid"], server.pid(), "{call:#}");
    assert_eq!(
        client["peer.process.pid"], call["process.pid"],
        "{client:#}"
    );
}

/// curl against `openssl s_server`: the plaintext from OpenSSL's uprobes at both ends.
#[test]
fn openssl_tls_at_both_ends() {
    let mut agent = Agent::start(&[]);
    let cert = certificate();
    let (server, port) = openssl_s_server(&cert);
    agent.wait_tls_ready(server.pid(), "openssl");
    let (client_pid, body) = curl(&["-k", &format!("https://127.0.0.1:{port}/tls/smoke")]);
    assert!(body.contains("s_server"), "s_server -www answers: {body}");
    let calls = agent.collect(port, 1, 1);
    assert_both_ends(
        &calls,
        port,
        "/tls/smoke",
        (client_pid, server.pid()),
        Some("openssl"),
    );
}

/// A Go client and server (Debian's Go, with symbols): the plaintext from the crypto/tls
/// uprobes, reads included (probed at the RET instructions of `(*Conn).Read`).
#[test]
fn go_crypto_tls_at_both_ends() {
    let binary = go_tls_fixture(false);
    let mut agent = Agent::start(&[]);
    let server = go_tls_server(&binary, &mut agent);
    let port = server.port;
    let (client_pid, printed) = go_tls_request(&binary, port, "/go/ok", Some(&mut agent));
    assert_eq!(printed, ["200"]);
    let calls = agent.collect(port, 1, 1);
    assert_both_ends(
        &calls,
        port,
        "/go/ok",
        (client_pid, server.program.pid()),
        Some("go-crypto-tls"),
    );
}

/// nghttp against nghttpd in cleartext (HTTP/2 by prior knowledge): one request, both ends.
#[test]
fn http2_at_both_ends() {
    let mut agent = Agent::start(&[]);
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("h2.txt"), "h2\n").unwrap();
    let (server, port) = nghttpd(site.path());
    let client = Command::new("nghttp")
        .arg(format!("http://127.0.0.1:{port}/h2.txt"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client_pid = client.id();
    assert!(client.wait_with_output().unwrap().status.success());
    let calls = agent.collect(port, 1, 1);
    assert_both_ends(&calls, port, "/h2.txt", (client_pid, server.pid()), None);
    let ends = [
        calls_on_port(&calls, "client", port)[0],
        calls_on_port(&calls, "server", port)[0],
    ];
    for call in ends {
        assert_eq!(call["network.protocol.version"], "2", "{call:#}");
    }
    // nghttp opens its request on a stream after the ones it uses for priorities: both ends
    // name the same one.
    assert!(ends[0]["sightline.http2.stream_id"].as_u64().is_some());
    assert_eq!(
        ends[0]["sightline.http2.stream_id"],
        ends[1]["sightline.http2.stream_id"]
    );
}
