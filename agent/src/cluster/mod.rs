//! The cluster-wide view: what every node's agent exported, read back from the metrics store
//! users already run (Prometheus, or anything that answers its query API).

pub mod findings;
pub mod inventory;
pub mod prometheus_api;
