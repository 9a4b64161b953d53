//! Calls are named after the process that made them, even as processes come and go: a process
//! that execs another program, a pid that a new process (forked, no exec) gets again after the
//! first one exited, and an exec storm that the agent must take with bounded memory while
//! capture goes on.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use serde_json::Value;
use sightline_tests::{Agent, Program, calls_on_port, counter, keepalive_server, python};

/// (path, client pid, client executable name) of the client calls on `port`, in order.
fn clients(calls: &[Value], port: u16) -> Vec<(String, u64, String)> {
    calls_on_port(calls, "client", port)
        .iter()
        .map(|c| {
            (
                c["url.path"].as_str().unwrap().to_string(),
                c["process.pid"].as_u64().unwrap(),
                c["process.executable.name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The base name of Python's executable as /proc/PID/exe gives it (`python3.11`; `python3`
/// is a link to it).
fn python_name() -> String {
    let out = python(&[
        "-c",
        "import os, sys; print(os.path.basename(os.path.realpath(sys.executable)))",
    ])
    .output()
    .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Python run by its file's own name, so that every way the agent names it gives one name.
fn python_file() -> Command {
    Command::new(python_name())
}

#[test]
fn a_process_that_execs_is_named_after_each_program_in_turn() {
    let (_server, port) = keepalive_server();
    let mut agent = Agent::start(&[]);
    // Python calls, then becomes curl (same pid) which calls again.
    let script = format!(
        "import http.client, os\n\
         c = http.client.HTTPConnection('127.0.0.1', {port}); c.request('GET', '/before-exec')\n\
         c.getresponse().read(); c.close()\n\
         os.execvp('curl', ['curl', '-s', '-o', '/dev/null', 'http://127.0.0.1:{port}/after-exec'])\n"
    );
    let child = python_file().args(["-c", &script]).spawn().unwrap();
    let pid = u64::from(child.id());
    let status = child.wait_with_output().unwrap().status;
    assert!(status.success());
    let calls = agent.wait_for_calls("two client calls", |c| {
        calls_on_port(c, "client", port).len() == 2
    });
    agent.stop();
    assert_eq!(
        clients(&calls, port),
        [
            ("/before-exec".to_string(), pid, python_name()),
            ("/after-exec".to_string(), pid, "curl".to_string()),
        ]
    );
}

/// A forked child that gets the pid a curl had, with the kernel's `ns_last_pid` (as root):
/// its call is its own, not the dead curl's. The child stays until its call is seen, so its
/// /proc entry is there to be read.
#[test]
fn a_pid_reused_by_a_forked_process_is_not_named_after_the_exited_one() {
    let (_server, port) = keepalive_server();
    let mut agent = Agent::start(&[]);
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    // Other processes on the host may take the pid first: try a few times.
    let mut done = None;
    for attempt in 0..20 {
        let curl = Command::new("curl")
            .args(["-s", "-o", "/dev/null", &url(&format!("/curl-{attempt}"))])
            .spawn()
            .unwrap();
        let reused = curl.id();
        assert!(curl.wait_with_output().unwrap().status.success());
        // Python forks a child with the same pid; the child (still Python, no exec) calls.
        let script = format!(
            "import http.client, os, sys\n\
             with open('/proc/sys/kernel/ns_last_pid', 'w') as f: f.write('{last}')\n\
             pid = os.fork()\n\
             if pid == 0:\n\
             \x20   if os.getpid() == {reused}:\n\
             \x20       c = http.client.HTTPConnection('127.0.0.1', {port})\n\
             \x20       c.request('GET', '/forked-{attempt}'); c.getresponse().read(); c.close()\n\
             \x20       sys.stdin.readline()\n\
             \x20   os._exit(0)\n\
             print(pid, flush=True)\n\
             os.waitpid(pid, 0)\n",
            last = reused - 1,
        );
        let mut cmd = python_file();
        cmd.args(["-c", &script]);
        let mut parent = Program::spawn_interactive(cmd);
        let child: u32 = parent.line().parse().unwrap();
        if child != reused {
            parent.close_stdin();
            parent.finish();
            continue;
        }
        let forked = format!("/forked-{attempt}");
        agent.wait_for_calls("the forked child's call", |c| {
            calls_on_port(c, "client", port)
                .iter()
                .any(|call| call["url.path"] == forked.as_str())
        });
        parent.send_line("done");
        parent.finish();
        done = Some((attempt, reused));
        break;
    }
    let (attempt, reused) = done.expect("no attempt got the pid again");
    agent.stop();
    let calls = agent.calls();
    let seen = clients(&calls, port);
    let find = |path: String| seen.iter().find(|(p, ..)| *p == path).unwrap().clone();
    assert_eq!(
        find(format!("/curl-{attempt}")),
        (
            format!("/curl-{attempt}"),
            u64::from(reused),
            "curl".to_string()
        )
    );
    assert_eq!(
        find(format!("/forked-{attempt}")),
        (
            format!("/forked-{attempt}"),
            u64::from(reused),
            python_name()
        ),
        "{seen:?}"
    );
}

/// 5,000 short processes (fork, exec, exit) while curl calls: the agent's memory stays within
/// 32 MiB of where it was, it spends less CPU than the storm, and every call is captured and
/// named.
#[test]
fn an_exec_storm_costs_bounded_memory_and_capture_goes_on() {
    let (_server, port) = keepalive_server();
    let mut agent = Agent::start(&[]);
    let before = agent.rss_kib();
    let agent_cpu_before = cpu_ticks(&format!("/proc/{}/stat", agent.pid()), 13);
    // The shell prints the CPU time its children used (cutime + cstime) when done.
    let storm = Command::new("sh")
        .args([
            "-c",
            "i=0; while [ $i -lt 5000 ]; do /bin/true; i=$((i+1)); done; cat /proc/$$/stat",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut peak = before;
    let mut made = 0;
    let storm = storm;
    while storm_running(&storm) {
        let status = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                &format!("http://127.0.0.1:{port}/during-{made}"),
            ])
            .status()
            .unwrap();
        assert!(status.success());
        made += 1;
        peak = peak.max(agent.rss_kib());
    }
    let agent_cpu = cpu_ticks(&format!("/proc/{}/stat", agent.pid()), 13) - agent_cpu_before;
    let out = storm.wait_with_output().unwrap();
    assert!(out.status.success());
    let storm_cpu = ticks_at(&String::from_utf8_lossy(&out.stdout), 15);
    eprintln!("CPU ticks during the storm: agent {agent_cpu}, the 5,000 processes {storm_cpu}");
    let calls = agent.wait_for_calls("every call made during the storm", |c| {
        calls_on_port(c, "client", port).len() == made
    });
    let log = agent.stop();
    eprintln!("RSS {before} KiB before, peak {peak} KiB during; {made} calls during the storm");
    assert!(made > 0);
    for (i, (path, _, name)) in clients(&calls, port).iter().enumerate() {
        assert_eq!(
            (path.as_str(), name.as_str()),
            (format!("/during-{i}").as_str(), "curl")
        );
    }
    assert!(
        peak < before + 32 * 1024,
        "RSS rose from {before} KiB to {peak} KiB during the storm"
    );
    // Bounded CPU: the agent (a debug build, also capturing curl's calls at both ends) spends
    // less CPU than the storm itself; here about 0.4 of it. A ratio of CPU times, not a clock.
    assert!(
        agent_cpu < storm_cpu,
        "the agent used {agent_cpu} ticks of CPU for a storm of {storm_cpu}"
    );
    // Drops are allowed only where counted; these must be none at this rate.
    assert_eq!(counter(&log, "capture_queue_full"), 0, "{log}");
    assert_eq!(counter(&log, "processes_evicted_cap"), 0, "{log}");
}

/// utime + stime (or, from `index` 15, cutime + cstime) of a /proc/PID/stat line, in ticks.
fn ticks_at(stat: &str, index: usize) -> u64 {
    // Fields after the command name, which may hold spaces, closed by the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `index` counts from the pid (field 0); `rest` starts at the state (field 2).
    fields[index - 2].parse::<u64>().unwrap() + fields[index - 1].parse::<u64>().unwrap()
}

fn cpu_ticks(stat_path: &str, index: usize) -> u64 {
    ticks_at(&std::fs::read_to_string(stat_path).unwrap(), index)
}

fn storm_running(storm: &std::process::Child) -> bool {
    // Still there and not a zombie.
    std::fs::read_to_string(format!("/proc/{}/stat", storm.id()))
        .is_ok_and(|stat| !stat[stat.rfind(')').unwrap() + 2..].starts_with('Z'))
}
