//! Kubernetes API objects -> what identity needs of them: a pod's metadata and owner workload,
//! and which addresses each object gives to whom.
//!
//! The owner workload is read from the pod's controller reference. A ReplicaSet made by a
//! Deployment is recognised without watching ReplicaSets: the Deployment controller names it
//! `<deployment>-<pod-template-hash>` and puts that hash on the pod as a label. A Job made by a
//! CronJob is named `<cronjob>-<scheduled time in minutes>`. Both rules are the controllers'
//! own naming; they save the agent cluster-wide watches of ReplicaSets and Jobs.

use std::{net::IpAddr, sync::Arc};

use k8s_openapi::{
    api::{
        core::v1::{Node, Pod, Service},
        discovery::v1::EndpointSlice,
    },
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
};

use super::{ip_history::IpOwner, state::ObjectFacts};
use crate::identity::{
    container::Runtime,
    model::{PodMeta, Workload, WorkloadKind},
};

/// The label that names the Service of an EndpointSlice.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `kind/namespace/name`: the key of an object in the state.
pub fn object_key(kind: &str, meta: &ObjectMeta) -> String {
    format!(
        "{kind}/{}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("")
    )
}

/// Unix ns of an API timestamp.
pub fn unix_ns(time: &Time) -> u64 {
    u64::try_from(time.0.as_nanosecond()).unwrap_or(0)
}

/// A pod of this node: its metadata and its addresses, unless it shares the node's network or
/// has finished (a completed pod keeps its IP in its status after the kubelet has given the
/// address to another pod).
pub fn pod(pod: &Pod) -> ObjectFacts {
    let meta = Arc::new(pod_meta(pod));
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|phase| phase == "Succeeded" || phase == "Failed");
    let addresses = if host_network || finished {
        Vec::new()
    } else {
        pod_ips(pod)
            .into_iter()
            .map(|ip| (ip, IpOwner::Pod(meta.clone())))
            .collect()
    };
    ObjectFacts {
        addresses,
        pod: Some(meta),
        exclusive: true,
    }
}

/// When a pod began to hold its addresses, as far as the API says (for pods listed at start).
pub fn pod_since(pod: &Pod) -> Option<u64> {
    pod.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .or(pod.metadata.creation_timestamp.as_ref())
        .map(unix_ns)
}

fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    if let Some(ip) = status.pod_ip.as_deref().and_then(|ip| ip.parse().ok())
        && !ips.contains(&ip)
    {
        ips.push(ip);
    }
    ips
}

pub fn pod_meta(pod: &Pod) -> PodMeta {
    let meta = &pod.metadata;
    let labels = meta.labels.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let containers = pod
        .status
        .iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        })
        .filter_map(|c| {
            let (runtime, id) = split_container_id(c.container_id.as_deref()?)?;
            Some((Arc::from(id), Arc::from(c.name.as_str()), runtime))
        })
        .collect();
    PodMeta {
        namespace: Arc::from(meta.namespace.as_deref().unwrap_or("default")),
        name: Arc::from(meta.name.as_deref().unwrap_or("")),
        uid: Arc::from(meta.uid.as_deref().unwrap_or("")),
        node_name: spec.and_then(|s| s.node_name.as_deref()).map(Arc::from),
        workload: workload(meta, &labels),
        labels,
        annotations: meta.annotations.clone().unwrap_or_default(),
        service_account: spec
            .and_then(|s| s.service_account_name.as_deref())
            .map(Arc::from),
        containers,
        service: None,
    }
}

/// `containerd://<id>` -> (runtime, id).
fn split_container_id(full: &str) -> Option<(Runtime, &str)> {
    let (scheme, id) = full.split_once("://")?;
    let runtime = match scheme {
        "containerd" => Runtime::Containerd,
        "cri-o" => Runtime::CriO,
        "docker" => Runtime::Docker,
        _ => Runtime::Unknown,
    };
    (!id.is_empty()).then_some((runtime, id))
}

/// The workload that owns a pod (see the module doc for ReplicaSets and Jobs).
fn workload(
    meta: &ObjectMeta,
    labels: &std::collections::BTreeMap<String, String>,
) -> Option<Workload> {
    let owner = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))?;
    let name = owner.name.as_str();
    let (kind, name) = match owner.kind.as_str() {
        "ReplicaSet" => match labels
            .get("pod-template-hash")
            .and_then(|hash| name.strip_suffix(&format!("-{hash}")))
        {
            Some(deployment) => (WorkloadKind::Deployment, deployment),
            None => (WorkloadKind::ReplicaSet, name),
        },
        "Job" => match name.rsplit_once('-') {
            Some((cronjob, minutes))
                if minutes.len() >= 8 && minutes.bytes().all(|b| b.is_ascii_digit()) =>
            {
                (WorkloadKind::CronJob, cronjob)
            }
            _ => (WorkloadKind::Job, name),
        },
        "StatefulSet" => (WorkloadKind::StatefulSet, name),
        "DaemonSet" => (WorkloadKind::DaemonSet, name),
        _ => return None,
    };
    Some(Workload {
        kind,
        name: Arc::from(name),
    })
}

/// A Service's cluster IPs (headless Services have none).
pub fn service(service: &Service) -> ObjectFacts {
    let meta = &service.metadata;
    let owner = IpOwner::Service {
        namespace: Arc::from(meta.namespace.as_deref().unwrap_or("default")),
        name: Arc::from(meta.name.as_deref().unwrap_or("")),
    };
    let spec = service.spec.as_ref();
    let mut ips: Vec<IpAddr> = spec
        .and_then(|s| s.cluster_ips.clone())
        .unwrap_or_default()
        .iter()
        .chain(spec.and_then(|s| s.cluster_ip.as_ref()))
        .filter_map(|ip| ip.parse().ok())
        .collect();
    ips.dedup();
    ObjectFacts {
        addresses: ips.into_iter().map(|ip| (ip, owner.clone())).collect(),
        pod: None,
        exclusive: false,
    }
}

/// An EndpointSlice's pod addresses, each named by its pod (on any node) and Service.
pub fn endpoint_slice(slice: &EndpointSlice) -> ObjectFacts {
    let meta = &slice.metadata;
    let namespace: Arc<str> = Arc::from(meta.namespace.as_deref().unwrap_or("default"));
    let service = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .map(|s| Arc::from(s.as_str()));
    let mut addresses = Vec::new();
    for endpoint in &slice.endpoints {
        let Some(target) = endpoint
            .target_ref
            .as_ref()
            .filter(|t| t.kind.as_deref() == Some("Pod"))
        else {
            continue;
        };
        let pod = Arc::new(PodMeta {
            namespace: target
                .namespace
                .as_deref()
                .map_or(namespace.clone(), Arc::from),
            name: Arc::from(target.name.as_deref().unwrap_or("")),
            uid: Arc::from(""),
            node_name: endpoint.node_name.as_deref().map(Arc::from),
            service: service.clone(),
            ..PodMeta::default()
        });
        for ip in endpoint.addresses.iter().filter_map(|a| a.parse().ok()) {
            addresses.push((ip, IpOwner::Pod(pod.clone())));
        }
    }
    ObjectFacts {
        addresses,
        pod: None,
        exclusive: false,
    }
}

/// A node's addresses.
pub fn node(node: &Node) -> ObjectFacts {
    let name: Arc<str> = Arc::from(node.metadata.name.as_deref().unwrap_or(""));
    let addresses = node
        .status
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
        .filter_map(|a| a.address.parse().ok())
        .map(|ip| (ip, IpOwner::Node(name.clone())))
        .collect();
    ObjectFacts {
        addresses,
        pod: None,
        exclusive: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_json(owner_kind: &str, owner_name: &str, labels: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web-7d4b9c6f5-abcde", "namespace": "shop", "uid": "u-1",
                "labels": labels,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner_kind,
                    "name": owner_name, "uid": "o-1", "controller": true}]
            },
            "spec": {"nodeName": "node-1", "serviceAccountName": "web",
                     "containers": [{"name": "app"}]},
            "status": {"podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}, {"ip": "fd00::5"}],
                "containerStatuses": [{"name": "app", "containerID": "containerd://abc123",
                    "image": "x", "imageID": "y", "ready": true, "restartCount": 0}]}
        }))
        .unwrap()
    }

    #[test]
    fn names_the_workload_of_a_pod() {
        let deployment = pod_meta(&pod_json(
            "ReplicaSet",
            "web-7d4b9c6f5",
            serde_json::json!({"pod-template-hash": "7d4b9c6f5"}),
        ));
        assert_eq!(
            deployment.workload,
            Some(Workload {
                kind: WorkloadKind::Deployment,
                name: "web".into()
            })
        );
        let bare_rs = pod_meta(&pod_json("ReplicaSet", "web-rs", serde_json::json!({})));
        assert_eq!(bare_rs.workload.unwrap().kind, WorkloadKind::ReplicaSet);
        let cron = pod_meta(&pod_json("Job", "backup-29123456", serde_json::json!({})));
        assert_eq!(
            cron.workload,
            Some(Workload {
                kind: WorkloadKind::CronJob,
                name: "backup".into()
            })
        );
        let job = pod_meta(&pod_json("Job", "migrate-v2", serde_json::json!({})));
        assert_eq!(job.workload.unwrap().kind, WorkloadKind::Job);
        let sts = pod_meta(&pod_json("StatefulSet", "db", serde_json::json!({})));
        assert_eq!(sts.workload.unwrap().kind, WorkloadKind::StatefulSet);
        assert_eq!(
            deployment
                .container("abc123")
                .map(|(n, r)| (n.to_string(), r)),
            Some(("app".to_string(), Runtime::Containerd))
        );
        assert_eq!(deployment.service_account.as_deref(), Some("web"));
    }

    #[test]
    fn pod_addresses_but_not_for_host_network_pods() {
        let mut p = pod_json("DaemonSet", "agent", serde_json::json!({}));
        let facts = pod(&p);
        let ips: Vec<String> = facts
            .addresses
            .iter()
            .map(|(ip, _)| ip.to_string())
            .collect();
        assert_eq!(ips, ["10.1.0.5", "fd00::5"]);
        assert!(facts.exclusive);
        p.spec.as_mut().unwrap().host_network = Some(true);
        assert!(pod(&p).addresses.is_empty());
    }

    #[test]
    fn endpoint_slices_services_and_nodes() {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "orders-x1", "namespace": "shop",
                "labels": {"kubernetes.io/service-name": "orders"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.2.0.9"], "nodeName": "node-2",
                 "targetRef": {"kind": "Pod", "name": "orders-0", "namespace": "shop"}},
                {"addresses": ["10.9.9.9"]}
            ]
        }))
        .unwrap();
        let facts = endpoint_slice(&slice);
        assert_eq!(facts.addresses.len(), 1);
        let IpOwner::Pod(p) = &facts.addresses[0].1 else {
            panic!()
        };
        assert_eq!(
            (&*p.name, p.service.as_deref(), p.node_name.as_deref()),
            ("orders-0", Some("orders"), Some("node-2"))
        );
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "orders", "namespace": "shop"},
            "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"]}
        }))
        .unwrap();
        assert_eq!(service(&svc).addresses.len(), 1);
        let headless: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db", "namespace": "shop"},
            "spec": {"clusterIP": "None"}
        }))
        .unwrap();
        assert!(service(&headless).addresses.is_empty());
        let n: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "node-2"},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.168.1.2"},
                                     {"type": "Hostname", "address": "node-2"}]}
        }))
        .unwrap();
        assert_eq!(node(&n).addresses.len(), 1);
    }
}
