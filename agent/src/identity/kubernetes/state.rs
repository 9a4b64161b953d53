//! What the agent knows of the cluster: this node's pods by UID (to name local processes from
//! their cgroup) and the history of every address's owner (to name remote ends). Fed by the
//! watchers, read by the identity stage; bounded.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use super::ip_history::{IpHistory, IpOwner};
use crate::{identity::model::PodMeta, stats::Stats};

/// Deleted pods stay known this long (their last calls are resolved after the delete).
const DELETED_POD_GRACE_NS: u64 = 60_000_000_000;

/// What one API object says: the addresses it gives to owners, and for a watched pod, the pod.
#[derive(Clone, Debug, Default)]
pub struct ObjectFacts {
    pub addresses: Vec<(IpAddr, IpOwner)>,
    /// A pod of this node (the pod watch), indexed by UID.
    pub pod: Option<Arc<PodMeta>>,
    /// Claims that take an address from any other pod (a running pod's own IPs).
    pub exclusive: bool,
}

/// Limits of the tables.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_addresses: usize,
    pub max_pods: usize,
    pub max_objects: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_addresses: 262_144,
            max_pods: 16_384,
            max_objects: 131_072,
        }
    }
}

pub struct KubeState {
    pods: HashMap<Arc<str>, (Arc<PodMeta>, Option<u64>)>,
    deleted_pods: VecDeque<(Arc<str>, u64)>,
    ips: IpHistory,
    /// What each object (`kind/namespace/name`) claimed, so an update or delete lets go of it.
    claims: HashMap<String, Vec<(IpAddr, String)>>,
    limits: Limits,
}

impl KubeState {
    pub fn new(limits: Limits) -> Self {
        Self {
            pods: HashMap::new(),
            deleted_pods: VecDeque::new(),
            ips: IpHistory::new(limits.max_addresses),
            claims: HashMap::new(),
            limits,
        }
    }

    /// The object `object` now says `facts`, known since `from` (unix ns; `now` for live events).
    pub fn apply(&mut self, object: &str, facts: ObjectFacts, from: u64, now: u64, stats: &Stats) {
        if let Some(pod) = &facts.pod {
            self.put_pod(pod.clone(), stats);
        }
        // An object that cannot be remembered claims nothing: its claims could never be let go.
        if !facts.addresses.is_empty()
            && !self.claims.contains_key(object)
            && self.claims.len() >= self.limits.max_objects
        {
            Stats::inc(&stats.k8s_objects_dropped);
            return;
        }
        let old = self.claims.remove(object).unwrap_or_default();
        let new: Vec<(IpAddr, String)> = facts
            .addresses
            .iter()
            .map(|(ip, owner)| (*ip, owner.key()))
            .collect();
        for (ip, key) in old.iter().filter(|claim| !new.contains(claim)) {
            self.ips.release(*ip, key, object, now);
        }
        for (ip, owner) in facts.addresses {
            let key = owner.key();
            let already = old.iter().any(|(i, k)| *i == ip && *k == key);
            // A claim already held is only refreshed (a newer owner description).
            let exclusive = facts.exclusive && !already;
            if self.ips.claim(ip, owner, object, from, exclusive).is_err() {
                Stats::inc(&stats.k8s_addresses_dropped);
            }
        }
        if !new.is_empty() {
            self.claims.insert(object.to_string(), new);
        }
    }

    /// The object is gone: its claims end at `now`; a pod stays known for a grace period.
    pub fn delete(&mut self, object: &str, pod_uid: Option<&str>, now: u64) {
        for (ip, key) in self.claims.remove(object).unwrap_or_default() {
            self.ips.release(ip, &key, object, now);
        }
        if let Some(uid) = pod_uid
            && let Some((_, deleted_at)) = self.pods.get_mut(uid)
        {
            *deleted_at = Some(now);
            self.deleted_pods.push_back((Arc::from(uid), now));
        }
    }

    pub fn pod_by_uid(&self, uid: &str) -> Option<&Arc<PodMeta>> {
        self.pods.get(uid).map(|(pod, _)| pod)
    }

    pub fn owner_at(&self, ip: IpAddr, at: u64) -> Option<&IpOwner> {
        self.ips.owner_at(ip, at)
    }

    /// Forgets pods deleted long ago and address tenures past retention.
    pub fn prune(&mut self, now: u64) {
        while let Some((uid, at)) = self.deleted_pods.front().cloned() {
            if now.saturating_sub(at) < DELETED_POD_GRACE_NS {
                break;
            }
            self.deleted_pods.pop_front();
            if self.pods.get(&uid).and_then(|(_, d)| *d) == Some(at) {
                self.pods.remove(&uid);
            }
        }
        self.ips.prune(now);
    }

    fn put_pod(&mut self, pod: Arc<PodMeta>, stats: &Stats) {
        if pod.uid.is_empty() {
            return;
        }
        if !self.pods.contains_key(&pod.uid) && self.pods.len() >= self.limits.max_pods {
            Stats::inc(&stats.k8s_objects_dropped);
            return;
        }
        self.pods.insert(pod.uid.clone(), (pod, None));
    }
}

/// The state shared between the watchers (writers) and the identity stage (reader). The
/// generation changes with every write, so readers can cache what they derived from it.
pub struct KubeStore {
    state: RwLock<KubeState>,
    generation: AtomicU64,
}

impl KubeStore {
    pub fn new(limits: Limits) -> Self {
        Self {
            state: RwLock::new(KubeState::new(limits)),
            generation: AtomicU64::new(0),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn read<T>(&self, f: impl FnOnce(&KubeState) -> T) -> T {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        f(&state)
    }

    pub fn write(&self, f: impl FnOnce(&mut KubeState)) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        f(&mut state);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn facts(name: &str, ip: &str) -> ObjectFacts {
        let pod = Arc::new(PodMeta {
            namespace: "shop".into(),
            name: name.into(),
            uid: format!("uid-{name}").into(),
            ..PodMeta::default()
        });
        ObjectFacts {
            addresses: vec![(ip.parse().unwrap(), IpOwner::Pod(pod.clone()))],
            pod: Some(pod),
            exclusive: true,
        }
    }

    fn owner(state: &KubeState, ip: &str, at: u64) -> Option<String> {
        state.owner_at(ip.parse().unwrap(), at).map(IpOwner::key)
    }

    #[test]
    fn updates_and_deletes_let_go_of_what_an_object_claimed() {
        let stats = Stats::default();
        let mut state = KubeState::new(Limits::default());
        state.apply("pod/shop/a", facts("a", "10.0.0.1"), 10 * S, 10 * S, &stats);
        assert_eq!(
            owner(&state, "10.0.0.1", 20 * S).as_deref(),
            Some("pod/shop/a")
        );
        // The pod moved to another address: the first one ends now.
        state.apply("pod/shop/a", facts("a", "10.0.0.2"), 30 * S, 30 * S, &stats);
        assert_eq!(
            owner(&state, "10.0.0.1", 25 * S).as_deref(),
            Some("pod/shop/a")
        );
        assert_eq!(owner(&state, "10.0.0.1", 200 * S), None);
        assert_eq!(
            owner(&state, "10.0.0.2", 40 * S).as_deref(),
            Some("pod/shop/a")
        );
        state.delete("pod/shop/a", Some("uid-a"), 50 * S);
        assert_eq!(owner(&state, "10.0.0.2", 200 * S), None);
        assert!(
            state.pod_by_uid("uid-a").is_some(),
            "kept for its last calls"
        );
        state.prune(50 * S + DELETED_POD_GRACE_NS);
        assert!(state.pod_by_uid("uid-a").is_none());
    }

    #[test]
    fn objects_past_the_cap_claim_nothing() {
        let stats = Stats::default();
        let limits = Limits {
            max_objects: 1,
            ..Limits::default()
        };
        let mut state = KubeState::new(limits);
        state.apply("pod/shop/a", facts("a", "10.0.0.1"), 0, 0, &stats);
        state.apply("pod/shop/b", facts("b", "10.0.0.2"), 0, 0, &stats);
        assert_eq!(owner(&state, "10.0.0.2", S), None);
        assert_eq!(stats.k8s_objects_dropped.load(Ordering::Relaxed), 1);
        // The remembered object still updates.
        state.apply("pod/shop/a", facts("a", "10.0.0.3"), S, S, &stats);
        assert_eq!(
            owner(&state, "10.0.0.3", 2 * S).as_deref(),
            Some("pod/shop/a")
        );
    }
}
