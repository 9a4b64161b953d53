//! Kernel timestamps are CLOCK_MONOTONIC; outputs want wall-clock time. The offset between the
//! two is taken once at start (a later clock step shifts new calls only by that step).

use rustix::time::{ClockId, clock_gettime};

/// Converts monotonic nanoseconds to Unix-epoch nanoseconds.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    offset_ns: i128,
}

impl Clock {
    pub fn new() -> Self {
        let mono = read(ClockId::Monotonic);
        let real = read(ClockId::Realtime);
        Self {
            offset_ns: real - mono,
        }
    }

    /// A clock with a fixed offset (tests).
    pub fn with_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    pub fn to_unix_ns(&self, monotonic_ns: u64) -> u64 {
        (monotonic_ns as i128 + self.offset_ns).max(0) as u64
    }

    /// The current monotonic time, in the kernel's clock.
    pub fn now_monotonic() -> u64 {
        read(ClockId::Monotonic).max(0) as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

fn read(clock: ClockId) -> i128 {
    let ts = clock_gettime(clock);
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}
