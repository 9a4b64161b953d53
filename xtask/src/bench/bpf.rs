//! Kernel-side probe time: the kernel's BPF run-time statistics (`kernel.bpf_stats_enabled`),
//! read through bpftool for the programs the agent loaded.

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
};

use anyhow::Context as _;

use crate::shell;

const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Turns the statistics on while it lives (they cost a little on every program run), and
/// restores the previous setting when dropped.
pub struct StatsEnabled {
    before: String,
}

impl StatsEnabled {
    pub fn new() -> anyhow::Result<Self> {
        let before = std::fs::read_to_string(SYSCTL).context("reading kernel.bpf_stats_enabled")?;
        std::fs::write(SYSCTL, "1").context("enabling kernel.bpf_stats_enabled")?;
        Ok(Self { before })
    }
}

impl Drop for StatsEnabled {
    fn drop(&mut self) {
        let _ = std::fs::write(SYSCTL, self.before.trim());
    }
}

/// Run time and runs, summed over the programs a process holds.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunTime {
    pub nanoseconds: u64,
    pub runs: u64,
}

impl std::ops::Sub for RunTime {
    type Output = RunTime;
    fn sub(self, earlier: RunTime) -> RunTime {
        RunTime {
            nanoseconds: self.nanoseconds.saturating_sub(earlier.nanoseconds),
            runs: self.runs.saturating_sub(earlier.runs),
        }
    }
}

/// The ids of every loaded BPF program (the agent's are those that appear when it starts:
/// bpftool here does not list a program's holders).
pub fn program_ids() -> anyhow::Result<BTreeSet<u64>> {
    Ok(programs()?
        .iter()
        .filter_map(|p| p["id"].as_u64())
        .collect())
}

/// Run time and runs of each of the programs `ids`, by program name (a name may cover several
/// programs: summed).
pub fn run_times(ids: &BTreeSet<u64>) -> anyhow::Result<BTreeMap<String, RunTime>> {
    Ok(by_name(&programs()?, ids))
}

/// `later - earlier`, per name.
pub fn difference(
    later: &BTreeMap<String, RunTime>,
    earlier: &BTreeMap<String, RunTime>,
) -> BTreeMap<String, RunTime> {
    later
        .iter()
        .map(|(name, t)| {
            (
                name.clone(),
                *t - earlier.get(name).copied().unwrap_or_default(),
            )
        })
        .collect()
}

pub fn total(times: &BTreeMap<String, RunTime>) -> RunTime {
    times.values().fold(RunTime::default(), |sum, t| RunTime {
        nanoseconds: sum.nanoseconds + t.nanoseconds,
        runs: sum.runs + t.runs,
    })
}

fn programs() -> anyhow::Result<Vec<serde_json::Value>> {
    let json = shell::output(Command::new("bpftool").args(["prog", "show", "--json"]))?;
    serde_json::from_str(&json).context("bpftool's program list does not parse")
}

fn by_name(programs: &[serde_json::Value], ids: &BTreeSet<u64>) -> BTreeMap<String, RunTime> {
    let mut times: BTreeMap<String, RunTime> = BTreeMap::new();
    for p in programs {
        if !p["id"].as_u64().is_some_and(|id| ids.contains(&id)) {
            continue;
        }
        let name = p["name"].as_str().unwrap_or("?").to_string();
        let entry = times.entry(name).or_default();
        entry.nanoseconds += p["run_time_ns"].as_u64().unwrap_or(0);
        entry.runs += p["run_cnt"].as_u64().unwrap_or(0);
    }
    times
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_programs_asked_for() {
        let json = r#"[
            {"id":1,"name":"a","run_time_ns":100,"run_cnt":2},
            {"id":2,"name":"b","run_time_ns":50,"run_cnt":1},
            {"id":3,"name":"a","run_time_ns":999,"run_cnt":9},
            {"id":4,"name":"a"}
        ]"#;
        let programs: Vec<serde_json::Value> = serde_json::from_str(json).expect("parses");
        let times = by_name(&programs, &BTreeSet::from([1, 2, 4]));
        assert_eq!(times["a"].nanoseconds, 100);
        let total = total(&times);
        assert_eq!((total.nanoseconds, total.runs), (150, 3));
    }
}
