//! The servers the benchmark loads: nginx from Debian (HTTP/1.1 in plaintext and over TLS
//! with OpenSSL, HTTP/2 over TLS) and a Go net/http JSON service, each on its own loopback port.

use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::shell;

/// What serves a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    NginxHttp,
    NginxHttps,
    NginxHttp2Tls,
    GoHttp,
}

/// A running server; killed when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Files the servers share: the TLS certificate and the built Go service.
pub struct Assets {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    go_service: PathBuf,
}

impl Assets {
    /// Makes a self-signed certificate (openssl CLI) and builds the Go service into `dir`.
    pub fn prepare(dir: &Path) -> anyhow::Result<Self> {
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        shell::output(
            Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args([
                    "-subj",
                    "/CN=127.0.0.1",
                    "-addext",
                    "subjectAltName=IP:127.0.0.1",
                ])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        )?;
        let go_service = dir.join("bench_service");
        let source = shell::workspace_root().join("xtask/assets/bench_service.go");
        shell::output(
            Command::new("go")
                .arg("build")
                .arg("-o")
                .arg(&go_service)
                .arg(&source)
                .env("GO111MODULE", "off")
                .env("GOCACHE", dir.join("go-cache")),
        )?;
        Ok(Self {
            dir: dir.to_path_buf(),
            cert,
            key,
            go_service,
        })
    }
}

/// Starts a server of `kind` on `port` and waits until it accepts connections.
pub fn start(kind: ServerKind, port: u16, assets: &Assets) -> anyhow::Result<Server> {
    let child = match kind {
        ServerKind::GoHttp => Command::new(&assets.go_service)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .context("starting the Go service")?,
        _ => nginx(kind, port, assets)?,
    };
    let mut server = Server { child, port };
    wait_for_port(&mut server)?;
    Ok(server)
}

/// nginx in one process (no master): its CPU time is the server's, nothing to add up.
/// Connections and descriptors are raised for the 10,000-connection run.
fn nginx(kind: ServerKind, port: u16, assets: &Assets) -> anyhow::Result<Child> {
    let prefix = assets.dir.join(format!("nginx-{port}"));
    std::fs::create_dir_all(&prefix)?;
    let listen = match kind {
        ServerKind::NginxHttp => format!("listen 127.0.0.1:{port};"),
        ServerKind::NginxHttps | ServerKind::NginxHttp2Tls => format!(
            "listen 127.0.0.1:{port} ssl{};\n    ssl_certificate {};\n    ssl_certificate_key {};",
            if kind == ServerKind::NginxHttp2Tls {
                " http2"
            } else {
                ""
            },
            assets.cert.display(),
            assets.key.display()
        ),
        ServerKind::GoHttp => bail!("not an nginx scenario"),
    };
    let conf = prefix.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\ndaemon off;\nmaster_process off;\nworker_rlimit_nofile 40000;\n\
             error_log {p}/error.log;\npid {p}/nginx.pid;\n\
             events {{ worker_connections 30000; }}\n\
             http {{\n  access_log off;\n  keepalive_timeout 300;\n  keepalive_requests 100000000;\n\
             client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fastcgi;\n\
             uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n\
             server {{\n    {listen}\n    location / {{ default_type application/json; return 200 '{{\"ok\":true}}'; }}\n  }}\n}}\n",
            p = prefix.display(),
        ),
    )?;
    let binary = if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    };
    Command::new(binary)
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .spawn()
        .context("starting nginx")
}

fn wait_for_port(server: &mut Server) -> anyhow::Result<()> {
    let begun = Instant::now();
    while TcpStream::connect(("127.0.0.1", server.port)).is_err() {
        if let Some(status) = server.child.try_wait()? {
            bail!("the server on port {} exited ({status})", server.port);
        }
        if begun.elapsed() > Duration::from_secs(20) {
            bail!("nothing listens on port {} after 20 s", server.port);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
