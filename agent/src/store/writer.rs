//! The inventory as a pipeline stage: counts calls on the processor task and hands the changed
//! endpoints and findings to a writer thread every few seconds (SQLite writes never block
//! capture; a batch that does not fit the writer's queue is sent again with the next one).
//! Without a database the inventory still runs in memory: calls get their routes and the
//! rules their endpoints.

use std::{
    collections::HashSet,
    path::Path,
    sync::{
        Arc,
        mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
    },
    thread::JoinHandle,
};

use super::sqlite::{Store, StoreError};
use crate::inventory::{
    Inventory, InventoryLimits,
    changes::Change,
    classify::Specs,
    counts::InventoryCounts,
    endpoint::{EndpointKey, EndpointStats},
    spec_source::ApiSpecEntry,
    spec_source::SpecSource,
};
use crate::{
    call::ApiCall,
    findings::{model::Finding, risk, series::FindingSeries},
    stats::Stats,
};

/// What the writer writes at once.
struct Batch {
    endpoints: Vec<(EndpointKey, EndpointStats)>,
    changes: Vec<Change>,
    findings: Vec<Finding>,
    /// The specs changed: their operations are written again.
    specs: Option<Specs>,
}

/// The database writer: a thread and the queue to it.
struct Writer {
    batches: SyncSender<Batch>,
    thread: JoinHandle<()>,
}

pub struct InventoryStage {
    inventory: Inventory,
    /// The findings as the metrics export them, refreshed with each write.
    finding_series: Arc<FindingSeries>,
    specs: SpecSource,
    /// Specs in use whose operations the database does not have yet (a batch that did not
    /// fit the writer's queue carries them again).
    unsaved_specs: Option<Specs>,
    stats: Arc<Stats>,
    writer: Option<Writer>,
}

impl InventoryStage {
    /// Opens the database (when given), records the specs' operations, restores the stored
    /// endpoints and starts the writer. Returns the stored findings too, for the rules.
    pub fn start(
        path: Option<&Path>,
        limits: InventoryLimits,
        specs: SpecSource,
        stats: Arc<Stats>,
    ) -> Result<(Self, Vec<Finding>), StoreError> {
        let mut inventory = Inventory::new(limits, specs.specs(), stats.clone());
        let Some(path) = path else {
            let stage = Self {
                inventory,
                finding_series: Arc::default(),
                specs,
                unsaved_specs: None,
                stats,
                writer: None,
            };
            return Ok((stage, Vec::new()));
        };
        let mut store = Store::open(path)?;
        store.save_spec_operations(&specs.specs())?;
        inventory.restore(store.load()?);
        inventory.restore_quiet(store.quiet_endpoints()?);
        let findings = store.load_findings()?;
        tracing::info!(
            path = %path.display(),
            endpoints = inventory.len(),
            findings = findings.len(),
            "inventory opened"
        );
        let (batches, receive) = sync_channel(2);
        let thread = std::thread::Builder::new()
            .name("sightline-inventory".to_string())
            .spawn({
                let stats = stats.clone();
                move || write(store, receive, stats)
            })
            .map_err(|source| StoreError::Directory {
                path: "inventory writer thread".to_string(),
                source,
            })?;
        let finding_series = Arc::new(FindingSeries::default());
        finding_series.update(&findings);
        inventory.counts().set_risks(
            inventory
                .endpoints()
                .map(|(key, stats)| (key, risk::score(key, stats, &findings).score)),
        );
        let stage = Self {
            inventory,
            finding_series,
            specs,
            unsaved_specs: None,
            stats,
            writer: Some(Writer { batches, thread }),
        };
        Ok((stage, findings))
    }

    pub fn observe(&mut self, call: &mut ApiCall) {
        self.inventory.observe(call);
    }

    /// Remote proxies whose forwarding headers name the callers (from the config, at start).
    pub fn set_trusted_proxies(&mut self, trusted: Vec<crate::inventory::reach::Cidr>) {
        self.inventory.set_trusted_proxies(trusted);
    }

    /// The findings, kept current at each flush (for the exported series).
    pub fn finding_series(&self) -> Arc<FindingSeries> {
        self.finding_series.clone()
    }

    /// Endpoints by API and class, kept current by the inventory (for the exported gauges).
    pub fn counts(&self) -> Arc<InventoryCounts> {
        self.inventory.counts()
    }

    /// The spec entries of a reloaded config: every spec is read again and used from the
    /// next call on (the database gets their operations with the next flush).
    pub fn replace_spec_entries(&mut self, entries: Vec<ApiSpecEntry>) {
        let specs = self.specs.replace_entries(entries, &self.stats);
        self.inventory.set_specs(specs.clone());
        self.unsaved_specs = Some(specs);
    }

    /// Picks up changed spec files and hands what changed, with the changed `findings`, to
    /// the writer. Returns the findings it could not take (to be given again next time) and
    /// the endpoints' changes found since the last flush (for the sinks).
    pub fn flush(&mut self, findings: Vec<Finding>) -> Flushed {
        self.finding_series.update(&findings);
        if let Some(specs) = self.specs.reload_if_changed(&self.stats) {
            self.inventory.set_specs(specs.clone());
            self.unsaved_specs = Some(specs);
        }
        let endpoints = self.inventory.take_changed();
        self.score(&endpoints, &findings);
        let changes = self.inventory.take_changes(unix_now());
        let Some(writer) = &self.writer else {
            return Flushed {
                unwritten: Vec::new(),
                changes,
            };
        };
        if endpoints.is_empty()
            && findings.is_empty()
            && changes.is_empty()
            && self.unsaved_specs.is_none()
        {
            return Flushed::default();
        }
        let batch = Batch {
            endpoints,
            changes: changes.clone(),
            findings,
            specs: self.unsaved_specs.take(),
        };
        match writer.batches.try_send(batch) {
            Ok(()) => Flushed {
                unwritten: Vec::new(),
                changes,
            },
            Err(TrySendError::Full(batch) | TrySendError::Disconnected(batch)) => {
                self.inventory
                    .requeue(batch.endpoints.into_iter().map(|(key, _)| key));
                self.inventory.requeue_changes(batch.changes);
                self.unsaved_specs = batch.specs;
                Flushed {
                    unwritten: batch.findings,
                    changes: Vec::new(),
                }
            }
        }
    }

    /// Scores the endpoints whose statistics changed and those with a changed finding, for
    /// the risk metric.
    fn score(&self, changed: &[(EndpointKey, EndpointStats)], findings: &[Finding]) {
        if changed.is_empty() && findings.is_empty() {
            return;
        }
        let keys: HashSet<&EndpointKey> = changed
            .iter()
            .map(|(key, _)| key)
            .chain(findings.iter().map(|f| &f.key.endpoint))
            .collect();
        let raised = self.finding_series.of_endpoints(&keys);
        let scores: Vec<(&EndpointKey, f64)> = keys
            .iter()
            .filter_map(|key| {
                let stats = self.inventory.stats(key)?;
                Some((*key, risk::score(key, stats, &raised).score))
            })
            .collect();
        self.inventory.counts().set_risks(scores);
    }

    /// Writes what is left (with the last `findings`) and waits for the writer. Returns the
    /// last changes (for the sinks, which are still open).
    pub fn finish(mut self, findings: Vec<Finding>) -> Vec<Change> {
        let endpoints = self.inventory.take_changed();
        let changes = self.inventory.take_changes(unix_now());
        if let Some(writer) = self.writer {
            let _ = writer.batches.send(Batch {
                endpoints,
                changes: changes.clone(),
                findings,
                specs: self.unsaved_specs.take(),
            });
            drop(writer.batches);
            let _ = writer.thread.join();
        }
        changes
    }
}

/// What a flush leaves to the caller.
#[derive(Debug, Default)]
pub struct Flushed {
    /// Findings the writer could not take: given again with the next flush.
    pub unwritten: Vec<Finding>,
    /// The endpoints' changes found since the last flush.
    pub changes: Vec<Change>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn write(mut store: Store, batches: Receiver<Batch>, stats: Arc<Stats>) {
    while let Ok(batch) = batches.recv() {
        let saved = store
            .save(&batch.endpoints)
            .and_then(|()| store.save_changes(&batch.changes))
            .and_then(|()| store.save_findings(&batch.findings))
            .and_then(|()| match &batch.specs {
                Some(specs) => store.save_spec_operations(specs),
                None => Ok(()),
            });
        if let Err(error) = saved {
            Stats::inc(&stats.inventory_store_errors);
            tracing::warn!(%error, "writing the inventory failed");
        }
    }
}
