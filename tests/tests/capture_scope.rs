//! What the agent captures: connections that predate it, IPv6, and the process, cgroup and port
//! filters (applied in the kernel).
#![allow(clippy::unwrap_used)]

use sightline_tests::{
    Agent, Program, calls_on_port, cgroups::TestCgroup, curl, executable_name, fixture,
    keepalive_server, python,
};

#[test]
fn connections_opened_before_the_agent_are_picked_up() {
    let (server, port) = keepalive_server();
    let mut client = Program::spawn_interactive(python(&[
        fixture("stdin_client.py").to_str().unwrap(),
        &port.to_string(),
    ]));
    let client_port: u64 = client.line().parse().unwrap();
    client.send_line("/before");
    assert_eq!(client.line(), "200");

    let mut agent = Agent::start(&[]);
    // The server is blocked in a read that began before the probes were attached: the bytes
    // of that read cannot be seen (its buffer was only known at syscall entry), so its first
    // request is not seen at the server. Every later one is, at both ends.
    let requests = [("/after/1", 200), ("/after/2", 200), ("/missing/3", 404)];
    for (path, status) in requests {
        client.send_line(path);
        assert_eq!(client.line(), status.to_string());
    }
    client.close_stdin();
    let client_pid = client.pid();
    let client_name = client.executable_name();
    client.finish();

    let calls = agent.collect(port, 2, 3);
    let server_name = executable_name(server.pid());
    for (kind, pid, name, peer_pid, peer_name, expected) in [
        (
            "server",
            server.pid(),
            server_name.as_str(),
            client_pid,
            client_name.as_str(),
            &requests[1..],
        ),
        (
            "client",
            client_pid,
            client_name.as_str(),
            server.pid(),
            server_name.as_str(),
            &requests[..],
        ),
    ] {
        let seen = calls_on_port(&calls, kind, port);
        let summary: Vec<(&str, u64)> = seen
            .iter()
            .map(|c| {
                (
                    c["url.path"].as_str().unwrap(),
                    c["http.response.status_code"].as_u64().unwrap(),
                )
            })
            .collect();
        let expected: Vec<(&str, u64)> = expected.iter().map(|(p, s)| (*p, *s as u64)).collect();
        assert_eq!(summary, expected, "{kind}");
        for call in seen {
            assert_eq!(call["sightline.connection.joined_midstream"], true);
            assert_eq!(call["client.port"], client_port);
            assert_eq!(call["process.pid"], pid);
            assert_eq!(call["process.executable.name"], name);
            assert_eq!(call["peer.process.pid"], peer_pid);
            assert_eq!(call["peer.process.executable.name"], peer_name);
        }
    }
    let log = agent.stderr();
    assert!(log.contains("http_unpaired_responses=1"), "{log}");
}

#[test]
fn ipv6_loopback_calls() {
    let mut agent = Agent::start(&[]);
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("v6.txt"), "over IPv6").unwrap();
    let (server, port) = sightline_tests::python_http_server(site.path(), "::1");
    let (curl_pid, body) = curl(&["-g", &format!("http://[::1]:{port}/v6.txt")]);
    assert_eq!(body, "over IPv6");
    agent.wait_for_calls("both ends", |c| {
        calls_on_port(c, "server", port).len() == 1 && calls_on_port(c, "client", port).len() == 1
    });
    agent.stop();
    let calls = agent.calls();
    let client = calls_on_port(&calls, "client", port)[0];
    let server_call = calls_on_port(&calls, "server", port)[0];
    for call in [client, server_call] {
        assert_eq!(call["network.type"], "ipv6");
        assert_eq!(call["client.address"], "::1");
        assert_eq!(call["network.peer.address"], "::1");
        assert_eq!(call["url.path"], "/v6.txt");
        assert_eq!(call["http.response.status_code"], 200);
        assert_eq!(call["server.address"], "::1");
    }
    assert_eq!(client["process.pid"], curl_pid);
    assert_eq!(server_call["process.pid"], server.pid());
}

#[test]
fn excluded_processes_are_not_captured() {
    let (server, port) = keepalive_server();
    let mut agent = Agent::start(&["--exclude-pid", &server.pid().to_string()]);
    let (curl_pid, _) = curl(&[&format!("http://127.0.0.1:{port}/x")]);
    agent.wait_for_calls("the client call", |c| {
        calls_on_port(c, "client", port).len() == 1
    });
    agent.stop();
    let calls = agent.calls();
    assert_eq!(
        calls_on_port(&calls, "client", port)[0]["process.pid"],
        curl_pid
    );
    assert!(
        calls_on_port(&calls, "server", port).is_empty(),
        "{calls:#?}"
    );
    let server_events = agent
        .events()
        .iter()
        .filter(|e| e["process.pid"] == server.pid())
        .count();
    assert_eq!(server_events, 0);
}

#[test]
fn only_included_processes_are_captured() {
    let (server, port) = keepalive_server();
    let mut agent = Agent::start(&["--pid", &server.pid().to_string()]);
    curl(&[&format!("http://127.0.0.1:{port}/only-server")]);
    agent.wait_for_calls("the server call", |c| {
        calls_on_port(c, "server", port).len() == 1
    });
    agent.stop();
    let calls = agent.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0]["process.pid"], server.pid());
}

#[test]
fn cgroup_filter_selects_processes_in_the_cgroup() {
    let cgroup = TestCgroup::create(&format!("sightline-test-{}", std::process::id()));
    let (_server, port) = keepalive_server();
    let mut agent = Agent::start(&["--cgroup", &cgroup.path]);
    curl(&[&format!("http://127.0.0.1:{port}/outside")]);
    let inside = cgroup
        .command(&format!("curl -s http://127.0.0.1:{port}/inside"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&inside.stdout), "path /inside");
    agent.wait_for_calls("the call from inside", |c| {
        calls_on_port(c, "client", port).len() == 1
    });
    agent.stop();
    let calls = agent.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0]["url.path"], "/inside");
    assert_eq!(calls[0]["span.kind"], "client");
    assert_eq!(calls[0]["process.executable.name"], "curl");
    assert_eq!(calls[0]["sightline.cgroup.id"], cgroup.id());
    assert_eq!(calls[0]["process.linux.cgroup"], cgroup.path);
}
