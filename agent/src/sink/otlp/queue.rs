//! A bounded export queue: the sink thread pushes without ever waiting (a full queue drops the
//! item and counts it), a task on the runtime sends batches and, when the collector fails,
//! keeps the batch and tries again with exponential backoff. Memory is bounded by the queue
//! plus one batch however long the collector is away; what the queue holds arrives when it is
//! back. A batch that still fails after [`GIVE_UP_AFTER`] is dropped (counted) so that a
//! collector rejecting it for good cannot stop the export.

use std::{
    future::Future,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};

use crate::stats::Stats;

/// First and longest wait between two attempts of a failed batch.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(120);
/// How long a partial batch waits for more items before it is sent.
const LINGER: Duration = Duration::from_millis(200);

/// Sends one batch; an error means nothing of it (still in the slice) was delivered.
/// Implementations may remove from the front what they delivered before failing.
pub trait BatchExporter: Send + 'static {
    type Item: Send + 'static;
    fn export(
        &mut self,
        batch: &mut Vec<Self::Item>,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// The counters of one queue.
#[derive(Clone, Copy)]
pub struct QueueCounters {
    pub exported: fn(&Stats) -> &AtomicU64,
    pub dropped: fn(&Stats) -> &AtomicU64,
    pub failures: fn(&Stats) -> &AtomicU64,
}

impl QueueCounters {
    pub const SPANS: Self = Self {
        exported: |s| &s.otlp_spans_exported,
        dropped: |s| &s.otlp_spans_dropped,
        failures: |s| &s.otlp_trace_export_failures,
    };
    pub const LOGS: Self = Self {
        exported: |s| &s.otlp_logs_exported,
        dropped: |s| &s.otlp_logs_dropped,
        failures: |s| &s.otlp_log_export_failures,
    };
}

/// The sink thread's end of a queue.
pub struct QueueSender<T> {
    items: mpsc::Sender<T>,
    stats: Arc<Stats>,
    counters: QueueCounters,
}

impl<T> QueueSender<T> {
    pub fn push(&self, item: T) {
        if self.items.try_send(item).is_err() {
            Stats::inc((self.counters.dropped)(&self.stats));
        }
    }
}

/// Starts the export task of a queue of `capacity` items; it ends when the sender is dropped
/// and everything queued was tried, or on `shutdown` (a last attempt, then what remains is
/// counted as dropped).
pub fn start<E: BatchExporter>(
    exporter: E,
    capacity: usize,
    batch_size: usize,
    signal: &'static str,
    counters: QueueCounters,
    stats: Arc<Stats>,
    shutdown: watch::Receiver<bool>,
) -> (QueueSender<E::Item>, tokio::task::JoinHandle<()>) {
    let (items, receiver) = mpsc::channel(capacity);
    let task = tokio::spawn(
        Worker {
            exporter,
            batch_size,
            signal,
            counters,
            stats: stats.clone(),
            shutdown,
        }
        .run(receiver),
    );
    (
        QueueSender {
            items,
            stats,
            counters,
        },
        task,
    )
}

struct Worker<E> {
    exporter: E,
    batch_size: usize,
    signal: &'static str,
    counters: QueueCounters,
    stats: Arc<Stats>,
    shutdown: watch::Receiver<bool>,
}

impl<E: BatchExporter> Worker<E> {
    async fn run(mut self, mut items: mpsc::Receiver<E::Item>) {
        let mut batch = Vec::with_capacity(self.batch_size);
        loop {
            let stopping = *self.shutdown.borrow();
            if !stopping {
                tokio::select! {
                    item = items.recv() => match item {
                        Some(item) => batch.push(item),
                        None => break,
                    },
                    Ok(()) = self.shutdown.changed() => continue,
                }
                let linger = tokio::time::sleep(LINGER);
                tokio::pin!(linger);
                // Whatever is queued is taken at once (one wakeup per burst, not per item).
                while batch.len() < self.batch_size {
                    let room = self.batch_size - batch.len();
                    tokio::select! {
                        received = items.recv_many(&mut batch, room) => if received == 0 { break },
                        _ = &mut linger => break,
                    }
                }
            } else {
                while batch.len() < self.batch_size {
                    match items.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
                    }
                }
                if batch.is_empty() {
                    break;
                }
            }
            self.send(&mut batch).await;
        }
    }

    /// Sends `batch` until it is delivered, given up, or the agent stops (then one attempt).
    async fn send(&mut self, batch: &mut Vec<E::Item>) {
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut failures = 0u64;
        loop {
            let before = batch.len();
            let result = self.exporter.export(batch).await;
            let delivered = before - batch.len();
            Stats::add((self.counters.exported)(&self.stats), delivered as u64);
            let error = match result {
                Ok(()) => {
                    Stats::add((self.counters.exported)(&self.stats), batch.len() as u64);
                    batch.clear();
                    if failures > 0 {
                        tracing::info!(signal = self.signal, failures, "OTLP export recovered");
                    }
                    return;
                }
                Err(error) => error,
            };
            Stats::inc((self.counters.failures)(&self.stats));
            failures += 1;
            // The first failure of a batch is logged; repeats are counted only.
            if failures == 1 {
                tracing::warn!(signal = self.signal, %error, "OTLP export failed; retrying");
            }
            let stopping = *self.shutdown.borrow();
            if stopping || started.elapsed() >= GIVE_UP_AFTER {
                Stats::add((self.counters.dropped)(&self.stats), batch.len() as u64);
                tracing::warn!(
                    signal = self.signal,
                    dropped = batch.len(),
                    "OTLP export gave up on a batch"
                );
                batch.clear();
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.shutdown.changed() => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Mutex, atomic::Ordering};

    /// Fails while `down` is set; records what it delivered.
    struct Flaky {
        down: Arc<Mutex<bool>>,
        delivered: Arc<Mutex<Vec<u32>>>,
    }

    impl BatchExporter for Flaky {
        type Item = u32;
        async fn export(&mut self, batch: &mut Vec<u32>) -> Result<(), String> {
            if *self.down.lock().unwrap() {
                return Err("connection refused".into());
            }
            self.delivered.lock().unwrap().extend(batch.drain(..));
            Ok(())
        }
    }

    /// A queue of 10 in batches of 4, to a collector that is down until told otherwise.
    struct Harness {
        sender: QueueSender<u32>,
        task: tokio::task::JoinHandle<()>,
        down: Arc<Mutex<bool>>,
        delivered: Arc<Mutex<Vec<u32>>>,
        stats: Arc<Stats>,
        stop: watch::Sender<bool>,
    }

    impl Harness {
        fn start() -> Self {
            let down = Arc::new(Mutex::new(true));
            let delivered = Arc::new(Mutex::new(Vec::new()));
            let stats = Arc::new(Stats::default());
            let (stop, shutdown) = watch::channel(false);
            let exporter = Flaky {
                down: down.clone(),
                delivered: delivered.clone(),
            };
            let counters = QueueCounters::SPANS;
            let (sender, task) =
                start(exporter, 10, 4, "traces", counters, stats.clone(), shutdown);
            Self {
                sender,
                task,
                down,
                delivered,
                stats,
                stop,
            }
        }

        fn push(&self, items: std::ops::Range<u32>) {
            items.for_each(|i| self.sender.push(i));
        }

        /// Ends the queue (its sender dropped) and waits for its task.
        async fn end(self) -> (Vec<u32>, Arc<Stats>) {
            drop(self.sender);
            self.task.await.unwrap();
            let delivered = self.delivered.lock().unwrap().clone();
            (delivered, self.stats)
        }
    }

    fn n(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    #[tokio::test(start_paused = true)]
    async fn keeps_what_fits_while_the_collector_is_down_and_delivers_it_later() {
        let queue = Harness::start();
        // One batch of 4 is taken and retried; 10 more fit the queue; 6 are dropped.
        queue.push(0..4);
        tokio::time::sleep(Duration::from_secs(1)).await;
        queue.push(4..20);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(queue.delivered.lock().unwrap().is_empty());
        *queue.down.lock().unwrap() = false;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (delivered, stats) = queue.end().await;
        assert_eq!(delivered, (0..14).collect::<Vec<_>>());
        assert_eq!(n(&stats.otlp_spans_exported), 14);
        assert_eq!(n(&stats.otlp_spans_dropped), 6);
        assert!(n(&stats.otlp_trace_export_failures) >= 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_that_never_goes_through_is_given_up_and_counted() {
        let queue = Harness::start();
        queue.push(0..3);
        tokio::time::sleep(GIVE_UP_AFTER + Duration::from_secs(10)).await;
        let (delivered, stats) = queue.end().await;
        assert!(delivered.is_empty());
        assert_eq!(n(&stats.otlp_spans_dropped), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_makes_one_last_attempt() {
        let queue = Harness::start();
        queue.push(0..6);
        tokio::time::sleep(Duration::from_secs(2)).await;
        queue.stop.send(true).unwrap();
        let (delivered, stats) = queue.end().await;
        assert!(delivered.is_empty());
        assert_eq!(n(&stats.otlp_spans_dropped), 6);
    }
}
