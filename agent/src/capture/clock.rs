//! Kernel timestamps are CLOCK_MONOTONIC; outputs want wall-clock time. The offset between the
//! two is taken once at start (a later clock step shifts new calls only by that step).

/// Converts monotonic nanoseconds to Unix-epoch nanoseconds.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    offset_ns: i128,
}

impl Clock {
    pub fn new() -> Self {
        let mono = read(libc::CLOCK_MONOTONIC);
        let real = read(libc::CLOCK_REALTIME);
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
        read(libc::CLOCK_MONOTONIC).max(0) as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

fn read(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: clock_gettime writes into a valid timespec we own; the clocks always exist.
    unsafe {
        libc::clock_gettime(clock, &mut ts);
    }
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}
