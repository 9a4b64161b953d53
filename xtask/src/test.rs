//! `cargo xtask test`: everything CI runs. Set up, lint, unit tests, then the integration tests
//! in tests/ (root: they load the real probes), one at a time since each runs an agent that
//! sees the whole host, then the kernel matrix (`kernels`): the smoke suite on other kernels.

use std::process::Command;

use anyhow::bail;

use crate::{fuzz, kernels, lint, setup, shell};

/// Programs the integration tests drive: (program, Debian package).
const TEST_PROGRAMS: &[(&str, &str)] = &[
    ("curl", "curl"),
    ("python3", "python3"),
    ("nginx", "nginx-light"),
    ("setpriv", "util-linux"),
    ("wrk", "wrk"),
    // TLS capture tests: OpenSSL's CLI, GnuTLS's client, Go, Node.js and Java.
    ("openssl", "openssl"),
    ("gnutls-cli", "gnutls-bin"),
    ("go", "golang-go"),
    ("node", "nodejs"),
    ("java", "default-jdk-headless"),
    // Identity tests: network namespaces joined by veth pairs.
    ("ip", "iproute2"),
    // Deployment tests: programs left loaded after a stop.
    ("bpftool", "bpftool"),
    // Container-root test: which files the agent opens.
    ("inotifywait", "inotify-tools"),
    // HTTP/2 tests: nghttp2's client and h2c server; Debian's grpcio (it links the system's
    // OpenSSL, whose uprobes give its TLS plaintext; PyPI's wheel has BoringSSL stripped inside).
    ("nghttp", "nghttp2-client"),
    ("nghttpd", "nghttp2-server"),
    (GRPCIO, "python3-grpcio"),
    // Wheels from PyPI: OpenSSL 1.1 (TLS tests), openapi-spec-validator (inventory tests).
    ("pip3", "python3-pip"),
    // Cluster tests: a real Prometheus scraping two agents.
    ("prometheus", "prometheus"),
    // Shift-left tests: Microsoft's SARIF Multitool, from npm.
    ("npm", "npm"),
    // Shared-socket tests: fork-per-connection and inetd-style servers.
    ("busybox", "busybox-static"),
    ("systemd-socket-activate", "systemd"),
    // Container tests: a real Docker engine (its daemon started by the tests) and Podman.
    ("dockerd", "docker.io"),
    ("podman", "podman"),
    // Container image test: a Debian 12 base image made locally (nothing can be pulled).
    ("debootstrap", "debootstrap"),
];

/// Debian's grpcio module (a file, not a program: an absolute path is checked as a file).
const GRPCIO: &str = "/usr/lib/python3/dist-packages/grpc/__init__.py";

/// What a fresh clone's builds and test runs take on disk (measured: about 9.2 GiB), with a
/// margin.
const NEEDED_GIB: u64 = 12;

pub fn run(filter: Option<&str>, kernel: Option<&str>) -> anyhow::Result<()> {
    warn_if_disk_is_short();
    setup::run()?;
    shell::ensure_debian_programs(TEST_PROGRAMS)?;
    if kernel.is_some() {
        return kernel_matrix(kernel);
    }
    lint::run()?;
    let root = shell::workspace_root();
    let mut unit = Command::new("cargo");
    unit.current_dir(&root).args([
        "test",
        "--workspace",
        "--exclude",
        "sightline-tests",
        "--exclude",
        "agent-ebpf",
    ]);
    if let Some(filter) = filter {
        unit.arg(filter);
    }
    let mut totals = shell::TestTotals::default();
    shell::run_tests(&mut unit, &mut totals)?;
    // Every parser of untrusted input under libFuzzer for a bounded time (not with a filter).
    if filter.is_none() {
        fuzz::run(None, fuzz::TEST_SECONDS)?;
    }
    build_agent_as_root()?;
    let mut integration = Command::new("cargo");
    integration
        .current_dir(&root)
        .args(["test", "--package", "sightline-tests", "--"])
        .arg("--test-threads=1")
        .env("SIGHTLINE_BIN", root.join("target/debug/sightline"));
    if let Some(filter) = filter {
        integration.arg(filter);
    }
    let mut result = shell::run_tests(&mut integration, &mut totals);
    // The other kernels (not with a filter: they run the smoke suite whole).
    if result.is_ok() && filter.is_none() {
        result = kernels::run(None, &mut totals);
    }
    // The plain closing line CI reads, whatever happened.
    println!("{} passed, {} failed", totals.passed, totals.failed);
    result
}

/// `cargo xtask test --kernel SERIES`: the smoke suite on that kernel only.
fn kernel_matrix(series: Option<&str>) -> anyhow::Result<()> {
    build_agent_as_root()?;
    let mut totals = shell::TestTotals::default();
    let result = kernels::run(series, &mut totals);
    println!("{} passed, {} failed", totals.passed, totals.failed);
    result
}

/// The debug agent the integration tests and the kernel matrix run.
fn build_agent_as_root() -> anyhow::Result<()> {
    if !shell::is_root() {
        bail!("the integration tests load eBPF programs: run `cargo xtask test` as root");
    }
    shell::run(
        Command::new("cargo")
            .current_dir(shell::workspace_root())
            .args(["build", "--package", "sightline"]),
    )
}

/// Says so up front when the disk is nearly full: the builds would fail later with "No space
/// left on device" deep in a build script's output.
fn warn_if_disk_is_short() {
    let root = shell::workspace_root();
    let Ok(text) = shell::output(
        Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&root),
    ) else {
        return;
    };
    let Some(free) = text
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse::<u64>().ok())
    else {
        return;
    };
    let free_gib = free >> 30;
    if free_gib < NEEDED_GIB {
        eprintln!(
            "xtask: warning: {free_gib} GiB free on the disk of {}; the builds and tests take about {NEEDED_GIB} GiB",
            root.display()
        );
    }
}
