//! Kubernetes metadata through kube-rs watches (never polling): this node's pods (field selector
//! `spec.nodeName`), and cluster-wide Services, EndpointSlices and Nodes to name remote
//! addresses. In-cluster (service account) or from a kubeconfig; with neither, the agent runs
//! without Kubernetes, which is a normal mode.

pub mod convert;
pub mod ip_history;
pub mod state;
mod watch;

use std::{path::PathBuf, sync::Arc};

use k8s_openapi::api::{
    core::v1::{Node, Pod, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client,
    config::{KubeConfigOptions, Kubeconfig},
    runtime::watcher,
};

use crate::stats::Stats;
pub use state::KubeStore;

/// Whether to talk to a Kubernetes API server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// When a kubeconfig is given or the agent runs in a pod.
    #[default]
    Auto,
    /// Always (a kubeconfig from the file given, $KUBECONFIG, ~/.kube/config or in-cluster).
    On,
    Off,
}

#[derive(Clone, Debug, Default)]
pub struct KubeOptions {
    pub mode: Mode,
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("reading kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes configuration (kubernetes.mode is \"on\"): {0}")]
    Infer(#[source] kube::config::InferConfigError),
    #[error("in-cluster Kubernetes configuration: {0}")]
    InCluster(#[source] kube::config::InClusterError),
    #[error("making the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// Starts the watchers when Kubernetes is configured, with this node's pods found by
/// `node_name`; returns their tasks (`None`: no Kubernetes).
pub async fn start(
    options: &KubeOptions,
    node_name: &str,
    store: Arc<KubeStore>,
    stats: Arc<Stats>,
) -> Result<Option<Vec<tokio::task::JoinHandle<()>>>, KubeError> {
    let Some(config) = client_config(options).await? else {
        tracing::info!("no Kubernetes API configured: identities come from processes and cgroups");
        return Ok(None);
    };
    tracing::info!(server = %config.cluster_url, node = node_name, "watching Kubernetes");
    let client = Client::try_from(config).map_err(KubeError::Client)?;
    let synced = Arc::new(watch::SyncTracker::new(4));
    let shared = |kind| watch::Shared {
        kind,
        store: store.clone(),
        stats: stats.clone(),
        synced: synced.clone(),
    };
    let pods = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
    Ok(Some(vec![
        tokio::spawn(watch::run(
            Api::<Pod>::all(client.clone()),
            pods,
            shared("pod"),
            watch::Handlers {
                facts: convert::pod,
                since: convert::pod_since,
                pod_uid: |p: &Pod| p.metadata.uid.clone(),
            },
        )),
        tokio::spawn(watch::run(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
            shared("service"),
            watch::Handlers {
                facts: convert::service,
                since: |s: &Service| s.metadata.creation_timestamp.as_ref().map(convert::unix_ns),
                pod_uid: |_| None,
            },
        )),
        tokio::spawn(watch::run(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default(),
            shared("endpointslice"),
            watch::Handlers {
                facts: convert::endpoint_slice,
                since: |s: &EndpointSlice| {
                    s.metadata.creation_timestamp.as_ref().map(convert::unix_ns)
                },
                pod_uid: |_| None,
            },
        )),
        tokio::spawn(watch::run(
            Api::<Node>::all(client),
            watcher::Config::default(),
            shared("node"),
            watch::Handlers {
                facts: convert::node,
                since: |n: &Node| n.metadata.creation_timestamp.as_ref().map(convert::unix_ns),
                pod_uid: |_| None,
            },
        )),
    ]))
}

/// The client configuration, or `None` when Kubernetes is off or (in auto mode) not there.
async fn client_config(options: &KubeOptions) -> Result<Option<kube::Config>, KubeError> {
    if options.mode == Mode::Off {
        return Ok(None);
    }
    if let Some(path) = &options.kubeconfig {
        let kubeconfig = Kubeconfig::read_from(path).map_err(|source| KubeError::Kubeconfig {
            path: path.display().to_string(),
            source,
        })?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|source| KubeError::Kubeconfig {
                    path: path.display().to_string(),
                    source,
                })?;
        return Ok(Some(config));
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return kube::Config::incluster()
            .map(Some)
            .map_err(KubeError::InCluster);
    }
    match options.mode {
        Mode::On => kube::Config::infer()
            .await
            .map(Some)
            .map_err(KubeError::Infer),
        Mode::Auto | Mode::Off => Ok(None),
    }
}
