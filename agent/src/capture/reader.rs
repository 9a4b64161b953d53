//! Drains the kernel ring buffer into a bounded channel. It never blocks: when the next stage is
//! behind, events are dropped and counted, so the kernel side never waits on userspace and the
//! ring buffer keeps room.

use std::{sync::Arc, time::Duration};

use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, sync::mpsc, sync::watch};

use super::{decode::decode, event::CaptureEvent};
use crate::stats::Stats;

/// How often the ring buffer is drained when no wakeup came (the kernel side only wakes the
/// reader past a fill threshold: batched wakeups).
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Reads until `shutdown` turns true, then drains what is left once.
pub async fn run(
    ring: RingBuf<MapData>,
    out: mpsc::Sender<CaptureEvent>,
    stats: Arc<Stats>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    #[allow(unsafe_code)]
    // SAFETY: the ring buffer owns its map file descriptor and keeps it open, unchanged, for as
    // long as the AsyncFd owns the ring buffer.
    let mut ring = unsafe { AsyncFd::register(ring)? };
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                drain(guard.get_inner_mut(), &out, &stats);
                guard.clear_ready();
            }
            _ = tick.tick() => drain(ring.get_mut(), &out, &stats),
            _ = shutdown.changed() => {
                drain(ring.get_mut(), &out, &stats);
                return Ok(());
            }
        }
    }
}

fn drain(ring: &mut RingBuf<MapData>, out: &mpsc::Sender<CaptureEvent>, stats: &Stats) {
    while let Some(record) = ring.next() {
        Stats::inc(&stats.events_read);
        match decode(&record) {
            Ok(event) => {
                if out.try_send(event).is_err() {
                    Stats::inc(&stats.capture_queue_full);
                }
            }
            Err(error) => {
                Stats::inc(&stats.events_undecodable);
                tracing::debug!(%error, "undecodable ring buffer record");
            }
        }
    }
}
