//! Drains the kernel ring buffer into a bounded channel. It never blocks: when the next stage is
//! behind, events are dropped and counted, so the kernel side never waits on userspace and the
//! ring buffer keeps room.

use std::{sync::Arc, time::Duration};

use foldhash::HashSet;

use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, sync::mpsc, sync::watch};

use super::{
    decode::decode,
    event::{CaptureEvent, SocketId},
};
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

/// Sockets whose data events this reader dropped: their next data event is marked
/// `after_loss`, as the kernel marks events after its own drops. Bounded: past the cap every
/// socket's next event is marked (over-marking only costs a resynchronisation).
#[derive(Default)]
struct Losses {
    keys: HashSet<SocketId>,
    overflowed: bool,
}

const MAX_LOSS_KEYS: usize = 65_536;

impl Losses {
    fn record(&mut self, event: &CaptureEvent) {
        if let CaptureEvent::Data(d) = event {
            if self.keys.len() >= MAX_LOSS_KEYS {
                self.overflowed = true;
            } else {
                self.keys.insert(d.socket);
            }
        }
    }

    /// Marks a data event of a socket that lost an earlier one; returns its key if so.
    fn mark(&mut self, event: &mut CaptureEvent) -> Option<SocketId> {
        if self.keys.is_empty() && !self.overflowed {
            return None;
        }
        let CaptureEvent::Data(d) = event else {
            return None;
        };
        let key = d.socket;
        (self.overflowed || self.keys.contains(&key)).then(|| {
            d.after_loss = true;
            key
        })
    }

    fn delivered(&mut self, key: SocketId) {
        self.keys.remove(&key);
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
                let marked = losses.mark(&mut event);
                match out.try_send(event) {
                    Ok(()) => {
                        if let Some(key) = marked {
                            losses.delivered(key);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::event::{DataChunk, Direction, SocketPair, Task};

    /// A data event of socket `id` (on a descriptor of its own number).
    fn data(id: u64) -> CaptureEvent {
        CaptureEvent::Data(DataChunk {
            task: Task {
                tgid: 7,
                pid: 7,
                comm: "x".into(),
                cgroup_id: 1,
                ts_ns: 1,
            },
            fd: id as i32,
            socket: SocketId(id),
            sockets: SocketPair {
                local: "127.0.0.1:1".parse().unwrap(),
                remote: "127.0.0.1:2".parse().unwrap(),
            },
            direction: Direction::Ingress,
            op: "read",
            tls: None,
            total_len: 1,
            payload: vec![b'x'],
            after_loss: false,
        })
    }

    fn marked(event: &CaptureEvent) -> bool {
        matches!(event, CaptureEvent::Data(d) if d.after_loss)
    }

    #[test]
    fn the_next_event_after_a_drop_is_marked_once() {
        let mut losses = Losses::default();
        let mut other = data(4);
        assert_eq!(losses.mark(&mut other), None);
        losses.record(&data(3));
        let mut next = data(3);
        assert_eq!(losses.mark(&mut next), Some(SocketId(3)));
        assert!(marked(&next));
        let mut other = data(4);
        assert_eq!(losses.mark(&mut other), None);
        assert!(!marked(&other));
        losses.delivered(SocketId(3));
        let mut later = data(3);
        assert_eq!(losses.mark(&mut later), None);
    }
}
