//! The agent's CPU priority. `idle` puts every agent thread under SCHED_IDLE: the agent then
//! runs only on CPU time the host's applications leave, so it never delays them (on a 2-CPU
//! machine at 5,000 requests/s, normal priority raised nginx's p99 latency about fourfold and
//! SCHED_IDLE left it unchanged: `cargo xtask bench`). The price: on a saturated host the
//! agent falls behind and drops events (counted and exported, never silent).

use thread_priority::{
    NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
    set_thread_priority_and_policy, thread_native_id,
};

/// How the agent's threads are scheduled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CpuPriority {
    /// The scheduler's default: a fair share of the CPU, like the applications.
    #[default]
    Normal,
    /// SCHED_IDLE: only CPU time nothing else wants.
    Idle,
}

#[derive(Debug, thiserror::Error)]
#[error("could not set the agent's CPU priority to {priority:?}: {reason}")]
pub struct PriorityError {
    priority: CpuPriority,
    reason: String,
}

/// Applies `priority` to the calling thread. Call it before any other thread starts: threads
/// inherit their creator's policy, so the runtime's workers and every later thread get it too.
pub fn apply(priority: CpuPriority) -> Result<(), PriorityError> {
    let policy = match priority {
        CpuPriority::Normal => return Ok(()),
        CpuPriority::Idle => ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
    };
    set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, policy).map_err(|e| {
        PriorityError {
            priority,
            reason: format!("{e:?}"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SCHED_IDLE needs no privilege: a thread may always lower itself.
    #[test]
    fn idle_is_applied_to_the_thread_and_inherited() {
        std::thread::spawn(|| {
            apply(CpuPriority::Idle).expect("applies");
            let child = std::thread::spawn(|| {
                std::fs::read_to_string("/proc/thread-self/sched").expect("sched")
            })
            .join()
            .expect("joins");
            // SCHED_IDLE is policy 5.
            assert!(
                child
                    .lines()
                    .any(|l| l.starts_with("policy") && l.trim_end().ends_with(" 5")),
                "{child}"
            );
        })
        .join()
        .expect("joins");
    }
}
