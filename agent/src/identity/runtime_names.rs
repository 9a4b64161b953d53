//! Container names from the runtimes' own state files: Docker's
//! `<root>/containers/<id>/config.v2.json` ("Name": "/web", and the image as the container was
//! started from it, "Config": {"Image": "nginx:1.25"}) and Podman's
//! `<storage>/overlay-containers/containers.json` ([{"id", "names", "image"}], "image" an image
//! id that `<storage>/overlay-images/images.json` ([{"id", "names"}]) names). For Kubernetes
//! pods, without the API server: the OCI bundle the kubelet's runtime writes for each container,
//! whose annotations name the container, its pod and namespace (containerd's CRI plugin:
//! `<state>/io.containerd.runtime.v2.task/k8s.io/<id>/config.json`, `io.kubernetes.cri.*`;
//! CRI-O: `<state>/overlay-containers/<id>/userdata/config.json`, `io.kubernetes.*`); the
//! cgroup path only has the container's id. Read once per container, bounded.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use super::container::Runtime;

const MAX_NAMES: usize = 4_096;

pub struct RuntimeNames {
    roots: RuntimeRoots,
    known: HashMap<Arc<str>, RuntimeName>,
}

/// Where each runtime keeps its state.
#[derive(Clone, Debug)]
pub struct RuntimeRoots {
    pub docker: PathBuf,
    pub podman: PathBuf,
    /// containerd's state directory (`/run/containerd`), holding the running tasks' bundles.
    pub containerd: PathBuf,
    /// CRI-O's run root (`/run/containers/storage`).
    pub crio: PathBuf,
}

/// What the runtime says of a container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeName {
    pub name: Option<Arc<str>>,
    /// The image reference it was started from (`container.image.name`).
    pub image: Option<Arc<str>>,
    /// A Kubernetes container's name, pod and namespace (from its bundle's annotations).
    pub k8s: Option<K8sNames>,
}

/// What a Kubernetes container's OCI annotations name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct K8sNames {
    pub container: Option<Arc<str>>,
    pub pod: Option<Arc<str>>,
    pub namespace: Option<Arc<str>>,
}

/// An OCI bundle's `config.json`, annotations only.
#[derive(serde::Deserialize)]
struct OciConfig {
    #[serde(default)]
    annotations: HashMap<String, String>,
}

/// Annotation keys of (container, pod, namespace, image): containerd's CRI plugin, then CRI-O.
const ANNOTATIONS: [[&str; 4]; 2] = [
    [
        "io.kubernetes.cri.container-name",
        "io.kubernetes.cri.sandbox-name",
        "io.kubernetes.cri.sandbox-namespace",
        "io.kubernetes.cri.image-name",
    ],
    [
        "io.kubernetes.container.name",
        "io.kubernetes.pod.name",
        "io.kubernetes.pod.namespace",
        "io.kubernetes.cri-o.ImageName",
    ],
];

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
    pub fn new(roots: RuntimeRoots) -> Self {
        Self {
            roots,
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
            Runtime::Containerd => self.containerd(id),
            Runtime::CriO => self.crio(id),
            // A kubelet's cgroupfs layout does not say which runtime: both are asked.
            Runtime::Unknown => {
                let found = self.containerd(id);
                if found.name.is_some() {
                    found
                } else {
                    self.crio(id)
                }
            }
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
            .roots
            .docker
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
            k8s: None,
        }
    }

    fn containerd(&self, id: &str) -> RuntimeName {
        let bundle = self
            .roots
            .containerd
            .join("io.containerd.runtime.v2.task/k8s.io");
        oci_names(&bundle.join(id).join("config.json"))
    }

    fn crio(&self, id: &str) -> RuntimeName {
        let bundle = self.roots.crio.join("overlay-containers").join(id);
        oci_names(&bundle.join("userdata/config.json"))
    }

    fn podman(&self, id: &str) -> RuntimeName {
        let read = |file: &str| -> Vec<PodmanEntry> {
            std::fs::read(self.roots.podman.join(file))
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
            k8s: None,
        }
    }
}

/// Most bytes of an OCI bundle's config read (they are a few KiB; a larger file is not one).
const MAX_BUNDLE_CONFIG: u64 = 1 << 20;

/// The Kubernetes names in an OCI bundle's annotations; the container is named after its
/// Kubernetes name (the runtime's own name for it is an id).
fn oci_names(config: &std::path::Path) -> RuntimeName {
    use std::io::Read as _;
    let mut raw = Vec::new();
    let read = std::fs::File::open(config)
        .and_then(|file| file.take(MAX_BUNDLE_CONFIG).read_to_end(&mut raw));
    let Some(config) = read
        .ok()
        .and_then(|_| serde_json::from_slice::<OciConfig>(&raw).ok())
    else {
        return RuntimeName::default();
    };
    let Some([container, pod, namespace, image]) = ANNOTATIONS.iter().find_map(|keys| {
        keys.iter()
            .any(|key| config.annotations.contains_key(*key))
            .then(|| keys.map(|key| config.annotations.get(key).map(|v| Arc::from(v.as_str()))))
    }) else {
        return RuntimeName::default();
    };
    RuntimeName {
        name: container.clone(),
        image,
        k8s: Some(K8sNames {
            container,
            pod,
            namespace,
        }),
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
        let roots = |docker: PathBuf, podman: PathBuf| RuntimeRoots {
            docker,
            podman,
            containerd: root.join("none"),
            crio: root.join("none"),
        };
        let mut names = RuntimeNames::new(roots(docker.clone(), podman));
        let web = names.name(&id, Runtime::Docker);
        assert_eq!(web.name.as_deref(), Some("web"));
        assert_eq!(web.image.as_deref(), Some("nginx:1.25"));
        assert_eq!(
            names.name(&Arc::from("b".repeat(64).as_str()), Runtime::Docker),
            RuntimeName::default()
        );
        // Read when its cgroup was made, then its state gone (a `--rm` container): still named.
        let mut prefetched = RuntimeNames::new(roots(docker.clone(), root.join("none")));
        prefetched.prefetch(&id, Runtime::Docker);
        std::fs::remove_dir_all(docker.join("containers").join(&*id)).unwrap();
        assert_eq!(prefetched.name(&id, Runtime::Docker), web);
        let mut names = RuntimeNames::new(roots(root.join("none"), root.join("podman")));
        let db = names.name(&id, Runtime::Podman);
        assert_eq!(db.name.as_deref(), Some("db"));
        assert_eq!(db.image.as_deref(), Some("localhost/postgres:16"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// Kubernetes containers without the API server: containerd's and CRI-O's bundles name
    /// the container, pod and namespace; a runtime's own container (not a pod's) has none.
    #[test]
    fn reads_kubernetes_names_from_oci_bundles() {
        let root = std::env::temp_dir().join(format!("sightline-oci-{}", std::process::id()));
        let write = |dir: PathBuf, annotations: &str| {
            std::fs::create_dir_all(&dir).unwrap();
            let config = format!(r#"{{"ociVersion":"1.0.2","annotations":{{{annotations}}}}}"#);
            std::fs::write(dir.join("config.json"), config).unwrap();
        };
        let (cri, crio, plain) = ("c".repeat(64), "d".repeat(64), "e".repeat(64));
        let tasks = root.join("containerd/io.containerd.runtime.v2.task");
        write(
            tasks.join("k8s.io").join(&cri),
            r#""io.kubernetes.cri.container-type":"container","io.kubernetes.cri.container-name":"api","io.kubernetes.cri.sandbox-name":"shop-7d9f","io.kubernetes.cri.sandbox-namespace":"prod","io.kubernetes.cri.image-name":"registry/shop:2""#,
        );
        write(
            root.join("crio/overlay-containers")
                .join(&crio)
                .join("userdata"),
            r#""io.kubernetes.container.name":"worker","io.kubernetes.pod.name":"jobs-1","io.kubernetes.pod.namespace":"batch""#,
        );
        write(
            tasks.join("k8s.io").join(&plain),
            r#""org.opencontainers.image.ref.name":"x""#,
        );
        let mut names = RuntimeNames::new(RuntimeRoots {
            docker: root.join("none"),
            podman: root.join("none"),
            containerd: root.join("containerd"),
            crio: root.join("crio"),
        });
        let named = |container: &str, pod: &str, namespace: &str| K8sNames {
            container: Some(Arc::from(container)),
            pod: Some(Arc::from(pod)),
            namespace: Some(Arc::from(namespace)),
        };
        let api = names.name(&Arc::from(cri.as_str()), Runtime::Containerd);
        assert_eq!(api.name.as_deref(), Some("api"));
        assert_eq!(api.image.as_deref(), Some("registry/shop:2"));
        assert_eq!(api.k8s, Some(named("api", "shop-7d9f", "prod")));
        // The cgroupfs layout does not say which runtime: both are asked.
        let worker = names.name(&Arc::from(crio.as_str()), Runtime::Unknown);
        assert_eq!(worker.k8s, Some(named("worker", "jobs-1", "batch")));
        assert_eq!(worker.image, None);
        let plain = names.name(&Arc::from(plain.as_str()), Runtime::Containerd);
        assert_eq!(plain, RuntimeName::default());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
