//! The identity stage: gives both ends of every call an [`Identity`].
//!
//! A process on this host (the observing end, or a peer the tracker found on this host) is named
//! from its cgroup (container, pod UID, systemd unit), the pod's metadata and the naming rules.
//! Any other end is named by who had its address at the call's start (pod, Service, node) or
//! stays external, known by address, port and Host header. Identities are cached per program
//! and cgroup; the caches are cleared when the Kubernetes state they depend on changes.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use super::{
    cgroup::CgroupPaths,
    container,
    kubernetes::{KubeStore, ip_history::IpOwner},
    model::{ContainerInfo, EndKind, Identity, NameSource, PodMeta},
    naming::{self, ServiceRule, Subject},
    runtime_names::{RuntimeNames, RuntimeRoots},
};
use crate::{
    call::{ApiCall, ProcessInfo, SpanKind},
    stats::Stats,
};

/// Cached identities at most (cleared when full).
const MAX_CACHED: usize = 65_536;

pub struct ResolverConfig {
    pub rules: Vec<ServiceRule>,
    pub host_name: String,
    /// Set when the agent talks to Kubernetes.
    pub node_name: Option<String>,
    pub runtime_roots: RuntimeRoots,
    pub proc_root: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct LocalKey {
    pid: u32,
    incarnation: u64,
    cgroup_id: u64,
    server_port: Option<u16>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct RemoteKey {
    /// The owner object (its address in the store, stable until the next store write) or the
    /// address itself for ends no one owns.
    owner: usize,
    ip: Option<std::net::IpAddr>,
    server_port: Option<u16>,
}

pub struct Resolver {
    rules: Vec<ServiceRule>,
    rules_use_ports: bool,
    host_name: Arc<str>,
    node_name: Option<Arc<str>>,
    kube: Option<Arc<KubeStore>>,
    cgroups: CgroupPaths,
    names: RuntimeNames,
    local: HashMap<LocalKey, Arc<Identity>>,
    remote: HashMap<RemoteKey, Arc<Identity>>,
    /// Kubernetes store generation the caches were built from.
    generation: u64,
    stats: Arc<Stats>,
}

impl Resolver {
    pub fn new(config: ResolverConfig, kube: Option<Arc<KubeStore>>, stats: Arc<Stats>) -> Self {
        Self {
            rules_use_ports: config
                .rules
                .iter()
                .any(|r| r.conditions.port.is_some() || r.conditions.serving),
            rules: config.rules,
            host_name: Arc::from(config.host_name),
            node_name: config.node_name.map(Arc::from),
            kube,
            cgroups: CgroupPaths::new(&config.proc_root),
            names: RuntimeNames::new(config.runtime_roots),
            local: HashMap::new(),
            remote: HashMap::new(),
            generation: 0,
            stats,
        }
    }

    /// A cgroup was made (the kernel said so): its id's path is known from now on, even for
    /// processes that leave before /proc could be read, and a container's name is read while
    /// its runtime still has it.
    pub fn learn_cgroup(&mut self, id: u64, path: &str) {
        self.cgroups.learn(id, path);
        if let container::CgroupFacts {
            container_id: Some(container),
            runtime: Some(runtime),
            ..
        } = container::parse(path)
        {
            self.names.prefetch(&container, runtime);
        }
    }

    /// Fills `identity` on both ends of `call`.
    pub fn resolve(&mut self, call: &mut ApiCall) {
        if let Some(kube) = &self.kube {
            let generation = kube.generation();
            if generation != self.generation {
                self.generation = generation;
                self.local.clear();
                self.remote.clear();
            }
        }
        let server_port = call.server().address.port();
        let (local_port, peer_port) = match call.kind {
            SpanKind::Server => (Some(server_port), None),
            SpanKind::Client => (None, Some(server_port)),
        };
        if let Some(process) = &call.local.process {
            call.local.identity = Some(self.local_identity(process, local_port));
        }
        call.peer.identity = Some(match &call.peer.process {
            Some(process) => self.local_identity(process, peer_port),
            None => self.remote_identity(call.peer.address, call.start_unix_ns, peer_port),
        });
    }

    fn local_identity(&mut self, process: &ProcessInfo, server_port: Option<u16>) -> Arc<Identity> {
        let key = LocalKey {
            pid: process.pid,
            incarnation: process.incarnation,
            cgroup_id: process.cgroup_id,
            server_port: server_port.filter(|_| self.rules_use_ports),
        };
        if let Some(identity) = self.local.get(&key) {
            return identity.clone();
        }
        let cgroup = self.cgroups.path(process.cgroup_id, process.pid);
        if cgroup.is_none() {
            Stats::inc(&self.stats.cgroups_unresolved);
        }
        let identity = Arc::new(self.describe_process(process, cgroup, server_port));
        // An unresolved cgroup may resolve later: not cached (unless there is no cgroup v2
        // hierarchy to resolve it in).
        if identity.cgroup_path.is_some() || !self.cgroups.has_hierarchy() {
            if self.local.len() >= MAX_CACHED {
                self.local.clear();
            }
            self.local.insert(key, identity.clone());
        }
        identity
    }

    fn describe_process(
        &mut self,
        process: &ProcessInfo,
        cgroup: Option<Arc<str>>,
        server_port: Option<u16>,
    ) -> Identity {
        let facts = cgroup.as_deref().map(container::parse).unwrap_or_default();
        let pod = match (&self.kube, &facts.pod_uid) {
            (Some(kube), Some(uid)) => kube.read(|s| s.pod_by_uid(uid).cloned()),
            _ => None,
        };
        let mut k8s_container = match (&pod, &facts.container_id) {
            (Some(pod), Some(id)) => pod.container(id).map(|(name, _)| name.clone()),
            _ => None,
        };
        let mut annotated = None;
        let container = facts.container_id.clone().map(|id| {
            let from_pod = pod.as_ref().and_then(|p| p.container(&id));
            let runtime = match (facts.runtime, from_pod) {
                (Some(container::Runtime::Unknown) | None, Some((_, runtime))) => runtime,
                (Some(runtime), _) => runtime,
                (None, None) => container::Runtime::Unknown,
            };
            let from_runtime = self.names.name(&id, runtime);
            let name = k8s_container.clone().or(from_runtime.name);
            annotated = from_runtime.k8s;
            ContainerInfo {
                id,
                runtime,
                name,
                image: from_runtime.image,
            }
        });
        // Without the API server, the runtime's annotations name the pod's container, the pod
        // and its namespace (only for a cgroup under a pod).
        let annotated = annotated.filter(|_| pod.is_none() && facts.pod_uid.is_some());
        if k8s_container.is_none() {
            k8s_container = annotated.as_ref().and_then(|k| k.container.clone());
        }
        let service = naming::name(
            &self.rules,
            &Subject {
                server_port,
                executable_name: Some(&process.executable_name),
                executable_path: process.executable_path.as_deref(),
                command_line: process.command_line.as_deref(),
                container_name: container.as_ref().and_then(|c| c.name.as_deref()),
                cgroup: cgroup.as_deref(),
                systemd_unit: facts.systemd_unit.as_deref(),
                pod: pod.as_deref(),
            },
        );
        Identity {
            kind: EndKind::Process,
            service_name: service.name,
            service_namespace: service.namespace,
            name_source: service.source,
            host_name: Some(self.host_name.clone()),
            cgroup_path: cgroup,
            container,
            systemd_unit: facts.systemd_unit,
            node_name: pod
                .as_ref()
                .and_then(|p| p.node_name.clone())
                .or_else(|| self.node_name.clone()),
            pod,
            pod_uid: facts.pod_uid,
            k8s_container,
            k8s_pod_name: annotated.as_ref().and_then(|k| k.pod.clone()),
            k8s_namespace: annotated.and_then(|k| k.namespace),
        }
    }

    fn remote_identity(
        &mut self,
        address: SocketAddr,
        at_unix_ns: u64,
        server_port: Option<u16>,
    ) -> Arc<Identity> {
        // An IPv4 peer of an IPv6 socket is the IPv4 address the API server knows.
        let ip = address.ip().to_canonical();
        let owner = self
            .kube
            .as_ref()
            .and_then(|kube| kube.read(|s| s.owner_at(ip, at_unix_ns).cloned()));
        let key = RemoteKey {
            owner: owner.as_ref().map_or(0, owner_address),
            ip: owner.is_none().then_some(ip),
            server_port: server_port.filter(|_| self.rules_use_ports),
        };
        if let Some(identity) = self.remote.get(&key) {
            return identity.clone();
        }
        let identity = Arc::new(match owner {
            Some(IpOwner::Pod(pod)) => self.describe_remote_pod(pod, server_port),
            Some(IpOwner::Service { namespace, name }) => Identity {
                service_name: Some(name),
                service_namespace: Some(namespace),
                name_source: Some(NameSource::KubernetesService),
                ..Identity::new(EndKind::Service)
            },
            Some(IpOwner::Node(name)) => Identity {
                node_name: Some(name),
                ..Identity::new(EndKind::Node)
            },
            None if ip.is_loopback() => Identity {
                host_name: Some(self.host_name.clone()),
                ..Identity::new(EndKind::Host)
            },
            None => Identity::new(EndKind::External),
        });
        if self.remote.len() >= MAX_CACHED {
            self.remote.clear();
        }
        self.remote.insert(key, identity.clone());
        identity
    }

    fn describe_remote_pod(&self, pod: Arc<PodMeta>, server_port: Option<u16>) -> Identity {
        let mut service = naming::name(
            &self.rules,
            &Subject {
                server_port,
                pod: Some(&pod),
                ..Subject::default()
            },
        );
        // A pod known only from an EndpointSlice: named after its Service.
        if service.name.is_none()
            && let Some(name) = &pod.service
        {
            service.name = Some(name.clone());
            service.source = Some(NameSource::KubernetesService);
        }
        Identity {
            service_name: service.name,
            service_namespace: service.namespace,
            name_source: service.source,
            node_name: pod.node_name.clone(),
            pod: Some(pod),
            ..Identity::new(EndKind::Pod)
        }
    }
}

/// Where the owner's description lives: equal for the same store object.
fn owner_address(owner: &IpOwner) -> usize {
    match owner {
        IpOwner::Pod(pod) => Arc::as_ptr(pod) as usize,
        IpOwner::Service { name, .. } => Arc::as_ptr(name) as *const u8 as usize,
        IpOwner::Node(name) => Arc::as_ptr(name) as *const u8 as usize,
    }
}
