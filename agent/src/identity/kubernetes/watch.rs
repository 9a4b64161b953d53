//! One watcher loop per resource kind: list, then watch, with kube-rs's backoff on errors.
//! A relist (after the watch expired) replaces what the kind knew: objects it no longer
//! shows are deleted.

use std::{
    collections::{HashMap, HashSet},
    fmt::Debug,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use futures::StreamExt as _;
use kube::{
    Api, Resource,
    runtime::{WatchStreamExt as _, watcher},
};
use serde::de::DeserializeOwned;

use super::{KubeStore, convert::object_key, state::ObjectFacts};
use crate::stats::Stats;

/// Counts watchers that have listed once, to say (in the log) when all have.
pub struct SyncTracker {
    remaining: AtomicUsize,
}

impl SyncTracker {
    pub fn new(watchers: usize) -> Self {
        Self {
            remaining: AtomicUsize::new(watchers),
        }
    }

    fn listed_once(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            tracing::info!("kubernetes metadata synced");
        }
    }
}

pub struct Shared {
    pub kind: &'static str,
    pub store: Arc<KubeStore>,
    pub stats: Arc<Stats>,
    pub synced: Arc<SyncTracker>,
}

/// How one kind of object is read.
pub struct Handlers<K> {
    pub facts: fn(&K) -> ObjectFacts,
    /// Since when the object's facts held, for objects found by a list.
    pub since: fn(&K) -> Option<u64>,
    pub pod_uid: fn(&K) -> Option<String>,
}

pub async fn run<K>(api: Api<K>, config: watcher::Config, shared: Shared, handlers: Handlers<K>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut stream = watcher(api, config).default_backoff().boxed();
    // Object key -> pod UID, for what this watcher has applied.
    let mut known: HashMap<String, Option<String>> = HashMap::new();
    let mut listing: HashSet<String> = HashSet::new();
    let mut listed_once = false;
    let mut errors = 0u64;
    while let Some(item) = stream.next().await {
        let now = unix_now();
        let event = match item {
            Ok(event) => {
                if errors > 0 {
                    tracing::info!(kind = shared.kind, errors, "kubernetes watch recovered");
                    errors = 0;
                }
                event
            }
            Err(error) => {
                Stats::inc(&shared.stats.k8s_watch_errors);
                errors += 1;
                // The backoff retries; one line per error until it works, then every 100th.
                if errors <= 3 || errors.is_multiple_of(100) {
                    tracing::warn!(kind = shared.kind, %error, errors, "kubernetes watch failed");
                }
                continue;
            }
        };
        match event {
            watcher::Event::Init => listing.clear(),
            watcher::Event::InitApply(object) => {
                let key = object_key(shared.kind, object.meta());
                let since = (handlers.since)(&object).map_or(now, |t| t.min(now));
                apply(&shared, &handlers, &object, &key, since, now);
                known.insert(key.clone(), (handlers.pod_uid)(&object));
                listing.insert(key);
            }
            watcher::Event::InitDone => {
                let gone: Vec<String> = known
                    .keys()
                    .filter(|k| !listing.contains(*k))
                    .cloned()
                    .collect();
                for key in gone {
                    let uid = known.remove(&key).flatten();
                    shared.store.write(|s| s.delete(&key, uid.as_deref(), now));
                }
                if !listed_once {
                    listed_once = true;
                    tracing::debug!(kind = shared.kind, objects = known.len(), "listed");
                    shared.synced.listed_once();
                }
            }
            watcher::Event::Apply(object) => {
                let key = object_key(shared.kind, object.meta());
                apply(&shared, &handlers, &object, &key, now, now);
                known.insert(key, (handlers.pod_uid)(&object));
            }
            watcher::Event::Delete(object) => {
                let key = object_key(shared.kind, object.meta());
                known.remove(&key);
                let uid = (handlers.pod_uid)(&object);
                shared.store.write(|s| s.delete(&key, uid.as_deref(), now));
            }
        }
    }
}

fn apply<K>(shared: &Shared, handlers: &Handlers<K>, object: &K, key: &str, since: u64, now: u64) {
    let facts = (handlers.facts)(object);
    shared
        .store
        .write(|s| s.apply(key, facts, since, now, &shared.stats));
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
