//! The inventory as a pipeline stage: counts calls on the processor task and hands the changed
//! endpoints and new findings to a writer thread every few seconds (SQLite writes never block
//! capture; a batch that does not fit the writer's queue is sent again with the next one).

use std::{
    path::Path,
    sync::{
        Arc,
        mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
    },
    thread::JoinHandle,
};

use super::{
    Finding, Inventory, InventoryLimits,
    classify::Specs,
    endpoint::{EndpointKey, EndpointStats},
    spec_source::SpecSource,
    store::{Store, StoreError},
};
use crate::{call::ApiCall, stats::Stats};

/// What the writer writes at once.
struct Batch {
    endpoints: Vec<(EndpointKey, EndpointStats)>,
    findings: Vec<Finding>,
    /// The specs changed: their operations are written again.
    specs: Option<Specs>,
}

pub struct InventoryStage {
    inventory: Inventory,
    specs: SpecSource,
    stats: Arc<Stats>,
    batches: SyncSender<Batch>,
    thread: JoinHandle<()>,
}

impl InventoryStage {
    /// Opens the database, records the specs' operations, restores the stored endpoints and
    /// starts the writer.
    pub fn start(
        path: &Path,
        limits: InventoryLimits,
        specs: SpecSource,
        stats: Arc<Stats>,
    ) -> Result<Self, StoreError> {
        let mut store = Store::open(path)?;
        store.save_spec_operations(&specs.specs())?;
        let mut inventory = Inventory::new(limits, specs.specs(), stats.clone());
        inventory.restore(store.load()?);
        tracing::info!(path = %path.display(), endpoints = inventory.len(), "inventory opened");
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
        Ok(Self {
            inventory,
            specs,
            stats,
            batches,
            thread,
        })
    }

    pub fn observe(&mut self, call: &mut ApiCall) {
        self.inventory.observe(call);
    }

    /// Picks up changed spec files and hands what changed to the writer.
    pub fn flush(&mut self) {
        let mut batch = self.batch();
        if let Some(specs) = self.specs.reload_if_changed(&self.stats) {
            self.inventory.set_specs(specs.clone());
            batch.specs = Some(specs);
        }
        if batch.endpoints.is_empty() && batch.findings.is_empty() && batch.specs.is_none() {
            return;
        }
        if let Err(TrySendError::Full(batch) | TrySendError::Disconnected(batch)) =
            self.batches.try_send(batch)
        {
            self.inventory
                .requeue(batch.endpoints.into_iter().map(|(key, _)| key));
            self.inventory.requeue_findings(batch.findings);
        }
    }

    fn batch(&mut self) -> Batch {
        Batch {
            endpoints: self.inventory.take_changed(),
            findings: self.inventory.take_findings(),
            specs: None,
        }
    }

    /// Writes what is left and waits for the writer.
    pub fn finish(mut self) {
        let batch = self.batch();
        let _ = self.batches.send(batch);
        drop(self.batches);
        let _ = self.thread.join();
    }
}

fn write(mut store: Store, batches: Receiver<Batch>, stats: Arc<Stats>) {
    while let Ok(batch) = batches.recv() {
        let saved = store
            .save(&batch.endpoints)
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
