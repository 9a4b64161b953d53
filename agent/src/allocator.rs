//! When the allocator gives memory back to the kernel. mimalloc (the global allocator, see
//! main.rs) keeps freed pages for a while (its purge delay, 1 s in mimalloc 3) and purges them
//! only on later allocator activity, so the ~40 MiB that start-up frees (BTF parsing, the first
//! /proc and ELF scans, loading the programs) stayed resident on an idle node. During start-up
//! freed pages go back at once; once capture runs the default delay returns, because purging
//! at every free under load cost ~15% more agent CPU (OTLP export at 10,000 calls/s).

use std::sync::atomic::{AtomicI64, Ordering};

/// `mi_option_purge_delay` of mimalloc.h (v3, the version libmimalloc-sys builds), which the
/// sys crate does not name; the enum keeps deprecated entries so that its numbers stay.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The purge delay before start-up changed it (milliseconds; -1 while unknown).
static USUAL_PURGE_DELAY_MS: AtomicI64 = AtomicI64::new(-1);

/// Freed memory goes back to the kernel at once (call first thing in `main`).
pub fn starting() {
    USUAL_PURGE_DELAY_MS.store(purge_delay(), Ordering::Relaxed);
    set_purge_delay(0);
}

/// Start-up is over: the allocator keeps freed pages for reuse again.
pub fn started() {
    let usual = USUAL_PURGE_DELAY_MS.load(Ordering::Relaxed);
    if usual >= 0 {
        set_purge_delay(usual);
    }
}

fn purge_delay() -> i64 {
    #[allow(unsafe_code)]
    // SAFETY: reads a process-wide option of the allocator; no pointer is passed.
    let ms = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
    ms as i64
}

fn set_purge_delay(ms: i64) {
    #[allow(unsafe_code)]
    // SAFETY: sets a process-wide option of the allocator: no pointer is passed, and mimalloc
    // reads its options atomically, from any thread at any time.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms as _);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The number names the option meant (its default is mimalloc 3's documented purge delay,
    /// 1000 ms), start-up sets it to 0 and the end of start-up restores it.
    #[test]
    fn start_up_purges_at_once_and_then_restores_the_delay() {
        assert_eq!(purge_delay(), 1000);
        starting();
        assert_eq!(purge_delay(), 0);
        started();
        assert_eq!(purge_delay(), 1000);
    }
}
