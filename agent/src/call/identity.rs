//! The identity of one end of a call, as every sink shows it (OpenTelemetry resource attributes
//! for the observing end, `peer.*` for the other end).

use std::{collections::BTreeMap, sync::Arc};

/// What kind of thing an end is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndKind {
    /// A process on this host that the agent saw.
    Process,
    /// A Kubernetes pod known from the API server (this node's pods or an EndpointSlice).
    Pod,
    /// A Kubernetes Service's cluster IP.
    Service,
    /// A Kubernetes node's address.
    Node,
    /// A loopback or local address whose process the agent did not see.
    Host,
    /// Anything else: known by its address (and the Host header) only.
    External,
}

impl EndKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Pod => "pod",
            Self::Service => "service",
            Self::Node => "node",
            Self::Host => "host",
            Self::External => "external",
        }
    }
}

/// Which rule gave `service.name` (documented order, first match wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NameSource {
    ConfigRule,
    /// Pod annotation `resource.opentelemetry.io/service.name`.
    Annotation,
    /// Pod label `app.kubernetes.io/name`.
    Label,
    Workload,
    Container,
    SystemdUnit,
    Executable,
    /// A remote pod known only through an EndpointSlice, or a cluster IP: the Service's name.
    KubernetesService,
}

impl NameSource {
    pub fn name(self) -> &'static str {
        match self {
            Self::ConfigRule => "config",
            Self::Annotation => "k8s.annotation",
            Self::Label => "k8s.label",
            Self::Workload => "k8s.workload",
            Self::Container => "container",
            Self::SystemdUnit => "systemd",
            Self::Executable => "executable",
            Self::KubernetesService => "k8s.service",
        }
    }
}

/// The controller that owns a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
}

impl WorkloadKind {
    /// The OpenTelemetry attribute that carries the workload's name.
    pub fn attribute(self) -> &'static str {
        match self {
            Self::Deployment => "k8s.deployment.name",
            Self::ReplicaSet => "k8s.replicaset.name",
            Self::StatefulSet => "k8s.statefulset.name",
            Self::DaemonSet => "k8s.daemonset.name",
            Self::Job => "k8s.job.name",
            Self::CronJob => "k8s.cronjob.name",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: Arc<str>,
}

/// A Kubernetes pod, as much as the agent knows of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodMeta {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    /// Empty for pods known only through an EndpointSlice without a UID.
    pub uid: Arc<str>,
    pub node_name: Option<Arc<str>>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub workload: Option<Workload>,
    pub service_account: Option<Arc<str>>,
    /// Container id (without the `containerd://` scheme) -> (container name, runtime).
    pub containers: Vec<(Arc<str>, Arc<str>, Runtime)>,
    /// The Service whose EndpointSlice names this pod (remote pods only).
    pub service: Option<Arc<str>>,
}

impl PodMeta {
    /// The name and runtime of the container `id` of this pod.
    pub fn container(&self, id: &str) -> Option<(&Arc<str>, Runtime)> {
        self.containers
            .iter()
            .find(|(cid, _, _)| &**cid == id)
            .map(|(_, name, runtime)| (name, *runtime))
    }
}

/// A container on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: Arc<str>,
    pub runtime: Runtime,
    /// From the pod's status or the runtime's own state files.
    pub name: Option<Arc<str>>,
    /// The image it was started from, from the runtime's state files (`container.image.name`).
    pub image: Option<Arc<str>>,
}

/// Who one end of a call is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub kind: EndKind,
    pub service_name: Option<Arc<str>>,
    pub service_namespace: Option<Arc<str>>,
    pub name_source: Option<NameSource>,
    /// This host's name, for ends on this host.
    pub host_name: Option<Arc<str>>,
    /// cgroup v2 path (`process.linux.cgroup`).
    pub cgroup_path: Option<Arc<str>>,
    pub container: Option<ContainerInfo>,
    pub systemd_unit: Option<Arc<str>>,
    pub pod: Option<Arc<PodMeta>>,
    /// The pod's UID, from the kubelet's cgroup path: known with or without the API server
    /// (`pod` needs it), so a pod is told apart from its neighbours on any node.
    pub pod_uid: Option<Arc<str>>,
    /// The Kubernetes container name within `pod` (from the API server, else from the
    /// runtime's OCI annotations).
    pub k8s_container: Option<Arc<str>>,
    /// The pod's name and namespace from the runtime's OCI annotations, for a pod the API
    /// server does not describe (not watched): `pod` has them otherwise.
    pub k8s_pod_name: Option<Arc<str>>,
    pub k8s_namespace: Option<Arc<str>>,
    pub node_name: Option<Arc<str>>,
}

impl Identity {
    pub fn new(kind: EndKind) -> Self {
        Self {
            kind,
            service_name: None,
            service_namespace: None,
            name_source: None,
            host_name: None,
            cgroup_path: None,
            container: None,
            systemd_unit: None,
            pod: None,
            pod_uid: None,
            k8s_container: None,
            k8s_pod_name: None,
            k8s_namespace: None,
            node_name: None,
        }
    }
}

/// The container runtime that made a container's cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    Docker,
    Containerd,
    CriO,
    Podman,
    /// A kubelet cgroupfs-driver path, which does not say which runtime.
    Unknown,
}

impl Runtime {
    /// `container.runtime` (OpenTelemetry names).
    pub fn name(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Containerd => "containerd",
            Self::CriO => "cri-o",
            Self::Podman => "podman",
            Self::Unknown => "unknown",
        }
    }
}
