//! Container names outside Kubernetes, from the runtimes' own state files: Docker's
//! `<root>/containers/<id>/config.v2.json` ("Name": "/web", and the image as the container was
//! started from it, "Config": {"Image": "nginx:1.25"}) and Podman's
//! `<storage>/overlay-containers/containers.json` ([{"id", "names", "image"}], "image" an image
//! id that `<storage>/overlay-images/images.json` ([{"id", "names"}]) names). Read once per
//! container, bounded.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use super::container::Runtime;

const MAX_NAMES: usize = 4_096;

pub struct RuntimeNames {
    docker_root: PathBuf,
    podman_root: PathBuf,
    known: HashMap<Arc<str>, RuntimeName>,
}

/// What the runtime says of a container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeName {
    pub name: Option<Arc<str>>,
    /// The image reference it was started from (`container.image.name`).
    pub image: Option<Arc<str>>,
}

#[derive(serde::Deserialize)]
struct DockerConfig {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Config", default)]
    config: DockerContainerConfig,
}

#[derive(serde::Deserialize, Default)]
struct DockerContainerConfig {
    #[serde(rename = "Image", default)]
    image: String,
}

/// An entry of Podman's containers.json or images.json.
#[derive(serde::Deserialize)]
struct PodmanEntry {
    id: String,
    #[serde(default)]
    names: Vec<String>,
    /// Containers only: the image's id.
    #[serde(default)]
    image: String,
}

impl RuntimeNames {
    pub fn new(docker_root: PathBuf, podman_root: PathBuf) -> Self {
        Self {
            docker_root,
            podman_root,
            known: HashMap::new(),
        }
    }

    /// Reads container `id`'s state now, when its cgroup is made: a `--rm` container's state
    /// files go with it, possibly before its calls are named. Only a found name is kept (the
    /// state may not be written yet; [`RuntimeNames::name`] reads again).
    pub fn prefetch(&mut self, id: &Arc<str>, runtime: Runtime) {
        if self.known.contains_key(id) {
            return;
        }
        let found = self.read(id, runtime);
        if found.name.is_some() {
            self.remember(id, found);
        }
    }

    /// The name the runtime gave container `id`, and its image.
    pub fn name(&mut self, id: &Arc<str>, runtime: Runtime) -> RuntimeName {
        if let Some(known) = self.known.get(id) {
            return known.clone();
        }
        let name = self.read(id, runtime);
        self.remember(id, name.clone());
        name
    }

    fn read(&self, id: &str, runtime: Runtime) -> RuntimeName {
        match runtime {
            Runtime::Docker => self.docker(id),
            Runtime::Podman => self.podman(id),
            Runtime::Containerd | Runtime::CriO | Runtime::Unknown => RuntimeName::default(),
        }
    }

    fn remember(&mut self, id: &Arc<str>, name: RuntimeName) {
        if self.known.len() >= MAX_NAMES {
            self.known.clear();
        }
        self.known.insert(id.clone(), name);
    }

    fn docker(&self, id: &str) -> RuntimeName {
        let path = self
            .docker_root
            .join("containers")
            .join(id)
            .join("config.v2.json");
        let Some(config) = std::fs::read(path)
            .ok()
            .and_then(|raw| serde_json::from_slice::<DockerConfig>(&raw).ok())
        else {
            return RuntimeName::default();
        };
        let text = |s: &str| (!s.is_empty()).then(|| Arc::from(s));
        RuntimeName {
            name: text(config.name.trim_start_matches('/')),
            image: text(&config.config.image),
        }
    }

    fn podman(&self, id: &str) -> RuntimeName {
        let read = |file: &str| -> Vec<PodmanEntry> {
            std::fs::read(self.podman_root.join(file))
                .ok()
                .and_then(|raw| serde_json::from_slice(&raw).ok())
                .unwrap_or_default()
        };
        let first_name = |entry: PodmanEntry| entry.names.into_iter().next().map(Arc::from);
        let Some(container) = read("overlay-containers/containers.json")
            .into_iter()
            .find(|c| c.id == id)
        else {
            return RuntimeName::default();
        };
        let image_id = container.image.clone();
        let image = read("overlay-images/images.json")
            .into_iter()
            .find(|i| !image_id.is_empty() && i.id == image_id)
            .and_then(first_name);
        RuntimeName {
            name: first_name(container),
            image,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_and_podman_state() {
        let root = std::env::temp_dir().join(format!("sightline-names-{}", std::process::id()));
        let id: Arc<str> = Arc::from("a".repeat(64).as_str());
        let docker = root.join("docker");
        std::fs::create_dir_all(docker.join("containers").join(&*id)).unwrap();
        std::fs::write(
            docker.join("containers").join(&*id).join("config.v2.json"),
            r#"{"ID":"aaaa","Name":"/web","State":{"Running":true},"Config":{"Image":"nginx:1.25"}}"#,
        )
        .unwrap();
        let podman = root.join("podman");
        std::fs::create_dir_all(podman.join("overlay-containers")).unwrap();
        std::fs::create_dir_all(podman.join("overlay-images")).unwrap();
        std::fs::write(
            podman.join("overlay-containers/containers.json"),
            format!(r#"[{{"id":"{id}","names":["db"],"image":"e3c0"}}]"#),
        )
        .unwrap();
        std::fs::write(
            podman.join("overlay-images/images.json"),
            r#"[{"id":"e3c0","names":["localhost/postgres:16"]}]"#,
        )
        .unwrap();
        let mut names = RuntimeNames::new(docker.clone(), podman);
        let web = names.name(&id, Runtime::Docker);
        assert_eq!(web.name.as_deref(), Some("web"));
        assert_eq!(web.image.as_deref(), Some("nginx:1.25"));
        assert_eq!(
            names.name(&Arc::from("b".repeat(64).as_str()), Runtime::Docker),
            RuntimeName::default()
        );
        // Read when its cgroup was made, then its state gone (a `--rm` container): still named.
        let mut prefetched = RuntimeNames::new(docker.clone(), root.join("none"));
        prefetched.prefetch(&id, Runtime::Docker);
        std::fs::remove_dir_all(docker.join("containers").join(&*id)).unwrap();
        assert_eq!(prefetched.name(&id, Runtime::Docker), web);
        let mut names = RuntimeNames::new(root.join("none"), root.join("podman"));
        let db = names.name(&id, Runtime::Podman);
        assert_eq!(db.name.as_deref(), Some("db"));
        assert_eq!(db.image.as_deref(), Some("localhost/postgres:16"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
