//! Load that would grow an unbounded agent: 100,000 short connections (one request each) to
//! nginx over 10,000 distinct paths that no template folds, from curl. The agent's memory stays
//! bounded (the second half of the load adds next to nothing), every call is counted in the
//! inventory exactly, and the route table, once full, counts new paths under `/{overflow}`.
#![allow(clippy::unwrap_used)]

use std::{collections::HashMap, path::Path, process::Command};

use sightline_tests::{Agent, NO_DUMP, counter, nginx_with_tls};

/// 32 words per position: a position turns into a parameter past 32 different literals, so
/// these stay literal, and five positions give paths that no template folds (and more nodes than a route tree
/// keeps: 20,000).
const WORDS: [&str; 32] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "red", "green", "blue", "amber",
    "violet", "olive",
];
const PATHS: usize = 10_000;
const CONNECTIONS: usize = 100_000;

/// `PATHS` distinct random paths, from a fixed seed (the same on every run).
fn random_paths() -> Vec<String> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut seen = std::collections::HashSet::new();
    let mut paths = Vec::with_capacity(PATHS);
    while paths.len() < PATHS {
        let words: Vec<&str> = (0..5).map(|_| WORDS[(next() % 32) as usize]).collect();
        let path = format!("/{}", words.join("/"));
        if seen.insert(path.clone()) {
            paths.push(path);
        }
    }
    paths
}

/// Runs curl once over `paths`, one new connection per request (`Connection: close`).
fn curl_each(paths: &[String], port: u16, dir: &Path) {
    let config = dir.join("urls.txt");
    let mut text = String::new();
    for path in paths {
        text.push_str(&format!(
            "url = \"http://127.0.0.1:{port}{path}\"\noutput = \"/dev/null\"\n"
        ));
    }
    std::fs::write(&config, text).unwrap();
    let status = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "--rate",
            "2000/s",
            "-H",
            "Connection: close",
            "-K",
        ])
        .arg(&config)
        .status()
        .unwrap();
    assert!(status.success(), "curl: {status}");
}

#[test]
fn short_connections_and_random_paths_stay_bounded_and_overflow_into_a_counted_route() {
    let root = tempfile::tempdir().unwrap();
    let (server, port, _prefix) =
        nginx_with_tls(root.path(), None, "location / { return 200 \"ok\\n\"; }");
    let server_pid = server.pid().to_string();
    // Only nginx's end: the load is the point, not two ends of every call.
    let mut agent = Agent::start(&["--pid", &server_pid, "--output", "none", NO_DUMP]);
    let paths = random_paths();
    // Ten rounds over the paths, each in its own order.
    let mut order: Vec<usize> = (0..PATHS).collect();
    let mut sent: HashMap<&str, u64> = HashMap::new();
    // RSS after each round: its peak over the second half against the first half's.
    let mut rss = Vec::new();
    for round in 0..CONNECTIONS / PATHS {
        order.rotate_left(round * 997 % PATHS);
        order.reverse();
        let batch: Vec<String> = order.iter().map(|&i| paths[i].clone()).collect();
        curl_each(&batch, port, root.path());
        for &i in &order {
            *sent.entry(paths[i].as_str()).or_default() += 1;
        }
        rss.push(agent.rss_kib());
    }
    // Every response has arrived: what the agent still holds it reads and writes on stopping.
    let log = agent.stop();

    // Nothing was lost on the way (else the exact counts below could not hold).
    for drop in [
        "kernel.ringbuf_full_data",
        "kernel.ringbuf_full_control",
        "capture_queue_full",
        "sink_queue_full",
        "connections_evicted_cap",
        "calls_abandoned",
    ] {
        assert_eq!(counter(&log, drop), 0, "{drop}\n{log}");
    }
    assert_eq!(
        counter(&log, "connections_opened"),
        CONNECTIONS as u64,
        "{log}"
    );
    assert_eq!(counter(&log, "calls_emitted"), CONNECTIONS as u64, "{log}");

    // Every learnt route is one of the paths, with exactly the calls it got; the rest of the
    // calls are under /{overflow}, as many as the overflow counter says.
    let inventory = Agent::inventory(&agent.db());
    let mut overflow = 0;
    let mut learnt = 0;
    for endpoint in &inventory {
        let route = endpoint["route"].as_str().unwrap();
        let calls = endpoint["calls"].as_u64().unwrap();
        assert_eq!(endpoint["method"], "GET", "{endpoint}");
        if route == "/{overflow}" {
            overflow += calls;
        } else {
            assert_eq!(sent.get(route), Some(&calls), "{endpoint}");
            learnt += 1;
        }
    }
    assert!(
        overflow > 0,
        "the route table never filled: {learnt} routes"
    );
    assert_eq!(counter(&log, "inventory_overflow"), overflow, "{log}");
    assert!(learnt < PATHS, "{learnt}");
    eprintln!("{learnt} routes learnt, {overflow} calls under /{{overflow}}");

    // Bounded: the second half of the connections (the same paths again) does not raise the
    // peak by more than 32 MiB, where an agent keeping 1 KiB per connection would add 49 MiB.
    // (RSS moves by some 20 MiB between rounds with queues and the allocator's caches.)
    let (first, second) = rss.split_at(rss.len() / 2);
    let (first, second) = (first.iter().max().unwrap(), second.iter().max().unwrap());
    eprintln!("agent RSS after each round (KiB): {rss:?}");
    assert!(
        *second < first + 32 * 1024,
        "peak RSS rose from {first} KiB to {second} KiB over the second 50,000 connections"
    );
}
