//! The kernel matrix: the smoke suite (tests/tests/kernel_smoke.rs) run by the real agent inside
//! a virtual machine booted on every kernel Debian's packages offer here, over the host's root
//! file system (virtme-ng, qemu). The verifier of each kernel is the judge of the programs.
//!
//! Which kernels: Debian's meta-packages name the newest image of each kernel series it ships
//! (`linux-image-amd64` the release's own, 6.1 for bookworm; `linux-image-6.12-amd64` a newer
//! series through security updates), so a series Debian adds joins the matrix by itself. The
//! generic flavour: the cloud one lacks the 9p module the guest mounts its root with.
//!
//! KVM does not work inside the development and CI machines, so the guests run under TCG,
//! several times slower: the suite is short, and each guest has a time limit.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::{setup, shell};

/// virtme-ng from PyPI, pinned: its command line is part of our recipe.
const VIRTME_NG: &str = "virtme-ng==1.42";
/// A guest that has not finished by then is stopped (a suite takes about 2.5 minutes).
const GUEST_TIMEOUT_SECS: u32 = 900;

/// One kernel of the matrix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// `uname -r` in the guest, e.g. 6.1.0-57-amd64.
    release: String,
}

impl Kernel {
    /// major.minor, e.g. 6.1, as `--kernel` takes it.
    fn series(&self) -> String {
        self.release
            .split(['.', '-'])
            .take(2)
            .collect::<Vec<_>>()
            .join(".")
    }

    fn package(&self) -> String {
        format!("linux-image-{}-unsigned", self.release)
    }

    fn image(&self) -> PathBuf {
        PathBuf::from(format!("/boot/vmlinuz-{}", self.release))
    }
}

/// Runs the smoke suite on every offered kernel, or only on the series `only` (e.g. "6.1"),
/// adding the results to `totals`. The agent's debug build must exist.
pub fn run(only: Option<&str>, totals: &mut shell::TestTotals) -> anyhow::Result<()> {
    let mut kernels = offered_kernels()?;
    if let Some(series) = only {
        kernels.retain(|k| k.series() == series);
        if kernels.is_empty() {
            bail!(
                "no kernel of series {series} is offered by Debian's packages here (offered: {})",
                offered_kernels()?
                    .iter()
                    .map(Kernel::series)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    shell::ensure_debian_programs(&[
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("busybox", "busybox-static"),
    ])?;
    for kernel in &kernels {
        ensure_kernel(kernel)?;
    }
    let vng = ensure_virtme_ng()?;
    let suite = smoke_suite_binary()?;
    let go_fixtures = build_go_fixtures()?;
    for kernel in &kernels {
        let guest = || guest_command(&vng, kernel, &suite, &go_fixtures);
        let mut outcome = run_guest(kernel, guest(), totals);
        if let Outcome::Died(why) = &outcome {
            // Booted under emulation, a guest has once ended mid-suite (6.12, one run in
            // about ten, exit 255, no test failed): the emulator's doing, not a result. Its
            // output is above; one more boot decides. A guest whose tests ran is never retried.
            eprintln!("xtask: kernel matrix: {why}; booting it once more");
            outcome = run_guest(kernel, guest(), totals);
        }
        match outcome {
            Outcome::Ran(Ok(())) => {}
            Outcome::Ran(Err(e)) => {
                return Err(e.context(format!(
                    "the smoke suite failed on Linux {}",
                    kernel.release
                )));
            }
            Outcome::Died(why) => bail!("{why}, twice"),
        }
    }
    Ok(())
}

/// How one guest ended.
enum Outcome {
    /// Its test binary printed a result: the suite's verdict.
    Ran(anyhow::Result<()>),
    /// It ended before any result: it crashed, hung or never booted.
    Died(String),
}

/// Boots one guest on `kernel` and runs the suite in it.
fn run_guest(kernel: &Kernel, mut command: Command, totals: &mut shell::TestTotals) -> Outcome {
    let before = *totals;
    let started = Instant::now();
    eprintln!(
        "xtask: kernel matrix: booting Linux {} under qemu (TCG)",
        kernel.release
    );
    let result = shell::run_tests(&mut command, totals);
    let (passed, failed) = (totals.passed - before.passed, totals.failed - before.failed);
    eprintln!(
        "xtask: kernel matrix: Linux {}: {passed} passed, {failed} failed in {} s",
        kernel.release,
        started.elapsed().as_secs()
    );
    if passed + failed > 0 {
        return Outcome::Ran(result);
    }
    Outcome::Died(format!(
        "the guest on Linux {} ended without a test result ({})",
        kernel.release,
        result
            .err()
            .map_or("exit 0".to_string(), |e| format!("{e:#}"))
    ))
}

/// The newest image of each kernel series Debian's packages offer.
fn offered_kernels() -> anyhow::Result<Vec<Kernel>> {
    let mut kernels = kernels_from_meta_packages()?;
    if kernels.is_empty() {
        // A fresh machine may have no package lists yet.
        shell::run(Command::new("apt-get").args(["update", "-qq"]))?;
        kernels = kernels_from_meta_packages()?;
    }
    if kernels.is_empty() {
        bail!(
            "Debian's packages offer no kernel image here (apt-cache search linux-image-amd64 finds nothing)"
        );
    }
    Ok(kernels)
}

fn kernels_from_meta_packages() -> anyhow::Result<Vec<Kernel>> {
    let found = shell::output(Command::new("apt-cache").args([
        "search",
        "--names-only",
        r"^linux-image-([0-9]+\.[0-9]+-)?amd64$",
    ]))?;
    let mut kernels = Vec::new();
    for meta in found.lines().filter_map(|l| l.split_whitespace().next()) {
        let depends = shell::output(Command::new("apt-cache").args(["depends", meta]))?;
        if let Some(release) = image_release(&depends)
            && !kernels.iter().any(|k: &Kernel| k.release == release)
        {
            kernels.push(Kernel { release });
        }
    }
    kernels.sort_by_key(|k| series_key(&k.series()));
    Ok(kernels)
}

/// The release of the image a meta-package depends on: "  Depends: linux-image-6.1.0-57-amd64"
/// gives "6.1.0-57-amd64".
fn image_release(depends: &str) -> Option<String> {
    depends.lines().find_map(|line| {
        let name = line.trim().strip_prefix("Depends: linux-image-")?;
        let release = name.strip_suffix("-unsigned").unwrap_or(name);
        release
            .starts_with(|c: char| c.is_ascii_digit())
            .then(|| release.to_string())
    })
}

/// (major, minor) for ordering the series numerically.
fn series_key(series: &str) -> (u32, u32) {
    let mut parts = series.split('.').map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

fn ensure_kernel(kernel: &Kernel) -> anyhow::Result<()> {
    let modules = PathBuf::from(format!("/lib/modules/{}", kernel.release));
    if kernel.image().exists() && modules.exists() {
        return Ok(());
    }
    if !shell::is_root() {
        bail!(
            "the kernel matrix boots {}: install it (as root: apt-get install {})",
            kernel.image().display(),
            kernel.package()
        );
    }
    eprintln!(
        "xtask: installing {} for the kernel matrix (about a minute)",
        kernel.package()
    );
    let install = || {
        shell::run(
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .arg(kernel.package())
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    if install().is_err() {
        // Stale package lists name a version the mirror no longer has.
        shell::run(Command::new("apt-get").args(["update", "-qq"]))?;
        install()?;
    }
    if !kernel.image().exists() {
        bail!(
            "{} did not install {}",
            kernel.package(),
            kernel.image().display()
        );
    }
    Ok(())
}

/// `vng` from a virtual environment of ours (PyPI's virtme-ng), installed once.
fn ensure_virtme_ng() -> anyhow::Result<PathBuf> {
    let venv = setup::cache_dir()?.join("vng-venv");
    let vng = venv.join("bin/vng");
    if vng.exists() {
        return Ok(vng);
    }
    eprintln!("xtask: installing {VIRTME_NG} into {}", venv.display());
    let make_venv = || shell::run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
    if make_venv().is_err() {
        // Debian's Python has its venv module (ensurepip) in a package of its own.
        shell::run(
            Command::new("apt-get")
                .args([
                    "install",
                    "-y",
                    "-qq",
                    "--no-install-recommends",
                    "python3-venv",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        make_venv().context("could not make a Python virtual environment")?;
    }
    shell::run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", VIRTME_NG]))?;
    if !vng.exists() {
        bail!("{VIRTME_NG} installed no {}", vng.display());
    }
    Ok(vng)
}

/// Builds the smoke suite's test binary and returns its path.
fn smoke_suite_binary() -> anyhow::Result<PathBuf> {
    let root = shell::workspace_root();
    let out = shell::output(Command::new("cargo").current_dir(&root).args([
        "test",
        "--package",
        "sightline-tests",
        "--test",
        "kernel_smoke",
        "--no-run",
        "--message-format=json",
    ]))?;
    out.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["target"]["name"] == "kernel_smoke")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo built no kernel_smoke test binary")
}

/// The Go TLS fixture, built on the host: the guests would take minutes for it. The tests take
/// it from $SIGHTLINE_GO_FIXTURES (tests/src/lib.rs, `go_tls_fixture`).
fn build_go_fixtures() -> anyhow::Result<PathBuf> {
    shell::ensure_debian_programs(&[("go", "golang-go")])?;
    let root = shell::workspace_root();
    let dir = root.join("target/kernel-matrix/go");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    shell::run(
        Command::new("go")
            .args(["build", "-o"])
            .arg(dir.join("tls-go"))
            .arg(root.join("tests/fixtures/tls/tls.go"))
            .env("GOCACHE", dir.join("cache"))
            .env("GOPATH", dir.join("gopath"))
            .env("GO111MODULE", "off"),
    )?;
    Ok(dir)
}

/// `vng` booting `kernel` and running the suite in it as root. The guest sees the host's files
/// read-only (its /tmp is its own), so everything it runs was built here.
fn guest_command(vng: &Path, kernel: &Kernel, suite: &Path, go_fixtures: &Path) -> Command {
    let root = shell::workspace_root();
    let path = std::env::var("PATH").unwrap_or_default();
    let script = format!(
        "export PATH={path} SIGHTLINE_BIN={agent} SIGHTLINE_GO_FIXTURES={go} RUST_BACKTRACE=1 \
         SIGHTLINE_TEST_PATIENCE_SECS=120; \
         cd /tmp && exec {suite} --test-threads=1",
        path = quote(&path),
        agent = quote(&root.join("target/debug/sightline").display().to_string()),
        go = quote(&go_fixtures.display().to_string()),
        suite = quote(&suite.display().to_string()),
    );
    // qemu reopens the guest's console and output at /proc/self/fd/{1,2} with O_TRUNC: were
    // either a file (a CI log), everything written to it before would turn into NULs. Both go
    // through the pipe that `shell::run_tests` reads.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "exec \"$@\" 2>&1", "sh", "timeout", "--kill-after=30"])
        .arg(GUEST_TIMEOUT_SECS.to_string())
        .arg(vng)
        .arg("-r")
        .arg(kernel.image())
        .args([
            "--force-9p",
            // 2 GiB guests have twice vanished mid-suite on 6.12 (exit 255, no console
            // output) while a debug agent started: more room rules out memory.
            "--memory",
            "4G",
            "--cpus",
            "2",
            "--disable-kvm",
            "--qemu-opts=-cpu max",
            "--",
        ])
        .arg(script)
        // vng runs virtme-run, from the same virtual environment.
        .env(
            "PATH",
            format!("{}:{path}", vng.with_file_name("").display()),
        )
        .current_dir("/tmp")
        .stdin(std::process::Stdio::null());
    cmd
}

/// `text` as one single-quoted shell word.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_image_a_meta_package_names() {
        let depends = "linux-image-amd64\n  Depends: linux-image-6.1.0-57-amd64\n";
        assert_eq!(image_release(depends).as_deref(), Some("6.1.0-57-amd64"));
        let newer = "linux-image-6.12-amd64\n  Depends: linux-image-6.12.118+deb12-amd64\n";
        let release = image_release(newer).unwrap();
        let kernel = Kernel { release };
        assert_eq!(kernel.series(), "6.12");
        assert_eq!(
            kernel.package(),
            "linux-image-6.12.118+deb12-amd64-unsigned"
        );
        assert_eq!(image_release("linux-image-amd64\n"), None);
    }

    #[test]
    fn series_sort_numerically_and_words_are_quoted() {
        let mut series = vec!["6.12", "6.1", "5.15"];
        series.sort_by_key(|s| series_key(s));
        assert_eq!(series, ["5.15", "6.1", "6.12"]);
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
