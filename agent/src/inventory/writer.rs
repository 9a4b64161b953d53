//! The inventory as a pipeline stage: counts calls on the processor task and hands the changed
//! endpoints to a writer thread every few seconds (SQLite writes never block capture; a batch
//! that does not fit the writer's queue is sent again with the next one).

use std::{
    path::Path,
    sync::{
        Arc,
        mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
    },
    thread::JoinHandle,
};

use super::{
    Inventory, InventoryLimits,
    endpoint::{EndpointKey, EndpointStats},
    store::{Store, StoreError},
};
use crate::{call::ApiCall, stats::Stats};

type Batch = Vec<(EndpointKey, EndpointStats)>;

pub struct InventoryStage {
    inventory: Inventory,
    batches: SyncSender<Batch>,
    thread: JoinHandle<()>,
}

impl InventoryStage {
    /// Opens the database, restores what it holds and starts the writer.
    pub fn start(
        path: &Path,
        limits: InventoryLimits,
        stats: Arc<Stats>,
    ) -> Result<Self, StoreError> {
        let store = Store::open(path)?;
        let mut inventory = Inventory::new(limits, stats.clone());
        inventory.restore(store.load()?);
        tracing::info!(path = %path.display(), endpoints = inventory.len(), "inventory opened");
        let (batches, receive) = sync_channel(2);
        let thread = std::thread::Builder::new()
            .name("sightline-inventory".to_string())
            .spawn(move || write(store, receive, stats))
            .map_err(|source| StoreError::Directory {
                path: "inventory writer thread".to_string(),
                source,
            })?;
        Ok(Self {
            inventory,
            batches,
            thread,
        })
    }

    pub fn observe(&mut self, call: &mut ApiCall) {
        self.inventory.observe(call);
    }

    /// Hands what changed to the writer.
    pub fn flush(&mut self) {
        let batch = self.inventory.take_changed();
        if batch.is_empty() {
            return;
        }
        if let Err(TrySendError::Full(batch) | TrySendError::Disconnected(batch)) =
            self.batches.try_send(batch)
        {
            self.inventory
                .requeue(batch.into_iter().map(|(key, _)| key));
        }
    }

    /// Writes what is left and waits for the writer.
    pub fn finish(mut self) {
        let batch = self.inventory.take_changed();
        if !batch.is_empty() {
            let _ = self.batches.send(batch);
        }
        drop(self.batches);
        let _ = self.thread.join();
    }
}

fn write(mut store: Store, batches: Receiver<Batch>, stats: Arc<Stats>) {
    while let Ok(batch) = batches.recv() {
        if let Err(error) = store.save(&batch) {
            Stats::inc(&stats.inventory_store_errors);
            tracing::warn!(%error, "writing the inventory failed");
        }
    }
}
