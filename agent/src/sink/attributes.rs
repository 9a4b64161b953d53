//! The identity of a call's ends as attributes, named the same way in every sink: the observing
//! end with OpenTelemetry resource names (`service.name`, `k8s.pod.name`, ...), the other end
//! with `peer.` in front (`peer.service` for its service name, as OpenTelemetry names it).

use crate::identity::Identity;

/// One identity attribute: its name for the observing end and for the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub local: &'static str,
    pub peer: &'static str,
}

const fn attr(local: &'static str, peer: &'static str) -> Attr {
    Attr { local, peer }
}

pub const SERVICE_NAME: Attr = attr("service.name", "peer.service");
pub const SERVICE_NAMESPACE: Attr = attr("service.namespace", "peer.service.namespace");
pub const NAME_SOURCE: Attr = attr(
    "sightline.service.name_source",
    "sightline.peer.service.name_source",
);
pub const KIND: Attr = attr("sightline.end.kind", "sightline.peer.kind");
pub const HOST_NAME: Attr = attr("host.name", "peer.host.name");
pub const CGROUP: Attr = attr("process.linux.cgroup", "peer.process.linux.cgroup");
pub const CONTAINER_ID: Attr = attr("container.id", "peer.container.id");
pub const CONTAINER_RUNTIME: Attr = attr("container.runtime", "peer.container.runtime");
pub const CONTAINER_NAME: Attr = attr("container.name", "peer.container.name");
pub const CONTAINER_IMAGE: Attr = attr("container.image.name", "peer.container.image.name");
pub const SYSTEMD_UNIT: Attr = attr("sightline.systemd.unit", "sightline.peer.systemd.unit");
pub const K8S_NAMESPACE: Attr = attr("k8s.namespace.name", "peer.k8s.namespace.name");
pub const K8S_POD_NAME: Attr = attr("k8s.pod.name", "peer.k8s.pod.name");
pub const K8S_POD_UID: Attr = attr("k8s.pod.uid", "peer.k8s.pod.uid");
pub const K8S_CONTAINER: Attr = attr("k8s.container.name", "peer.k8s.container.name");
pub const K8S_NODE: Attr = attr("k8s.node.name", "peer.k8s.node.name");
pub const K8S_SERVICE_ACCOUNT: Attr = attr(
    "sightline.k8s.service_account.name",
    "sightline.peer.k8s.service_account.name",
);
pub const K8S_SERVICE: Attr = attr(
    "sightline.k8s.service.name",
    "sightline.peer.k8s.service.name",
);

/// Workload attributes, by `WorkloadKind::attribute()`.
const WORKLOADS: &[Attr] = &[
    attr("k8s.deployment.name", "peer.k8s.deployment.name"),
    attr("k8s.replicaset.name", "peer.k8s.replicaset.name"),
    attr("k8s.statefulset.name", "peer.k8s.statefulset.name"),
    attr("k8s.daemonset.name", "peer.k8s.daemonset.name"),
    attr("k8s.job.name", "peer.k8s.job.name"),
    attr("k8s.cronjob.name", "peer.k8s.cronjob.name"),
];

/// Calls `f` with every attribute the identity has a value for.
pub fn for_each(identity: &Identity, mut f: impl FnMut(Attr, &str)) {
    if let Some(name) = &identity.service_name {
        f(SERVICE_NAME, name);
    }
    if let Some(namespace) = &identity.service_namespace {
        f(SERVICE_NAMESPACE, namespace);
    }
    if let Some(source) = identity.name_source {
        f(NAME_SOURCE, source.name());
    }
    f(KIND, identity.kind.name());
    if let Some(host) = &identity.host_name {
        f(HOST_NAME, host);
    }
    if let Some(cgroup) = &identity.cgroup_path {
        f(CGROUP, cgroup);
    }
    if let Some(container) = &identity.container {
        f(CONTAINER_ID, &container.id);
        f(CONTAINER_RUNTIME, container.runtime.name());
        if let Some(name) = &container.name {
            f(CONTAINER_NAME, name);
        }
        if let Some(image) = &container.image {
            f(CONTAINER_IMAGE, image);
        }
    }
    if let Some(unit) = &identity.systemd_unit {
        f(SYSTEMD_UNIT, unit);
    }
    if let Some(pod) = &identity.pod {
        f(K8S_NAMESPACE, &pod.namespace);
        f(K8S_POD_NAME, &pod.name);
        if !pod.uid.is_empty() {
            f(K8S_POD_UID, &pod.uid);
        } else if let Some(uid) = &identity.pod_uid {
            f(K8S_POD_UID, uid);
        }
        if let Some(workload) = &pod.workload
            && let Some(attr) = WORKLOADS
                .iter()
                .find(|a| a.local == workload.kind.attribute())
        {
            f(*attr, &workload.name);
        }
        if let Some(account) = &pod.service_account {
            f(K8S_SERVICE_ACCOUNT, account);
        }
        if let Some(service) = &pod.service {
            f(K8S_SERVICE, service);
        }
    } else if let Some(uid) = &identity.pod_uid {
        // No API server to name the pod: its UID still tells it from its neighbours, and the
        // runtime's annotations may name it.
        if let Some(namespace) = &identity.k8s_namespace {
            f(K8S_NAMESPACE, namespace);
        }
        if let Some(name) = &identity.k8s_pod_name {
            f(K8S_POD_NAME, name);
        }
        f(K8S_POD_UID, uid);
    }
    if identity.pod.is_none()
        && identity.kind == crate::identity::model::EndKind::Service
        && let (Some(name), Some(namespace)) = (&identity.service_name, &identity.service_namespace)
    {
        f(K8S_NAMESPACE, namespace);
        f(K8S_SERVICE, name);
    }
    if let Some(container) = &identity.k8s_container {
        f(K8S_CONTAINER, container);
    }
    if let Some(node) = &identity.node_name {
        f(K8S_NODE, node);
    }
}
