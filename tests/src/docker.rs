//! Real container engines for the container tests: Debian's docker.io (its daemon started when
//! none answers) and podman (daemonless), both installed by the test command, and a busybox
//! image imported from busybox-static into each (no registry is reachable: nothing is pulled).

use std::{
    process::{Command, Stdio},
    sync::OnceLock,
    time::Instant,
};

use crate::patience;

/// Debian's client (another `docker` may come first in PATH).
pub const DOCKER: &str = "/usr/bin/docker";
/// The image every container test runs: busybox-static with `httpd`, `wget`, `sh`, `sleep`
/// and a site in /www (`index.html`, `a.html`, `b.html`, `c.html`).
pub const IMAGE: &str = "sightline-test/busybox:1";

/// A container engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Docker,
    Podman,
}

impl Engine {
    /// Debian's client (another `docker` may come first in PATH).
    pub fn cli(self) -> &'static str {
        match self {
            Self::Docker => DOCKER,
            Self::Podman => "/usr/bin/podman",
        }
    }

    /// The runtime name the agent gives its containers (`container.runtime`).
    pub fn runtime(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Podman => "podman",
        }
    }

    /// `ENGINE ARGS...`; its trimmed stdout, failing with its stderr.
    pub fn cmd(self, args: &[&str]) -> String {
        self.cmd_with_input(args, b"")
    }

    /// [`Engine::cmd`] with `input` written to its stdin (then closed).
    pub fn cmd_with_input(self, args: &[&str], input: &[u8]) -> String {
        use std::io::Write as _;
        let mut child = Command::new(self.cli())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{} {args:?}: {}",
            self.cli(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Options of every `run`. Podman asks runc to set its default file and process limits,
    /// which this machine's sandbox refuses to raise ("error setting rlimits"): explicit ones.
    pub fn run_options(self) -> &'static [&'static str] {
        match self {
            Self::Docker => &[],
            Self::Podman => &[
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
            ],
        }
    }

    /// The engine ready with the test image: Docker's daemon started if none answers (it
    /// stays up for later tests and runs); Podman has none.
    pub fn ready(self) {
        static DOCKER_READY: OnceLock<()> = OnceLock::new();
        static PODMAN_READY: OnceLock<()> = OnceLock::new();
        match self {
            Self::Docker => DOCKER_READY.get_or_init(|| {
                start_docker_daemon();
                import_image(self);
            }),
            Self::Podman => PODMAN_READY.get_or_init(|| import_image(self)),
        };
    }

    /// The host's address on the engine's default network (what containers reach it by).
    pub fn gateway(self) -> String {
        match self {
            Self::Docker => self.cmd(&[
                "network",
                "inspect",
                "bridge",
                "-f",
                "{{(index .IPAM.Config 0).Gateway}}",
            ]),
            Self::Podman => self.cmd(&[
                "network",
                "inspect",
                "podman",
                "-f",
                "{{range .Subnets}}{{.Gateway}}{{end}}",
            ]),
        }
    }
}

/// `docker ARGS...`; its trimmed stdout, failing with its stderr.
pub fn docker(args: &[&str]) -> String {
    Engine::Docker.cmd(args)
}

/// Docker ready with the test image (see [`Engine::ready`]).
pub fn engine() {
    Engine::Docker.ready();
}

fn start_docker_daemon() {
    if answers() {
        return;
    }
    let log = std::fs::File::create("/tmp/sightline-tests-dockerd.log").unwrap();
    // A daemon: it outlives the test process on purpose (never waited for).
    #[allow(clippy::zombie_processes)]
    let _daemon = Command::new("dockerd")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("dockerd (Debian's docker.io) starts");
    let start = Instant::now();
    while !answers() {
        assert!(
            start.elapsed() < patience(),
            "dockerd did not answer: /tmp/sightline-tests-dockerd.log"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn answers() -> bool {
    Command::new(DOCKER)
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn import_image(engine: Engine) {
    let root = tempfile::tempdir().unwrap();
    let dir = |p: &str| std::fs::create_dir_all(root.path().join(p)).unwrap();
    dir("bin");
    dir("www");
    dir("tmp");
    std::fs::copy("/usr/bin/busybox", root.path().join("bin/busybox")).unwrap();
    for applet in ["sh", "httpd", "wget", "sleep"] {
        std::os::unix::fs::symlink("busybox", root.path().join("bin").join(applet)).unwrap();
    }
    for page in ["index", "a", "b", "c"] {
        std::fs::write(root.path().join(format!("www/{page}.html")), page).unwrap();
    }
    import(engine, root.path(), IMAGE);
}

/// An image holding the Go TLS fixture (built with symbols) as `/tls-go`, with the C libraries
/// it links (Debian's Go builds `net` with cgo), imported into Docker once per test process.
pub fn go_tls_image() -> &'static str {
    const TAG: &str = "sightline-test/go-tls:1";
    static IMPORTED: OnceLock<()> = OnceLock::new();
    IMPORTED.get_or_init(|| {
        let root = tempfile::tempdir().unwrap();
        let binary = crate::go_tls_fixture(false);
        std::fs::copy(&binary, root.path().join("tls-go")).unwrap();
        let ldd = Command::new("ldd").arg(&binary).output().unwrap();
        for library in String::from_utf8_lossy(&ldd.stdout)
            .split_whitespace()
            .filter(|word| word.starts_with('/'))
        {
            let inside = root.path().join(library.trim_start_matches('/'));
            std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
            std::fs::copy(library, &inside).unwrap();
        }
        import(Engine::Docker, root.path(), TAG);
    });
    TAG
}

/// The containerd that Debian's dockerd starts for itself: its socket and its state directory
/// (where the running containers' OCI bundles are).
pub const CONTAINERD_SOCKET: &str = "/var/run/docker/containerd/containerd.sock";
pub const CONTAINERD_STATE: &str = "/var/run/docker/containerd/daemon";

/// `ctr -n k8s.io ARGS...` against dockerd's containerd (in the namespace the kubelet's
/// containerd uses); its trimmed stdout, failing with its stderr.
pub fn ctr(args: &[&str]) -> String {
    let out = ctr_command().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ctr {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `ctr` against dockerd's containerd, in the `k8s.io` namespace.
fn ctr_command() -> Command {
    let mut command = Command::new("ctr");
    command.args(["--address", CONTAINERD_SOCKET, "--namespace", "k8s.io"]);
    command
}

/// A container run by containerd directly (`ctr run -d ID`), deleted (killed first) when
/// dropped. The test image is copied into containerd's `k8s.io` namespace on first use.
pub struct CtrContainer {
    pub id: String,
}

impl CtrContainer {
    /// `ctr run -d --net-host OPTIONS IMAGE ID ARGS...`.
    pub fn run(id: &str, options: &[&str], args: &[&str]) -> Self {
        static IMPORTED: OnceLock<()> = OnceLock::new();
        IMPORTED.get_or_init(|| {
            Engine::Docker.ready();
            let mut save = Command::new(DOCKER)
                .args(["save", IMAGE])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let status = ctr_command()
                .args(["images", "import", "-"])
                .stdin(save.stdout.take().unwrap())
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(
                save.wait().unwrap().success() && status.success(),
                "ctr import"
            );
        });
        let image = format!("docker.io/{IMAGE}");
        let mut all = vec!["run", "-d", "--net-host"];
        all.extend_from_slice(options);
        all.extend_from_slice(&[&image, id]);
        all.extend_from_slice(args);
        ctr(&all);
        Self { id: id.to_string() }
    }
}

impl Drop for CtrContainer {
    fn drop(&mut self) {
        for args in [
            &["task", "delete", "--force", &self.id][..],
            &["container", "delete", &self.id][..],
        ] {
            let _ = ctr_command()
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A container started detached, removed (with force) when dropped.
pub struct Container {
    pub engine: Engine,
    pub name: String,
    pub id: String,
}

impl Container {
    /// `docker run -d --name NAME IMAGE ARGS...`
    pub fn run(name: &str, args: &[&str]) -> Container {
        Self::run_on(Engine::Docker, name, args)
    }

    /// `ENGINE run -d --name NAME IMAGE ARGS...`
    pub fn run_on(engine: Engine, name: &str, args: &[&str]) -> Container {
        let mut all = vec!["run", "-d"];
        all.extend_from_slice(engine.run_options());
        all.extend_from_slice(&["--name", name, IMAGE]);
        all.extend_from_slice(args);
        let id = engine.cmd(&all);
        Container {
            engine,
            name: name.to_string(),
            id,
        }
    }

    /// Its address on the engine's default network.
    pub fn ip(&self) -> String {
        self.engine.cmd(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.IPAddress}}",
            &self.name,
        ])
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new(self.engine.cli())
            .args(["rm", "-f", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A Debian 12 image made by `debootstrap` (minbase with ca-certificates, from Debian's
/// mirror: a package download, as an install step), imported once and kept by the engine
/// for later runs: the local stand-in for `debian:bookworm-slim`.
pub const DEBIAN_IMAGE: &str = "sightline-test/debian:12";

pub fn debian_image() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        engine();
        let present = Command::new(DOCKER)
            .args(["image", "inspect", DEBIAN_IMAGE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if present {
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let out = Command::new("debootstrap")
            .args(["--variant=minbase", "--include=ca-certificates", "bookworm"])
            .arg(root.path())
            .arg("http://deb.debian.org/debian")
            .output()
            .expect("debootstrap (Debian's package) runs");
        assert!(
            out.status.success(),
            "debootstrap: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        import(Engine::Docker, root.path(), DEBIAN_IMAGE);
    });
}

/// `tar -C ROOT -c . | ENGINE import - TAG`.
fn import(engine: Engine, root: &std::path::Path, tag: &str) {
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(root)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let status = Command::new(engine.cli())
        .args(["import", "-", tag])
        .stdin(tar.stdout.take().unwrap())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(tar.wait().unwrap().success(), "tar of {}", root.display());
    assert!(status.success(), "docker import of {}", root.display());
}
