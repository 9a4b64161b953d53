//! Drains the kernel ring buffer into a bounded channel. It never blocks: when the next stage is
//! behind, events are dropped and counted, so the kernel side never waits on userspace and the
//! ring buffer keeps room.

use std::{collections::HashSet, sync::Arc, time::Duration};

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
    let mut losses = Losses::default();
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                drain(guard.get_inner_mut(), &out, &stats, &mut losses);
                guard.clear_ready();
            }
            _ = tick.tick() => drain(ring.get_mut(), &out, &stats, &mut losses),
            _ = shutdown.changed() => {
                drain(ring.get_mut(), &out, &stats, &mut losses);
                return Ok(());
            }
        }
    }
}

/// Descriptors whose data events this reader dropped: their next data event is marked
/// `after_loss`, as the kernel marks events after its own drops. Bounded: past the cap every
/// descriptor's next event is marked (over-marking only costs a resynchronisation).
#[derive(Default)]
struct Losses {
    keys: HashSet<(u32, i32)>,
    overflowed: bool,
}

const MAX_LOSS_KEYS: usize = 65_536;

impl Losses {
    fn record(&mut self, event: &CaptureEvent) {
        if let CaptureEvent::Data(d) = event {
            if self.keys.len() >= MAX_LOSS_KEYS {
                self.overflowed = true;
            } else {
                self.keys.insert((d.task.tgid, d.fd));
            }
        }
    }

    fn mark(&mut self, event: &mut CaptureEvent) {
        if let CaptureEvent::Data(d) = event
            && (self.overflowed || self.keys.contains(&(d.task.tgid, d.fd)))
        {
            d.after_loss = true;
        }
    }

    fn delivered(&mut self, tgid: u32, fd: i32) {
        self.keys.remove(&(tgid, fd));
        if self.keys.is_empty() {
            self.overflowed = false;
        }
    }
}

fn drain(
    ring: &mut RingBuf<MapData>,
    out: &mpsc::Sender<CaptureEvent>,
    stats: &Stats,
    losses: &mut Losses,
) {
    while let Some(record) = ring.next() {
        Stats::inc(&stats.events_read);
        match decode(&record) {
            Ok(mut event) => {
                if matches!(&event, CaptureEvent::Data(d) if d.after_loss) {
                    Stats::inc(&stats.events_after_loss);
                }
                let any_loss = !losses.keys.is_empty() || losses.overflowed;
                if any_loss {
                    losses.mark(&mut event);
                }
                let key = match &event {
                    CaptureEvent::Data(d) if any_loss && d.after_loss => Some((d.task.tgid, d.fd)),
                    _ => None,
                };
                match out.try_send(event) {
                    Ok(()) => {
                        if let Some((tgid, fd)) = key {
                            losses.delivered(tgid, fd);
                        }
                    }
                    Err(
                        mpsc::error::TrySendError::Full(event)
                        | mpsc::error::TrySendError::Closed(event),
                    ) => {
                        Stats::inc(&stats.capture_queue_full);
                        losses.record(&event);
                    }
                }
            }
            Err(error) => {
                Stats::inc(&stats.events_undecodable);
                tracing::debug!(%error, "undecodable ring buffer record");
            }
        }
    }
}
