//! A connection is its socket, not a descriptor: servers whose connections are accepted by one
//! process and served by another (fork per connection, inetd's descriptors 0 and 1, a
//! descriptor passed over a unix socket) get whole server calls (status, the serving process
//! named, no mid-stream mark), where the agent used to see the accepting process close and the
//! child's descriptors as connections joined mid-way that closed before a response.
//! Servers: busybox httpd (forks, the child serves on 0 and 1), busybox httpd -i under
//! systemd-socket-activate (systemd's inetd mode: accept, fork, exec), Python's ForkingMixIn
//! HTTP server, and a descriptor handed to a worker with SCM_RIGHTS.
#![allow(clippy::unwrap_used)]

use std::{path::Path, process::Command};

use serde_json::Value;
use sightline_tests::{
    Agent, Program, calls_on_port, curl_status, fixture, free_port, python, wait_for_port,
};

/// What the agent said of each server call on `port`, in the order made: (path, status,
/// serving pid, executable name, joined mid-stream).
fn served(calls: &[Value], port: u16) -> Vec<(String, u64, u64, String, bool)> {
    let mut server = calls_on_port(calls, "server", port);
    server.sort_by_key(|c| c["start_time_unix_nano"].as_u64());
    server
        .iter()
        .map(|c| {
            (
                c["url.path"].as_str().unwrap().to_string(),
                c["http.response.status_code"].as_u64().unwrap_or(0),
                c["process.pid"].as_u64().unwrap(),
                c["process.executable.name"].as_str().unwrap().to_string(),
                c["sightline.connection.joined_midstream"]
                    .as_bool()
                    .unwrap(),
            )
        })
        .collect()
}

/// Starts the agent, asks `port` for `/index.html` then `/missing`, and returns the server
/// calls once both ends of both calls are written. The client end names the process that
/// served as its peer.
fn two_calls(port: u16, expected_statuses: [&str; 2]) -> Vec<(String, u64, u64, String, bool)> {
    let mut agent = Agent::start(&[]);
    for (path, status) in ["/index.html", "/missing"].iter().zip(expected_statuses) {
        let url = format!("http://127.0.0.1:{port}{path}");
        assert_eq!(curl_status(None, &[&url]), status);
    }
    let calls = agent.collect(port, 2, 2);
    let server = served(&calls, port);
    let mut client = calls_on_port(&calls, "client", port);
    client.sort_by_key(|c| c["start_time_unix_nano"].as_u64());
    let peers: Vec<(&str, u64)> = client
        .iter()
        .map(|c| {
            let path = c["url.path"].as_str().unwrap();
            (path, c["peer.process.pid"].as_u64().unwrap_or(0))
        })
        .collect();
    let servers: Vec<(&str, u64)> = server.iter().map(|s| (s.0.as_str(), s.2)).collect();
    assert_eq!(peers, servers, "the client's peer is the serving process");
    server
}

/// A directory with `index.html`.
fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "hello\n").unwrap();
    dir
}

fn spawn(program: &str, args: &[&str], dir: &Path) -> Program {
    let mut cmd = Command::new(program);
    cmd.args(args).arg(dir);
    Program::spawn(cmd)
}

/// Checks the two calls of [`two_calls`]: both whole, answered by processes other than the
/// accepting one (each its own child when `per_call_child`), named `executable`.
fn assert_served_by_others(
    calls: &[(String, u64, u64, String, bool)],
    statuses: [u64; 2],
    accepting_pid: u32,
    executable: &str,
    per_call_child: bool,
) {
    let seen: Vec<(&str, u64, &str, bool)> = calls
        .iter()
        .map(|(path, status, _, exe, midstream)| (path.as_str(), *status, exe.as_str(), *midstream))
        .collect();
    assert_eq!(
        seen,
        [
            ("/index.html", statuses[0], executable, false),
            ("/missing", statuses[1], executable, false),
        ],
        "{calls:?}"
    );
    assert!(
        calls.iter().all(|c| c.2 != u64::from(accepting_pid)),
        "{calls:?}"
    );
    if per_call_child {
        assert_ne!(
            calls[0].2, calls[1].2,
            "one child per connection: {calls:?}"
        );
    }
}

#[test]
fn busybox_httpd_children_serve_on_descriptors_0_and_1() {
    let dir = site();
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let server = spawn("busybox", &["httpd", "-f", "-p", &bind, "-h"], dir.path());
    wait_for_port(port);
    let calls = two_calls(port, ["200", "404"]);
    assert_served_by_others(&calls, [200, 404], server.pid(), "busybox", true);
}

#[test]
fn systemd_socket_activation_in_inetd_mode_hands_each_connection_to_a_new_program() {
    let dir = site();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let activator = spawn(
        "systemd-socket-activate",
        &[
            "-l", &listen, "-a", "--inetd", "busybox", "httpd", "-i", "-h",
        ],
        dir.path(),
    );
    wait_for_port(port);
    let calls = two_calls(port, ["200", "404"]);
    assert_served_by_others(&calls, [200, 404], activator.pid(), "busybox", true);
}

#[test]
fn a_forking_python_server_is_one_connection_from_accept_to_the_childs_close() {
    let dir = site();
    let port = free_port();
    let mut server = Program::spawn(python(&[
        fixture("fork_servers.py").to_str().unwrap(),
        "forking",
        &port.to_string(),
        dir.path().to_str().unwrap(),
    ]));
    let parent: u32 = server
        .line()
        .strip_prefix("ready ")
        .unwrap()
        .parse()
        .unwrap();
    let calls = two_calls(port, ["200", "404"]);
    let python = server.executable_name();
    assert_served_by_others(&calls, [200, 404], parent, &python, true);
}

#[test]
fn a_descriptor_passed_over_a_unix_socket_is_served_by_the_worker_that_got_it() {
    let port = free_port();
    let mut server = Program::spawn(python(&[
        fixture("fork_servers.py").to_str().unwrap(),
        "handoff",
        &port.to_string(),
    ]));
    let worker: u64 = server
        .line()
        .strip_prefix("ready ")
        .unwrap()
        .parse()
        .unwrap();
    let calls = two_calls(port, ["200", "200"]);
    let python = server.executable_name();
    assert_served_by_others(&calls, [200, 200], server.pid(), &python, false);
    assert!(calls.iter().all(|c| c.2 == worker), "{calls:?}");
}
