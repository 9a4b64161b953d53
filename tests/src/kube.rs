//! A stand-in Kubernetes API server (tests/fixtures/kube/fake_apiserver.py, a real HTTP server)
//! that answers the agent's list and watch requests, and a kubeconfig pointing at it.

use std::{
    io::{Read as _, Write as _},
    path::PathBuf,
};

use serde_json::Value;

use crate::{Program, fixture, free_port, python};

pub struct FakeApiServer {
    _program: Program,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl FakeApiServer {
    /// Serves `state` ({"pods": [...], "services": [...], "endpointslices": [...],
    /// "nodes": [...]}).
    pub fn start(state: &Value) -> FakeApiServer {
        let dir = tempfile::tempdir().unwrap();
        let state_path = dir.path().join("state.json");
        std::fs::write(&state_path, state.to_string()).unwrap();
        let port = free_port();
        let mut program = Program::spawn(python(&[
            fixture("kube/fake_apiserver.py").to_str().unwrap(),
            &port.to_string(),
            state_path.to_str().unwrap(),
        ]));
        assert_eq!(program.line(), "ready");
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{port}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\n"
        );
        std::fs::write(dir.path().join("kubeconfig.yaml"), kubeconfig).unwrap();
        FakeApiServer {
            _program: program,
            port,
            dir,
        }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    /// Sends a watch event (`ADDED`, `MODIFIED`, `DELETED`) for `object` to every watcher of
    /// `resource`.
    pub fn event(&self, resource: &str, kind: &str, object: &Value) {
        let body = serde_json::json!({"resource": resource, "type": kind, "object": object});
        let (status, _) = self.request("POST", "/control/event", &body.to_string());
        assert_eq!(status, 200);
    }

    /// Every API request the server answered: [{"path", "query"}].
    pub fn requests(&self) -> Vec<Value> {
        let (_, body) = self.request("GET", "/control/requests", "");
        serde_json::from_str(&body).unwrap()
    }

    fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: fake\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }
}
