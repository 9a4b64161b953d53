//! Helpers for Sightline's integration tests: run the real agent binary (as root), real servers
//! and clients, and read back exactly what the agent wrote.
#![allow(clippy::unwrap_used)] // Test helpers: a failure is a test failure with its message.

pub mod cgroups;
pub mod dashboards;
pub mod docker;
pub mod kube;
pub mod manifests;
pub mod netns;
pub mod otlp;

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

/// How long to wait for something the agent or a program should do promptly: 30 s, or
/// `$SIGHTLINE_TEST_PATIENCE_SECS` (the kernel matrix's guests run under emulation, where a
/// debug agent has once taken over 30 s to start). A bound on waiting, never an assertion on
/// speed.
pub fn patience() -> Duration {
    static PATIENCE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *PATIENCE.get_or_init(|| {
        let secs = std::env::var("SIGHTLINE_TEST_PATIENCE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30);
        Duration::from_secs(secs)
    })
}

/// Give to [`Agent::start`] to start the agent without its event dump.
pub const NO_DUMP: &str = "--no-dump";

/// The agent binary: $SIGHTLINE_BIN (set by `cargo xtask test`), else target/debug/sightline.
pub fn agent_binary() -> PathBuf {
    std::env::var_os("SIGHTLINE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/sightline"))
}

/// The Go TLS fixture's server, with the certificate it serves (kept while it runs).
pub struct GoTlsServer {
    pub program: Program,
    pub port: u16,
    _cert: Certificate,
}

/// The Go TLS fixture's server on a free port, with a certificate of its own, once the agent
/// has probed it.
pub fn go_tls_server(binary: &Path, agent: &mut Agent) -> GoTlsServer {
    let cert = certificate();
    let port = free_port();
    let mut cmd = Command::new(binary);
    cmd.arg("server")
        .arg(port.to_string())
        .arg(&cert.cert)
        .arg(&cert.key);
    let mut server = Program::spawn(cmd);
    assert_eq!(server.line(), "ready");
    wait_for_port(port);
    agent.wait_tls_ready(server.pid(), "go-crypto-tls");
    GoTlsServer {
        program: server,
        port,
        _cert: cert,
    }
}

/// One request by the Go TLS fixture's client to `path` on `port`: the client's pid and the
/// status it printed. The client waits for a go-ahead on its input, so that with `probed_by`
/// the request is made only once the agent has probed the client too.
pub fn go_tls_request(
    binary: &Path,
    port: u16,
    path: &str,
    probed_by: Option<&mut Agent>,
) -> (u32, Vec<String>) {
    let mut cmd = Command::new(binary);
    cmd.arg("client")
        .arg(format!("https://127.0.0.1:{port}{path}"));
    let mut client = Program::spawn_interactive(cmd);
    assert_eq!(client.line(), "waiting");
    let pid = client.pid();
    if let Some(agent) = probed_by {
        agent.wait_tls_ready(pid, "go-crypto-tls");
    }
    client.send_line("go");
    (pid, client.finish())
}

/// A fixture script's path.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The Go TLS fixture (fixtures/tls/tls.go, a client and a server) built with Debian's Go,
/// with symbols or `stripped` (-s -w), once per test process. Where `$SIGHTLINE_GO_FIXTURES`
/// names a directory, the build `cargo xtask` made there is taken instead (the kernel matrix's
/// guests run under emulation, where a Go build would take minutes).
pub fn go_tls_fixture(stripped: bool) -> PathBuf {
    let name = if stripped {
        "tls-go-stripped"
    } else {
        "tls-go"
    };
    if let Some(dir) = std::env::var_os("SIGHTLINE_GO_FIXTURES") {
        let built = PathBuf::from(dir).join(name);
        assert!(built.exists(), "{} is missing", built.display());
        return built;
    }
    static BUILT: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap();
    // Where cargo gives integration tests their CARGO_TARGET_TMPDIR (unset for a library).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp/go-tls");
    let out = dir.join(name);
    if !built.contains(&out) {
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = Command::new("go");
        cmd.arg("build");
        if stripped {
            cmd.arg("-ldflags=-s -w");
        }
        let status = cmd
            .arg("-o")
            .arg(&out)
            .arg(fixture("tls/tls.go"))
            .env("GOCACHE", dir.join("cache"))
            .env("GOPATH", dir.join("gopath"))
            .env("GOFLAGS", "-mod=mod")
            .env("GO111MODULE", "off")
            .status()
            .unwrap();
        assert!(status.success(), "go build failed");
        built.push(out.clone());
    }
    out
}

/// A running agent writing JSON lines and an event dump into a temporary directory.
pub struct Agent {
    child: Child,
    dir: tempfile::TempDir,
}

impl Agent {
    /// Starts the agent and waits until its probes are attached.
    pub fn start(extra_args: &[&str]) -> Agent {
        Agent::start_wrapped(&[], extra_args)
    }

    /// [`Agent::start`] through `wrapper` (a program that execs the agent, such as `setpriv`
    /// with its options), so the agent keeps the wrapper's pid.
    pub fn start_wrapped(wrapper: &[&str], extra_args: &[&str]) -> Agent {
        assert!(
            is_root(),
            "integration tests load eBPF programs: run them as root (cargo xtask test)"
        );
        let dir = tempfile::tempdir().unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let binary = agent_binary();
        assert!(
            binary.exists(),
            "{} is missing: build it (cargo build -p sightline)",
            binary.display()
        );
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&binary);
                command
            }
            None => Command::new(&binary),
        };
        // JSON unless the test asks for another format (the file is the same).
        if !extra_args.contains(&"--output") {
            command.args(["--output", "json"]);
        }
        command
            .arg("--output-file")
            .arg(dir.path().join("calls.jsonl"));
        // The event dump, unless the test turns it off (`--no-dump`: a load test, where
        // formatting a line per event would be most of the work).
        let extra_args: Vec<&str> = if extra_args.contains(&NO_DUMP) {
            extra_args
                .iter()
                .copied()
                .filter(|a| *a != NO_DUMP)
                .collect()
        } else {
            command
                .arg("--dump-events")
                .arg(dir.path().join("events.jsonl"));
            extra_args.to_vec()
        };
        command.arg("--tls-report").arg(dir.path().join("tls.json"));
        if !extra_args.contains(&"--inventory-db") {
            command
                .arg("--inventory-db")
                .arg(dir.path().join("inventory.sqlite"));
        }
        let child = command
            .args(&extra_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut agent = Agent { child, dir };
        agent.wait_until("the agent to start capturing", |a| {
            a.stderr().contains("capture started")
        });
        agent
    }

    /// Starts the agent with the config file at `config`; its inventory database is
    /// [`Agent::db`].
    pub fn with_config(config: &Path, extra_args: &[&str]) -> Agent {
        let mut args = vec!["--config", config.to_str().unwrap()];
        args.extend_from_slice(extra_args);
        Agent::start(&args)
    }

    /// The inventory database the agent was started with when the test gave none.
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("inventory.sqlite")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The directory where the agent writes its outputs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Every call written so far.
    pub fn calls(&self) -> Vec<Value> {
        read_json_lines(&self.dir.path().join("calls.jsonl"))
            .into_iter()
            .filter(|v| v.get("event.name").is_none())
            .collect()
    }

    /// Every finding written so far to the JSON output (new ones, and ones that got worse).
    pub fn findings(&self) -> Vec<Value> {
        read_json_lines(&self.dir.path().join("calls.jsonl"))
            .into_iter()
            .filter(|v| v["event.name"] == "sightline.finding")
            .collect()
    }

    /// Every endpoint change written so far to the JSON output.
    pub fn changes(&self) -> Vec<Value> {
        read_json_lines(&self.dir.path().join("calls.jsonl"))
            .into_iter()
            .filter(|v| v["event.name"] == "sightline.inventory.change")
            .collect()
    }

    /// The inventory as `sightline inventory --format json` prints it from `db`.
    pub fn inventory(db: &Path) -> Vec<Value> {
        serde_json::from_slice(&report("inventory", db, &["--format", "json"])).unwrap()
    }

    /// Every event dumped so far.
    pub fn events(&self) -> Vec<Value> {
        read_json_lines(&self.dir.path().join("events.jsonl"))
    }

    /// The raw calls file, for searching.
    pub fn output_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("calls.jsonl")).unwrap_or_default()
    }

    /// Everything the agent wrote: calls, the event dump, its log and its TLS coverage report.
    pub fn all_output(&self) -> String {
        ["calls.jsonl", "events.jsonl", "stderr.log", "tls.json"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The TLS coverage report, as `sightline tls --all --format json` prints it: one object per
    /// process.
    pub fn tls_report(&self) -> Vec<Value> {
        let out = Command::new(agent_binary())
            .args(["tls", "--all", "--format", "json", "--report"])
            .arg(self.dir.path().join("tls.json"))
            .output()
            .unwrap();
        if !out.status.success() {
            return Vec::new(); // Not written yet.
        }
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The coverage report's entry for `pid`, if any.
    pub fn tls_process(&self, pid: u32) -> Option<Value> {
        self.tls_report().into_iter().find(|p| p["pid"] == pid)
    }

    /// Waits until the TLS probes are attached to a `library` file that `pid` maps: a program
    /// whose TLS library file is new to the agent is covered after this short, bounded delay.
    pub fn wait_tls_ready(&mut self, pid: u32, library: &str) {
        self.wait_until(&format!("TLS probes on {library} for pid {pid}"), |a| {
            a.tls_process(pid).is_some_and(|p| {
                p["libraries"].as_array().is_some_and(|l| {
                    l.iter()
                        .any(|l| l["library"] == library && l["attached"] == true)
                })
            })
        });
    }

    /// Waits until the calls satisfy `done`, then returns them.
    pub fn wait_for_calls(&mut self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        self.wait_until(what, |a| done(&a.calls()));
        self.calls()
    }

    /// Waits until `server` calls on `port` were written at the server end and `client` at the
    /// client end, stops the agent (so everything it saw is written) and returns every call.
    pub fn collect(&mut self, port: u16, server: usize, client: usize) -> Vec<Value> {
        self.wait_for_calls(
            &format!("{server} server and {client} client calls on port {port}"),
            |c| {
                calls_on_port(c, "server", port).len() >= server
                    && calls_on_port(c, "client", port).len() >= client
            },
        );
        self.stop();
        self.calls()
    }

    /// Polls `done` until true; fails with the agent's log when the agent died or it never happens.
    pub fn wait_until(&mut self, what: &str, done: impl Fn(&Agent) -> bool) {
        let start = Instant::now();
        loop {
            if done(self) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the agent exited ({status}) while waiting for {what}:\n{}",
                    self.stderr()
                );
            }
            if start.elapsed() > patience() {
                panic!(
                    "gave up waiting for {what}\ncalls:\n{}\nagent log:\n{}",
                    self.output_text(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the agent process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Resident memory of the agent, in KiB.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }

    /// Stops the agent with SIGINT and waits for it (everything it saw is then written);
    /// returns its log.
    pub fn stop(&mut self) -> String {
        self.stop_with(libc::SIGINT)
    }

    /// Kills the agent with SIGKILL (no cleanup of its own) and waits until it is gone.
    pub fn kill_9(&mut self) {
        signal(self.child.id(), libc::SIGKILL);
        let status = self.child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
    }

    /// Stops the agent with `sig` (SIGINT or SIGTERM) and waits for a clean exit; returns its
    /// log.
    pub fn stop_with(&mut self, sig: i32) -> String {
        signal(self.child.id(), sig);
        let status = self.child.wait().unwrap();
        let log = self.stderr();
        assert!(status.success(), "the agent exited with {status}:\n{log}");
        log
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let keep = std::env::var_os("SIGHTLINE_TEST_KEEP").is_some();
        if keep && self.child.try_wait().ok().flatten().is_none() {
            signal(self.child.id(), libc::SIGINT); // Its final counters go to the log.
        }
        if self.child.try_wait().ok().flatten().is_none() {
            if keep {
                std::thread::sleep(Duration::from_secs(5));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Debugging a failure: SIGHTLINE_TEST_KEEP=1 keeps the agent's outputs.
        if std::env::var_os("SIGHTLINE_TEST_KEEP").is_some() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            eprintln!("agent outputs kept in {}", dir.keep().display());
        }
    }
}

/// The complete lines of a JSON-lines file (a last line still being written is left out).
fn read_json_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// What `sightline SUBCOMMAND --db DB ARGS...` prints (inventory, findings, openapi).
pub fn report(subcommand: &str, db: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(agent_binary())
        .arg(subcommand)
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sightline {subcommand}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A program started by a test, killed when dropped.
pub struct Program {
    pub child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Program {
    /// Starts `cmd` with piped stdout (Python unbuffered).
    pub fn spawn(cmd: Command) -> Program {
        Self::spawn_with_stdin(cmd, Stdio::null())
    }

    /// Starts `cmd` with stdin piped too, to drive it with [`Program::send_line`].
    pub fn spawn_interactive(cmd: Command) -> Program {
        Self::spawn_with_stdin(cmd, Stdio::piped())
    }

    /// Writes a line to the program's stdin.
    pub fn send_line(&mut self, line: &str) {
        use std::io::Write as _;
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Closes the program's stdin.
    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    fn spawn_with_stdin(mut cmd: Command, stdin: Stdio) -> Program {
        let mut child = cmd
            .env("PYTHONUNBUFFERED", "1")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {cmd:?}: {e}"));
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Program { child, stdout }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the program prints (without the newline).
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).unwrap();
        assert!(n > 0, "the program ended before printing a line");
        line.trim_end().to_string()
    }

    /// Waits for the program to end successfully; returns the rest of its output.
    pub fn finish(mut self) -> Vec<String> {
        let mut rest = Vec::new();
        loop {
            let mut line = String::new();
            if self.stdout.read_line(&mut line).unwrap() == 0 {
                break;
            }
            rest.push(line.trim_end().to_string());
        }
        let status = self.child.wait().unwrap();
        assert!(status.success(), "program failed: {status}");
        rest
    }

    /// Base name of the program's executable as the kernel has it (/proc/PID/exe).
    pub fn executable_name(&self) -> String {
        executable_name(self.pid())
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Base name of a live process's executable.
pub fn executable_name(pid: u32) -> String {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    exe.file_name().unwrap().to_string_lossy().into_owned()
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the keep-alive Python server on a free port and waits until it listens.
pub fn keepalive_server() -> (Program, u16) {
    let port = free_port();
    let mut server = Program::spawn(python(&[
        fixture("keepalive_server.py").to_str().unwrap(),
        &port.to_string(),
    ]));
    assert_eq!(server.line(), "ready");
    (server, port)
}

/// `python3 -m http.server` serving `dir` on a free port of `bind`, once it listens.
pub fn python_http_server(dir: &Path, bind: &str) -> (Program, u16) {
    let port = free_port();
    let mut server = Program::spawn(python(&[
        "-m",
        "http.server",
        &port.to_string(),
        "--bind",
        bind,
        "--directory",
        dir.to_str().unwrap(),
    ]));
    assert!(server.line().starts_with("Serving HTTP"));
    (server, port)
}

/// `openssl s_server -www` with `cert` on a free port, once it listens: a TLS server that
/// answers every GET with its status page, reading through an SSL BIO.
pub fn openssl_s_server(cert: &Certificate) -> (Program, u16) {
    let port = free_port();
    let mut cmd = Command::new("openssl");
    cmd.args(["s_server", "-quiet", "-www", "-accept", &port.to_string()])
        .arg("-cert")
        .arg(&cert.cert)
        .arg("-key")
        .arg(&cert.key);
    let server = Program::spawn(cmd);
    wait_for_port(port);
    (server, port)
}

/// nghttpd serving `dir` in cleartext (HTTP/2 by prior knowledge) on a free port, once it
/// listens.
pub fn nghttpd(dir: &Path) -> (Program, u16) {
    let port = free_port();
    let mut cmd = Command::new("nghttpd");
    cmd.args(["--no-tls", "-d"]).arg(dir).arg(port.to_string());
    let server = Program::spawn(cmd);
    wait_for_port(port);
    (server, port)
}

/// The BPF programs loaded now, as `bpftool prog show --json` lists them.
pub fn bpf_programs() -> Vec<Value> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "bpftool prog show failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Ids of the programs the kernel has loaded (to check that a stopped agent left none).
pub fn loaded_program_ids() -> std::collections::BTreeSet<u64> {
    bpf_programs()
        .iter()
        .filter_map(|p| p["id"].as_u64())
        .collect()
}

/// A fixture client run to completion: who it was, its connection's local port (its first
/// line) and the rest of its output.
pub struct ClientRun {
    pub pid: u32,
    pub executable_name: String,
    pub local_port: u64,
    pub output: Vec<String>,
}

/// Runs a fixture client script against `port` until it ends.
pub fn run_client(name: &str, port: u16) -> ClientRun {
    let mut client = python_fixture(name, port);
    let local_port = client.line().parse().unwrap();
    let (pid, executable_name) = (client.pid(), client.executable_name());
    ClientRun {
        pid,
        executable_name,
        local_port,
        output: client.finish(),
    }
}

/// Starts the fixture API `script` (`script BIND PORT`, printing `ready`), inside network
/// namespace `ns` when given, and waits for its `ready`.
pub fn python_api(script: &str, bind: &str, port: u16, ns: Option<&str>) -> Program {
    let script = fixture(script);
    let args = [script.to_str().unwrap(), bind, &port.to_string()];
    let mut program = Program::spawn(match ns {
        Some(ns) => netns::TwoHosts::command(ns, "python3", &args),
        None => python(&args),
    });
    assert_eq!(program.line(), "ready");
    program
}

/// Runs a fixture script against `port`.
pub fn python_fixture(name: &str, port: u16) -> Program {
    Program::spawn(python(&[
        fixture(name).to_str().unwrap(),
        &port.to_string(),
    ]))
}

/// `python3 args...`
pub fn python(args: &[&str]) -> Command {
    let mut cmd = Command::new("python3");
    cmd.args(args);
    cmd
}

/// Runs curl to completion and returns (pid, stdout).
pub fn curl(args: &[&str]) -> (u32, String) {
    let child = Command::new("curl")
        .args(["--silent", "--show-error"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (pid, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `curl -s -o /dev/null -w %{http_code} ARGS...` (inside network namespace `ns` when
/// given) and returns the HTTP status it got (`000` when it got none).
pub fn curl_status(ns: Option<&str>, args: &[&str]) -> String {
    let mut all = vec!["-s", "-o", "/dev/null", "-w", "%{http_code}"];
    all.extend_from_slice(args);
    let mut cmd = match ns {
        Some(ns) => netns::TwoHosts::command(ns, "curl", &all),
        None => {
            let mut cmd = Command::new("curl");
            cmd.args(&all);
            cmd
        }
    };
    String::from_utf8_lossy(&cmd.output().unwrap().stdout).into_owned()
}

/// The one item that satisfies `matches`; fails, showing them all, when none or several do.
pub fn the_one<'a>(items: &'a [Value], what: &str, matches: impl Fn(&Value) -> bool) -> &'a Value {
    let found: Vec<&Value> = items.iter().filter(|v| matches(v)).collect();
    assert_eq!(found.len(), 1, "{what}: {items:#?}");
    found[0]
}

/// Calls seen by `kind` ("client" or "server") on connections to `port`.
pub fn calls_on_port<'a>(calls: &'a [Value], kind: &str, port: u16) -> Vec<&'a Value> {
    calls
        .iter()
        .filter(|c| c["span.kind"] == kind)
        .filter(|c| {
            let server_port = if kind == "server" {
                &c["network.local.port"]
            } else {
                &c["network.peer.port"]
            };
            server_port == port
        })
        .collect()
}

fn is_root() -> bool {
    #[allow(unsafe_code)]
    // SAFETY: geteuid has no preconditions.
    unsafe {
        libc::geteuid() == 0
    }
}

/// Sends a signal to a process.
pub fn signal(pid: u32, sig: i32) {
    #[allow(unsafe_code)]
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// An nginx (Debian's) serving `root` on a free loopback port with keep-alive and sendfile, in
/// the foreground, with its own temporary prefix.
pub fn nginx(root: &Path) -> (Program, u16, tempfile::TempDir) {
    nginx_with_tls(root, None, "")
}

/// Like [`nginx`], over TLS with `tls`'s certificate when given.
/// nginx serving `root`, over TLS with `tls`; `server_extra` is added to its `server` block.
pub fn nginx_with_tls(
    root: &Path,
    tls: Option<&Certificate>,
    server_extra: &str,
) -> (Program, u16, tempfile::TempDir) {
    nginx_listening(root, tls, "", server_extra)
}

/// nginx serving `root` over HTTP/2: with TLS (ALPN h2), or h2c by prior knowledge without.
pub fn nginx_http2(root: &Path, tls: Option<&Certificate>) -> (Program, u16, tempfile::TempDir) {
    nginx_listening(root, tls, " http2", "")
}

fn nginx_listening(
    root: &Path,
    tls: Option<&Certificate>,
    listen_options: &str,
    server_extra: &str,
) -> (Program, u16, tempfile::TempDir) {
    let port = free_port();
    let listen = match tls {
        Some(c) => format!(
            "listen 127.0.0.1:{port} ssl{listen_options};\n    ssl_certificate {};\n    ssl_certificate_key {};",
            c.cert.display(),
            c.key.display()
        ),
        None => format!("listen 127.0.0.1:{port}{listen_options};"),
    };
    let prefix = tempfile::tempdir().unwrap();
    let conf = prefix.path().join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\ndaemon off;\nmaster_process off;\nerror_log {p}/error.log;\npid {p}/nginx.pid;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  keepalive_timeout 30;\n\
             client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fastcgi;\n\
             uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n\
             server {{\n    {listen}\n    root {root};\n    {server_extra}\n  }}\n}}\n",
            p = prefix.path().display(),
            root = root.display(),
        ),
    )
    .unwrap();
    let binary = if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    };
    let mut cmd = Command::new(binary);
    cmd.arg("-p").arg(prefix.path()).arg("-c").arg(&conf);
    let server = Program::spawn(cmd);
    wait_for_port(port);
    (server, port, prefix)
}

/// A self-signed certificate and its key for 127.0.0.1, made with the openssl CLI.
/// nginx over TLS serving `/hello.txt` ("hello over tls\n"), with its certificate and files.
pub struct TlsNginx {
    pub server: Program,
    pub port: u16,
    _certificate: Certificate,
    _site: tempfile::TempDir,
    _prefix: tempfile::TempDir,
}

/// Starts [`TlsNginx`] and waits until `agent` has its TLS probes on it.
pub fn tls_nginx(agent: &mut Agent) -> TlsNginx {
    let certificate = certificate();
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("hello.txt"), "hello over tls\n").unwrap();
    let (server, port, prefix) = nginx_with_tls(site.path(), Some(&certificate), "");
    agent.wait_tls_ready(server.pid(), "openssl");
    TlsNginx {
        server,
        port,
        _certificate: certificate,
        _site: site,
        _prefix: prefix,
    }
}

pub struct Certificate {
    _dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn certificate() -> Certificate {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=127.0.0.1"])
        // Clients that ignore the common name (rustls) check these.
        .args([
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "openssl req failed");
    Certificate {
        _dir: dir,
        cert,
        key,
    }
}

/// A certificate authority and a server certificate it signed for 127.0.0.1 (what strict
/// verifiers such as rustls accept: a self-signed CA certificate may not serve as the leaf).
pub struct SignedCertificate {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A client certificate the CA signed (for mTLS), and its key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

pub fn signed_certificate() -> SignedCertificate {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    std::fs::write(
        path("client.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    std::fs::write(
        path("leaf.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .current_dir(dir.path())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "openssl {args:?} failed");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=sightline test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    // A key, a certificate request for `subject`, and the CA's signature with `ext`'s extensions:
    // NAME-key.pem and NAME.pem.
    let signed = |subject: &str, name: &str, ext: &str| {
        let (key, csr, pem) = (
            format!("{name}-key.pem"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        let request = [
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", &key, "-out", &csr,
        ];
        openssl(&request);
        let sign = [
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            ext,
            "-out",
            &pem,
        ];
        openssl(&sign);
    };
    signed("/CN=127.0.0.1", "server", "leaf.ext");
    signed("/CN=sightline agent", "client", "client.ext");
    SignedCertificate {
        ca: path("ca.pem"),
        cert: path("server.pem"),
        key: path("server-key.pem"),
        client_cert: path("client.pem"),
        client_key: path("client-key.pem"),
        _dir: dir,
    }
}

/// Waits until something listens on the loopback `port`.
pub fn wait_for_port(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < patience(),
            "nothing listens on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Python package from PyPI (`package==version`), installed once under `tmp` (the tests'
/// `CARGO_TARGET_TMPDIR`); returns the directory to put on PYTHONPATH.
pub fn pip_package(tmp: &str, requirement: &str, import_name: &str) -> PathBuf {
    let name = requirement.split("==").next().unwrap_or(requirement);
    let dir = Path::new(tmp).join(format!("pylib-{name}"));
    if !dir.join(import_name).exists() {
        let install = |extra: &[&str]| {
            Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "--target"])
                .arg(&dir)
                .args(extra)
                .arg(requirement)
                .status()
                .unwrap()
                .success()
        };
        // Debian's pip refuses installs it calls system-wide unless told otherwise.
        assert!(
            install(&[]) || install(&["--break-system-packages"]),
            "pip could not install {requirement}"
        );
    }
    dir
}

/// A counter from the agent's final log line (`name=N`); fails when it is missing.
pub fn counter(log: &str, name: &str) -> u64 {
    let key = format!("{name}=");
    let start = log
        .rfind(&key)
        .unwrap_or_else(|| panic!("no {name} in the log:\n{log}"))
        + key.len();
    log[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

/// This machine's host name as the kernel has it (what a node's name would be).
pub fn kernel_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}
