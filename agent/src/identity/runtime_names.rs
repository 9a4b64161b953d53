//! Container names outside Kubernetes, from the runtimes' own state files: Docker's
//! `<root>/containers/<id>/config.v2.json` ("Name": "/web", and the image as the container was
//! started from it, "Config": {"Image": "nginx:1.25"}) and Podman's
//! `<storage>/overlay-containers/containers.json` ([{"id", "names"}]; its "image" is an image id,
//! not a name: left out). Read once per container, bounded.

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

#[derive(serde::Deserialize)]
struct PodmanContainer {
    id: String,
    #[serde(default)]
    names: Vec<String>,
}

impl RuntimeNames {
    pub fn new(docker_root: PathBuf, podman_root: PathBuf) -> Self {
        Self {
            docker_root,
            podman_root,
            known: HashMap::new(),
        }
    }

    /// The name the runtime gave container `id`, and its image.
    pub fn name(&mut self, id: &Arc<str>, runtime: Runtime) -> RuntimeName {
        if let Some(known) = self.known.get(id) {
            return known.clone();
        }
        let name = match runtime {
            Runtime::Docker => self.docker(id),
            Runtime::Podman => RuntimeName {
                name: self.podman(id),
                image: None,
            },
            Runtime::Containerd | Runtime::CriO | Runtime::Unknown => RuntimeName::default(),
        };
        if self.known.len() >= MAX_NAMES {
            self.known.clear();
        }
        self.known.insert(id.clone(), name.clone());
        name
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

    fn podman(&self, id: &str) -> Option<Arc<str>> {
        let path = self
            .podman_root
            .join("overlay-containers")
            .join("containers.json");
        let list: Vec<PodmanContainer> = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        list.into_iter()
            .find(|c| c.id == id)
            .and_then(|c| c.names.into_iter().next())
            .map(Arc::from)
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
        std::fs::write(
            podman.join("overlay-containers/containers.json"),
            format!(r#"[{{"id":"{id}","names":["db"],"image":"x"}}]"#),
        )
        .unwrap();
        let mut names = RuntimeNames::new(docker, podman);
        let web = names.name(&id, Runtime::Docker);
        assert_eq!(web.name.as_deref(), Some("web"));
        assert_eq!(web.image.as_deref(), Some("nginx:1.25"));
        assert_eq!(
            names.name(&Arc::from("b".repeat(64).as_str()), Runtime::Docker),
            RuntimeName::default()
        );
        let mut names = RuntimeNames::new(root.join("none"), root.join("podman"));
        let db = names.name(&id, Runtime::Podman);
        assert_eq!((db.name.as_deref(), db.image), (Some("db"), None));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
