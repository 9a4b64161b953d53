//! TLS plaintext captured end to end with the real uprobes: curl against `openssl s_server` and
//! nginx, Python, Node.js and Go (built here, unstripped and stripped) clients and servers,
//! GnuTLS's client, a libssl loaded with dlopen after the agent started, and a Java client the
//! coverage report must name as not covered. Every call is checked at both ends, exactly, with
//! no duplicate from the ciphertext the syscall probes also see.
#![allow(clippy::unwrap_used)]

use std::{path::PathBuf, process::Command, sync::OnceLock};

use serde_json::Value;
use sightline_tests::{
    Agent, Certificate, Program, calls_on_port, certificate, counter, curl, fixture, free_port,
    go_tls_fixture, go_tls_request, go_tls_server, openssl_s_server, python, tls_nginx,
    wait_for_port,
};

/// The calls of one side on `port` for `path`.
fn calls_for<'a>(calls: &'a [Value], kind: &str, port: u16, path: &str) -> Vec<&'a Value> {
    calls_on_port(calls, kind, port)
        .into_iter()
        .filter(|c| c["url.path"] == path)
        .collect()
}

/// Exactly one call of `kind` for `path`, with the expected fields; returns it.
fn one_call<'a>(
    calls: &'a [Value],
    kind: &str,
    port: u16,
    path: &str,
    status: u64,
    library: &str,
    pid: u32,
) -> &'a Value {
    let found = calls_for(calls, kind, port, path);
    assert_eq!(
        found.len(),
        1,
        "expected one {kind} call for {path} on port {port}, got {found:#?}\nall calls: {calls:#?}"
    );
    let call = found[0];
    let context = || format!("{kind} call {call:#}");
    assert_eq!(call["http.request.method"], "GET", "{}", context());
    assert_eq!(call["http.response.status_code"], status, "{}", context());
    assert_eq!(call["tls"], true, "{}", context());
    assert_eq!(call["tls.library"], library, "{}", context());
    assert_eq!(call["url.scheme"], "https", "{}", context());
    assert_eq!(call["process.pid"], pid, "{}", context());
    assert_eq!(call["server.port"], port, "{}", context());
    call
}

/// The calls on `port` are exactly `expected` (kind, path) pairs: nothing parsed twice, nothing
/// made of ciphertext.
fn assert_only(calls: &[Value], port: u16, expected: &[(&str, &str)]) {
    let mut seen: Vec<(String, String)> = ["server", "client"]
        .iter()
        .flat_map(|kind| {
            calls_on_port(calls, kind, port).into_iter().map(|c| {
                (
                    kind.to_string(),
                    c["url.path"].as_str().unwrap_or("").to_string(),
                )
            })
        })
        .collect();
    seen.sort();
    let mut want: Vec<(String, String)> = expected
        .iter()
        .map(|(k, p)| (k.to_string(), p.to_string()))
        .collect();
    want.sort();
    assert_eq!(seen, want, "calls on port {port}: {calls:#?}");
}

/// The coverage report says `pid`'s TLS connections were captured through `library` (read
/// after the agent stopped, when its last report is written).
fn assert_covered(agent: &Agent, pid: u32, library: &str) {
    let report = agent
        .tls_process(pid)
        .unwrap_or_else(|| panic!("pid {pid} missing from {:#?}", agent.tls_report()));
    assert_eq!(report["status"], "captured", "{report:#}");
    assert_eq!(
        report["captured_by"],
        serde_json::json!([library]),
        "{report:#}"
    );
    assert_eq!(
        report["captured_connections"], report["tls_connections"],
        "{report:#}"
    );
}

/// Exactly one call at each end for `path`, answered `status`, each end from its (library,
/// pid), naming the other as its peer, and no other call for `path` on the port.
fn assert_both_ends<'a>(
    calls: &'a [Value],
    port: u16,
    path: &str,
    status: u64,
    client: (&str, u32),
    server: (&str, u32),
) -> (&'a Value, &'a Value) {
    let client_call = one_call(calls, "client", port, path, status, client.0, client.1);
    let server_call = one_call(calls, "server", port, path, status, server.0, server.1);
    assert_eq!(client_call["peer.process.pid"], server.1, "{client_call:#}");
    assert_eq!(server_call["peer.process.pid"], client.1, "{server_call:#}");
    (client_call, server_call)
}

/// The usual exchange of the client/server tests: one client asked for `ok_path` (200) and a
/// second for `/missing` (404). Checks all four calls, and that there is nothing else; returns
/// the first client's call for more checks.
fn assert_ok_and_missing<'a>(
    calls: &'a [Value],
    port: u16,
    ok_path: &str,
    library: &str,
    server_pid: u32,
    client_pids: &[u32],
) -> &'a Value {
    let (client, _) = assert_both_ends(
        calls,
        port,
        ok_path,
        200,
        (library, client_pids[0]),
        (library, server_pid),
    );
    assert_both_ends(
        calls,
        port,
        "/missing",
        404,
        (library, client_pids[1]),
        (library, server_pid),
    );
    assert_only(
        calls,
        port,
        &[
            ("server", ok_path),
            ("server", "/missing"),
            ("client", ok_path),
            ("client", "/missing"),
        ],
    );
    client
}

/// An agent (with `args`), then the Python HTTPS server with its probes attached; the
/// certificate must live as long as the server.
fn agent_and_python_server(args: &[&str]) -> (Agent, Program, u16, Certificate) {
    let mut agent = Agent::start(args);
    let cert = certificate();
    let (server, port) = python_tls_server(&cert);
    agent.wait_tls_ready(server.pid(), "openssl");
    (agent, server, port, cert)
}

fn python_tls_server(cert: &Certificate) -> (Program, u16) {
    let port = free_port();
    let mut server = Program::spawn(python(&[
        fixture("tls/server.py").to_str().unwrap(),
        &port.to_string(),
        cert.cert.to_str().unwrap(),
        cert.key.to_str().unwrap(),
    ]));
    assert_eq!(server.line(), "ready");
    wait_for_port(port);
    (server, port)
}

#[test]
fn curl_against_openssl_s_server_both_ends() {
    let mut agent = Agent::start(&[]);
    let cert = certificate();
    let (server, port) = openssl_s_server(&cert);
    agent.wait_tls_ready(server.pid(), "openssl");

    let (client_pid, body) = curl(&["-k", &format!("https://127.0.0.1:{port}/s-server/path")]);
    assert!(
        body.contains("s_server"),
        "s_server -www answers with its status page"
    );
    let calls = agent.collect(port, 1, 1);
    // s_server -www reads through an SSL BIO: caught by the BIO probes, not SSL_read.
    let (client_call, server_call) = assert_both_ends(
        &calls,
        port,
        "/s-server/path",
        200,
        ("openssl", client_pid),
        ("openssl", server.pid()),
    );
    assert_eq!(server_call["network.protocol.version"], "1.0");
    assert_eq!(client_call["process.executable.name"], "curl");
    assert_eq!(client_call["http.response.body.size"], body.len() as u64);
    assert_only(
        &calls,
        port,
        &[("server", "/s-server/path"), ("client", "/s-server/path")],
    );
    assert_covered(&agent, server.pid(), "openssl");
    assert_covered(&agent, client_pid, "openssl");
    let log = agent.stderr();
    assert_eq!(
        counter(&log, "connections_not_http"),
        0,
        "ciphertext is recognised as TLS"
    );
    assert_eq!(counter(&log, "kernel.tls_no_socket"), 0);
}

/// Credentials the nginx test sends inside TLS (a bearer token, a session cookie, an API key in
/// the query); none may appear in anything the agent writes.
const SECRETS: [&str; 3] = [
    "tls-bearer-0f1e2d3c",
    "tls-cookie-4b5a6978",
    "tls-apikey-8796a5b4",
];

#[test]
fn curl_against_nginx_over_tls_keepalive() {
    let mut agent = Agent::start(&[]);
    let nginx = tls_nginx(&mut agent);
    let (server, port) = (&nginx.server, nginx.port);

    // Two requests on one keep-alive connection: a file and a 404.
    let base = format!("https://127.0.0.1:{port}");
    let (client_pid, body) = curl(&[
        "-k",
        "-H",
        &format!("Authorization: Bearer {}", SECRETS[0]),
        "-H",
        &format!("Cookie: session={}", SECRETS[1]),
        &format!("{base}/hello.txt?api_key={}&page=2", SECRETS[2]),
        "-o",
        "/dev/null",
        &format!("{base}/missing"),
    ]);
    assert!(body.contains("404"), "nginx's 404 page: {body}");
    let calls = agent.collect(port, 2, 2);
    let nginx_pid = server.pid();
    let hello = assert_ok_and_missing(
        &calls,
        port,
        "/hello.txt",
        "openssl",
        nginx_pid,
        &[client_pid, client_pid],
    );
    assert_eq!(hello["http.response.body.size"], 15);
    assert_eq!(hello["network.protocol.version"], "1.1");
    assert_eq!(hello["url.query"], "api_key=REDACTED&page=2", "{hello:#}");
    let client_ports: Vec<&Value> = calls_on_port(&calls, "client", port)
        .iter()
        .map(|c| &c["network.local.port"])
        .collect();
    assert_eq!(
        client_ports[0], client_ports[1],
        "one keep-alive connection"
    );
    // Credentials sent inside TLS reach no output: calls, event dump, log, coverage report.
    let everything = agent.all_output();
    for secret in SECRETS {
        assert!(
            !everything.contains(secret),
            "{secret} leaked:\n{everything}"
        );
    }
    assert_covered(&agent, nginx_pid, "openssl");
}

#[test]
fn python_https_client_and_server() {
    let (mut agent, server, port, _cert) = agent_and_python_server(&[]);

    let mut statuses = Vec::new();
    let mut client_pids = Vec::new();
    for path in ["/py/ok", "/missing"] {
        let client = Program::spawn(python(&[
            fixture("tls/client.py").to_str().unwrap(),
            &format!("https://127.0.0.1:{port}{path}"),
        ]));
        client_pids.push(client.pid());
        statuses.push(client.finish().join(""));
    }
    assert_eq!(statuses, ["200", "404"]);
    let calls = agent.collect(port, 2, 2);
    let client = assert_ok_and_missing(
        &calls,
        port,
        "/py/ok",
        "openssl",
        server.pid(),
        &client_pids,
    );
    assert_eq!(client["http.response.body.size"], 19);
    assert_covered(&agent, server.pid(), "openssl");
    assert_covered(&agent, client_pids[0], "openssl");
}

#[test]
fn nodejs_https_client_and_server() {
    let mut agent = Agent::start(&[]);
    let cert = certificate();
    let port = free_port();
    let mut cmd = Command::new("node");
    cmd.arg(fixture("tls/server.js"))
        .arg(port.to_string())
        .arg(&cert.cert)
        .arg(&cert.key);
    let mut server = Program::spawn(cmd);
    assert_eq!(server.line(), "ready");
    // Node.js carries its own OpenSSL inside the node executable (or uses the system libssl).
    agent.wait_tls_ready(server.pid(), "openssl");

    let mut client_pids = Vec::new();
    for path in ["/node/ok", "/missing"] {
        let mut cmd = Command::new("node");
        cmd.arg(fixture("tls/client.js"))
            .arg(format!("https://127.0.0.1:{port}{path}"));
        let client = Program::spawn(cmd);
        client_pids.push(client.pid());
        let expected = if path == "/missing" { "404" } else { "200" };
        assert_eq!(client.finish(), [expected]);
    }
    let calls = agent.collect(port, 2, 2);
    let client = assert_ok_and_missing(
        &calls,
        port,
        "/node/ok",
        "openssl",
        server.pid(),
        &client_pids,
    );
    assert_eq!(client["process.executable.name"], "node");
    assert_eq!(client["http.response.body.size"], 17);
    assert_covered(&agent, server.pid(), "openssl");
    assert_covered(&agent, client_pids[0], "openssl");
}

fn go_round(binary: &std::path::Path) {
    let mut agent = Agent::start(&[]);
    let server = go_tls_server(binary, &mut agent);
    let (port, server_pid) = (server.port, server.program.pid());
    let mut client_pids = Vec::new();
    for (path, expected) in [("/go/ok", "200"), ("/missing", "404")] {
        let (pid, printed) = go_tls_request(binary, port, path, None);
        client_pids.push(pid);
        assert_eq!(printed, [expected]);
    }
    let calls = agent.collect(port, 2, 2);
    let lib = "go-crypto-tls";
    let client = assert_ok_and_missing(&calls, port, "/go/ok", lib, server_pid, &client_pids);
    assert_eq!(client["http.response.body.size"], 15);
    assert_covered(&agent, server_pid, lib);
    assert_covered(&agent, client_pids[0], lib);
}

#[test]
fn go_https_client_and_server_with_symbols() {
    go_round(&go_tls_fixture(false));
}

#[test]
fn go_https_client_and_server_stripped() {
    let stripped = &go_tls_fixture(true);
    let symbols = Command::new("nm").arg(stripped).output().unwrap();
    assert!(
        String::from_utf8_lossy(&symbols.stderr).contains("no symbols"),
        "the stripped build has no symbol table"
    );
    go_round(stripped);
}

#[test]
fn gnutls_client_against_python_server() {
    let (mut agent, server, port, _cert) = agent_and_python_server(&[]);
    let mut cmd = Command::new("gnutls-cli");
    cmd.args([
        "--insecure",
        "--logfile=/dev/null",
        "--port",
        &port.to_string(),
        "127.0.0.1",
    ]);
    let mut client = Program::spawn_interactive(cmd);
    let client_pid = client.pid();
    // libgnutls may be new to this agent: the request goes once its probes are in.
    agent.wait_tls_ready(client_pid, "gnutls");
    client.send_line("GET /gnutls HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r");
    let calls = agent.wait_for_calls("the gnutls-cli call at both ends", |c| {
        calls_for(c, "client", port, "/gnutls").len() == 1
            && calls_for(c, "server", port, "/gnutls").len() == 1
    });
    drop(client);
    agent.stop(); // Writes the final coverage report.
    assert_both_ends(
        &calls,
        port,
        "/gnutls",
        200,
        ("gnutls", client_pid),
        ("openssl", server.pid()),
    );
    assert_covered(&agent, client_pid, "gnutls");
}

/// Copies of the system's libssl and libcrypto in a new directory: files the agent never saw.
fn private_openssl_copy() -> tempfile::TempDir {
    let private = tempfile::tempdir().unwrap();
    for lib in ["libssl.so.3", "libcrypto.so.3"] {
        std::fs::copy(
            PathBuf::from("/usr/lib/x86_64-linux-gnu").join(lib),
            private.path().join(lib),
        )
        .unwrap();
    }
    private
}

/// The Python client with `libdir` first on its library path, started with --wait: it loads
/// libssl (dlopen) when sent a line, and makes its request for `path` at the next.
fn dlopen_client(libdir: &std::path::Path, port: u16, path: &str) -> Program {
    let mut cmd = python(&[
        fixture("tls/client.py").to_str().unwrap(),
        &format!("https://127.0.0.1:{port}{path}"),
        "--wait",
    ]);
    cmd.env("LD_LIBRARY_PATH", libdir);
    let mut client = Program::spawn_interactive(cmd);
    assert_eq!(client.line(), "waiting");
    client
}

/// [`dlopen_client`] with `libdir/libssl.so.3` loaded and its probes attached for it.
fn probed_dlopen_client(
    agent: &mut Agent,
    libdir: &std::path::Path,
    port: u16,
    path: &str,
) -> Program {
    let mut client = dlopen_client(libdir, port, path);
    client.send_line("import");
    assert_eq!(client.line(), "loaded");
    wait_for_library(agent, client.pid(), &libdir.join("libssl.so.3"));
    client
}

/// Waits until the coverage report shows the probes attached to `library` for `pid`.
fn wait_for_library(agent: &mut Agent, pid: u32, library: &std::path::Path) {
    let library = library.to_str().unwrap();
    agent.wait_until(&format!("the TLS probes on {library} for {pid}"), |a| {
        a.tls_process(pid).is_some_and(|p| {
            p["libraries"].as_array().is_some_and(|libs| {
                libs.iter()
                    .any(|l| l["path"] == library && l["attached"] == true)
            })
        })
    });
}

#[test]
fn libssl_loaded_with_dlopen_after_start() {
    let (mut agent, server, port, _cert) = agent_and_python_server(&[]);

    // A private copy of libssl and libcrypto: files (inodes) the agent has never seen, which
    // the client loads with dlopen (import ssl) long after it started.
    let private = private_openssl_copy();
    let mut client = dlopen_client(private.path(), port, "/dlopened");
    let client_pid = client.pid();
    let private_libssl = private.path().join("libssl.so.3");
    let maps = std::fs::read_to_string(format!("/proc/{client_pid}/maps")).unwrap();
    assert!(
        !maps.contains("libssl"),
        "libssl is not loaded before the import"
    );
    client.send_line("import");
    assert_eq!(client.line(), "loaded");
    let maps = std::fs::read_to_string(format!("/proc/{client_pid}/maps")).unwrap();
    assert!(
        maps.contains(private_libssl.to_str().unwrap()),
        "the private copy was loaded"
    );
    wait_for_library(&mut agent, client_pid, &private_libssl);
    client.send_line("go");
    assert_eq!(client.finish(), ["200"]);
    let calls = agent.collect(port, 1, 1);
    assert_both_ends(
        &calls,
        port,
        "/dlopened",
        200,
        ("openssl", client_pid),
        ("openssl", server.pid()),
    );
    assert_covered(&agent, client_pid, "openssl");
}

#[test]
fn java_client_is_reported_as_not_covered() {
    let (mut agent, server, port, _cert) = agent_and_python_server(&[]);
    let mut cmd = Command::new("java");
    cmd.arg(fixture("tls/TlsClient.java"))
        .arg(format!("https://127.0.0.1:{port}/from-java"));
    let client = Program::spawn(cmd);
    let java_pid = client.pid();
    assert_eq!(client.finish(), ["200"]);

    // The server end is captured; the Java end cannot be, and the report says why.
    let calls = agent.wait_for_calls("the server end of the Java call", |c| {
        calls_for(c, "server", port, "/from-java").len() == 1
    });
    one_call(
        &calls,
        "server",
        port,
        "/from-java",
        200,
        "openssl",
        server.pid(),
    );
    agent.wait_until("the Java client in the coverage report", |a| {
        a.tls_process(java_pid)
            .is_some_and(|p| p["tls_connections"].as_u64() >= Some(1))
    });
    let report = agent.tls_process(java_pid).unwrap();
    assert_eq!(report["status"], "not_captured", "{report:#}");
    assert_eq!(report["captured_connections"], 0, "{report:#}");
    assert!(
        report["reason"]
            .as_str()
            .unwrap()
            .contains("Java's own TLS (JSSE)"),
        "{report:#}"
    );
    agent.stop();
    let calls = agent.calls();
    assert!(
        calls_on_port(&calls, "client", port).is_empty(),
        "no call is made of Java's ciphertext: {calls:#?}"
    );
    // The table for people says the same.
    let table = Command::new(sightline_tests::agent_binary())
        .args(["tls", "--report"])
        .arg(agent.dir().join("tls.json"))
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    let row = table
        .lines()
        .find(|l| l.starts_with(&java_pid.to_string()))
        .unwrap_or_else(|| panic!("no row for java in\n{table}"));
    assert!(
        row.contains("not captured") && row.contains("JSSE"),
        "{row}"
    );
}

#[test]
fn a_library_seen_only_inside_a_mount_namespace() {
    let (mut agent, server, port, _cert) = agent_and_python_server(&[]);

    // As in a container: the client runs in its own mount namespace, where a private copy of
    // libssl is mounted over the host's path. Only /proc/PID/root leads to that file; the
    // host's file at the same path is another inode, whose probes would never fire for it.
    let private = tempfile::tempdir().unwrap();
    let host_libssl = "/usr/lib/x86_64-linux-gnu/libssl.so.3";
    let copy = private.path().join("libssl.so.3");
    std::fs::copy(host_libssl, &copy).unwrap();
    let script = format!(
        "mount --bind {copy} {host_libssl} && exec python3 {client} https://127.0.0.1:{port}/in-namespace --wait",
        copy = copy.display(),
        client = fixture("tls/client.py").display(),
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    let mut client = Program::spawn_interactive(cmd);
    assert_eq!(client.line(), "waiting");
    let client_pid = client.pid();
    client.send_line("import");
    assert_eq!(client.line(), "loaded");
    let inode = |path: &str| {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(path).unwrap().ino()
    };
    let seen_inside = inode(&format!("/proc/{client_pid}/root{host_libssl}"));
    assert_ne!(
        seen_inside,
        inode(host_libssl),
        "the namespace sees another file"
    );
    assert_eq!(seen_inside, inode(copy.to_str().unwrap()));
    agent.wait_tls_ready(client_pid, "openssl");
    client.send_line("go");
    assert_eq!(client.finish(), ["200"]);
    let calls = agent.collect(port, 1, 1);
    assert_both_ends(
        &calls,
        port,
        "/in-namespace",
        200,
        ("openssl", client_pid),
        ("openssl", server.pid()),
    );
}

/// A real OpenSSL 1.1.1 shared library: the one bundled in psycopg2-binary 2.9.3's wheel
/// (PyPI), downloaded once into the target directory.
fn openssl_1_1_libdir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("openssl-1.1");
        let libs = dir.join("psycopg2_binary.libs");
        if !libs.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            let status = Command::new("python3")
                .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
                .args([
                    "--python-version",
                    "3.10",
                    "--platform",
                    "manylinux2014_x86_64",
                ])
                .args(["psycopg2-binary==2.9.3", "--quiet", "-d"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(
                status.success(),
                "downloading psycopg2-binary from PyPI failed"
            );
            let wheel = std::fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == "whl"))
                .unwrap();
            // A wheel is a zip file: Python's zipfile extracts it.
            let status = python(&["-m", "zipfile", "-e", wheel.to_str().unwrap()])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success(), "unpacking the wheel failed");
        }
        libs
    })
}

#[test]
fn openssl_1_1_shared_library() {
    let libdir = openssl_1_1_libdir();
    let (mut agent, server, port, _cert) = agent_and_python_server(&[]);
    let mut client = Program::spawn_interactive(python(&[
        fixture("tls/openssl11_client.py").to_str().unwrap(),
        libdir.to_str().unwrap(),
        "127.0.0.1",
        &port.to_string(),
        "/openssl-1.1",
    ]));
    assert_eq!(client.line(), "loaded");
    let client_pid = client.pid();
    agent.wait_until("the probes on libssl 1.1", |a| {
        a.tls_process(client_pid).is_some_and(|p| {
            p["libraries"].as_array().is_some_and(|libs| {
                libs.iter().any(|l| {
                    l["path"].as_str().is_some_and(|p| p.ends_with(".so.1.1"))
                        && l["attached"] == true
                })
            })
        })
    });
    client.send_line("go");
    assert_eq!(client.finish(), ["200"]);
    let calls = agent.collect(port, 1, 1);
    assert_both_ends(
        &calls,
        port,
        "/openssl-1.1",
        200,
        ("openssl", client_pid),
        ("openssl", server.pid()),
    );
    assert_covered(&agent, client_pid, "openssl");
}

#[test]
fn a_library_nobody_maps_is_detached_then_attached_again() {
    let (mut agent, server, port, _cert) =
        agent_and_python_server(&["--tls-rescan-secs", "1", "--tls-detach-after-secs", "1"]);
    let private = private_openssl_copy();
    let private_libssl = private.path().join("libssl.so.3");
    let detached = format!(
        "TLS probes detached: no process maps it path={}",
        private_libssl.display()
    );
    let mut client_pids = Vec::new();
    for round in 1..=2 {
        let path = format!("/round-{round}");
        let mut client = probed_dlopen_client(&mut agent, private.path(), port, &path);
        client_pids.push(client.pid());
        client.send_line("go");
        assert_eq!(client.finish(), ["200"]);
        // Its only user gone, the library's probes go too.
        agent.wait_until("the private libssl detached", |a| {
            a.stderr().matches(&detached).count() == round
        });
    }
    let calls = agent.collect(port, 2, 2);
    for (round, pid) in client_pids.iter().enumerate() {
        let path = format!("/round-{}", round + 1);
        assert_both_ends(
            &calls,
            port,
            &path,
            200,
            ("openssl", *pid),
            ("openssl", server.pid()),
        );
    }
    let report = agent.tls_process(client_pids[0]).unwrap();
    assert_eq!(report["exited"], true, "{report:#}");
}

/// A library replaced on disk (an upgrade) while a process still runs the old file: the old
/// file keeps its probes for that process (its maps say "deleted": it is opened through the
/// mapping), a process started afterwards gets the new file probed, and each call is named
/// after its own process.
#[test]
fn a_library_replaced_on_disk_stays_probed_for_the_process_still_using_it() {
    let (mut agent, server, port, _cert) =
        agent_and_python_server(&["--tls-rescan-secs", "1", "--tls-detach-after-secs", "1"]);
    let private = private_openssl_copy();
    let private_libssl = private.path().join("libssl.so.3");
    let mut old = probed_dlopen_client(&mut agent, private.path(), port, "/old-library");

    // The upgrade: a new file renamed over the old one (a new inode at the same path).
    let staged = private.path().join("libssl.so.3.new");
    std::fs::copy("/usr/lib/x86_64-linux-gnu/libssl.so.3", &staged).unwrap();
    std::fs::rename(&staged, &private_libssl).unwrap();
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", old.pid())).unwrap();
    assert!(maps.contains("libssl.so.3 (deleted)"), "{maps}");
    let mut new = probed_dlopen_client(&mut agent, private.path(), port, "/new-library");
    // Rescans (every second) that forgot the deleted file would detach it within a second
    // or two (--tls-detach-after-secs 1): give them time to.
    std::thread::sleep(std::time::Duration::from_secs(3));

    let (old_pid, new_pid) = (old.pid(), new.pid());
    old.send_line("go");
    assert_eq!(old.finish(), ["200"]);
    new.send_line("go");
    assert_eq!(new.finish(), ["200"]);
    let calls = agent.collect(port, 2, 2);
    for (path, client) in [("/old-library", old_pid), ("/new-library", new_pid)] {
        assert_both_ends(
            &calls,
            port,
            path,
            200,
            ("openssl", client),
            ("openssl", server.pid()),
        );
    }
}

/// Short-lived Go clients (a CLI, a cron job) that make one call and exit, with symbols and
/// stripped, each from a file the agent has never seen: the exec is held until the file's
/// probes are attached, so the very first run is captured from its first call. Without the
/// hold the probes landed ~10 ms after the exec (the kernel's first uprobe on a file waits for
/// an RCU grace period) and the call, made ~6 ms after it, was missed.
/// A file whose probes were detached (no process mapped it for `--tls-detach-after-secs`) is
/// held again at its next exec, and that run is captured too.
#[test]
fn short_lived_go_clients_are_captured_from_their_first_run() {
    let mut agent = Agent::start(&["--tls-detach-after-secs", "1", "--tls-rescan-secs", "1"]);
    let server = go_tls_server(&go_tls_fixture(false), &mut agent);
    let port = server.port;
    let dir = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for stripped in [false, true] {
        let (name, binary) = fresh_go_copy(dir.path(), stripped);
        let pid = quick_go_call(&binary, port, &format!("/{name}/first"));
        runs.push((format!("/{name}/first"), pid));
    }
    let binary = dir.path().join("job");
    let released = format!("path={} probes=9", binary.display());
    // The old probes are released on a thread of their own, each uprobe waiting for grace
    // periods, and a new attachment to the same file waits behind them (seen taking longer
    // than the hold's budget): the run comes once they are gone, as it would in use, long
    // after a detach.
    agent.wait_until("the copy's probes released", |a| {
        a.stderr()
            .lines()
            .any(|l| l.contains("TLS probes released") && l.contains(&released))
    });
    runs.push((
        "/job/again".to_string(),
        quick_go_call(&binary, port, "/job/again"),
    ));
    let calls = agent.collect(port, runs.len(), runs.len());
    for (path, pid) in runs {
        let found = calls_for(&calls, "client", port, &path);
        assert_eq!(found.len(), 1, "{path}: {calls:#?}\n{}", agent.stderr());
        assert_eq!(found[0]["process.pid"], pid);
        assert_eq!(found[0]["tls.library"], "go-crypto-tls");
        let call = format!("{path}: {:#}\n{}", found[0], agent.stderr());
        assert_eq!(found[0]["http.response.status_code"], 200, "{call}");
        assert_covered(&agent, pid, "go-crypto-tls");
    }
}

/// Without the exec hold (`--no-exec-hold`, or a kernel without fanotify permission events),
/// short-lived Go clients from files the agent has never seen: a run gets its binary probed
/// from its exec on, every later run is captured from its first call, and the runs that were
/// not are reported with why (probed late, or gone before its scan), never as "no known TLS
/// library".
#[test]
fn without_the_exec_hold_later_runs_are_captured_and_missed_ones_say_why() {
    let mut agent = Agent::start(&["--no-exec-hold"]);
    let server = go_tls_server(&go_tls_fixture(false), &mut agent);
    let port = server.port;
    let dir = tempfile::tempdir().unwrap();
    // Per binary: the pids of its early runs and of its later one.
    let mut runs = Vec::new();
    for stripped in [false, true] {
        let (name, binary) = fresh_go_copy(dir.path(), stripped);
        let attached = |agent: &Agent| {
            agent
                .stderr()
                .lines()
                .any(|l| l.contains("TLS probes attached") && l.contains(binary.to_str().unwrap()))
        };
        // A run or more until the binary is probed (each is a chance to win the race).
        let mut early = Vec::new();
        for run in 0..3 {
            early.push(quick_go_call(
                &binary,
                port,
                &format!("/{name}/early-{run}"),
            ));
            std::thread::sleep(std::time::Duration::from_millis(500));
            if attached(&agent) {
                break;
            }
        }
        assert!(attached(&agent), "{name} never probed:\n{}", agent.stderr());
        let later = quick_go_call(&binary, port, &format!("/{name}/later"));
        runs.push((name, early, later));
    }
    let served: usize = runs.iter().map(|(_, early, _)| early.len() + 1).sum();
    let calls = agent.collect(port, served, 2);
    for (name, early, later) in runs {
        let found = calls_for(&calls, "client", port, &format!("/{name}/later"));
        assert_eq!(found.len(), 1, "{name}: {calls:#?}");
        assert_eq!(found[0]["process.pid"], later);
        assert_eq!(found[0]["tls.library"], "go-crypto-tls");
        assert_covered(&agent, later, "go-crypto-tls");
        for pid in early {
            let Some(report) = agent.tls_process(pid) else {
                continue; // A process with no TLS connection seen is not in the report.
            };
            let reason = report["reason"].as_str().unwrap_or_default();
            assert!(
                report["status"] == "captured"
                    || reason.starts_with("probed ")
                    || reason.starts_with("exited "),
                "{report:#}"
            );
        }
    }
}

/// A copy of the Go fixture in `dir`: a file (inode) no process has mapped, so not probed yet.
fn fresh_go_copy(dir: &std::path::Path, stripped: bool) -> (&'static str, std::path::PathBuf) {
    let name = if stripped { "job-stripped" } else { "job" };
    let binary = dir.join(name);
    std::fs::copy(go_tls_fixture(stripped), &binary).unwrap();
    (name, binary)
}

/// The Go fixture's client, told to go at once: one call right after it starts, then it
/// exits. Returns its pid.
fn quick_go_call(binary: &std::path::Path, port: u16, path: &str) -> u32 {
    let child = std::process::Command::new(binary)
        .args(["client", &format!("https://127.0.0.1:{port}{path}")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child_with_input(child, b"go\n");
    assert_eq!(out.lines().last(), Some("200"), "{path}: {out}");
    pid
}

/// Writes `input` to the child's stdin, closes it, and returns its stdout once it ends.
fn child_with_input(mut child: std::process::Child, input: &[u8]) -> String {
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}
