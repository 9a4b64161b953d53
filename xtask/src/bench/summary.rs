//! From rounds to the numbers a reader compares: medians over rounds and with/without ratios.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    scenario::{Round, ScenarioRun, WithAgent},
    variant::Variant,
};

/// A scenario's medians.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioSummary {
    pub name: &'static str,
    /// How the agent ran (`json`, `otlp-grpc`, `otlp-http`, `floor`, `json-idle`).
    pub variant: &'static str,
    pub variant_description: &'static str,
    pub description: &'static str,
    pub saturation_rps_without: f64,
    pub saturation_rps_with: f64,
    /// With / without.
    pub saturation_ratio: f64,
    pub fixed_rate_rps: f64,
    pub p50_ms_without: f64,
    pub p50_ms_with: f64,
    pub p99_ms_without: f64,
    pub p99_ms_with: f64,
    /// (with / without - 1) x 100.
    pub p99_added_percent: f64,
    /// Calls the agent reported per request made (one per observed end).
    pub calls_per_request: f64,
    pub agent_cpu_us_per_call: f64,
    /// CPU the traced server used in addition (the probes run in its context), per request.
    pub server_cpu_added_us_per_request: f64,
    pub bpf_ns_per_call: f64,
    pub bpf_ns_per_request: f64,
    /// Per program, most costly first.
    pub bpf_programs: Vec<ProgramTime>,
    pub max_rss_mib_under_load: f64,
    /// Summed over the rounds' fixed-rate runs.
    pub drops_at_fixed_rate: BTreeMap<String, u64>,
    /// Summed over the rounds' saturation runs.
    pub drops_at_saturation: BTreeMap<String, u64>,
    pub calls_lost_at_saturation_percent: f64,
    /// Bytes the OTLP receiver read from the agent per call reported (export variants).
    pub exported_bytes_per_call: Option<f64>,
    /// Calls reported minus spans received, summed over the fixed-rate runs (export variants).
    pub spans_missing_at_fixed_rate: Option<u64>,
    /// The same over the saturation runs.
    pub spans_missing_at_saturation: Option<u64>,
}

/// One BPF program's share of a request.
#[derive(Clone, Debug, Serialize)]
pub struct ProgramTime {
    pub name: String,
    pub runs_per_request: f64,
    pub ns_per_run: f64,
    pub ns_per_request: f64,
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

pub const MIB: f64 = 1024.0 * 1024.0;

/// Ends of a request the agent sees at saturation: wrk and h2load use plain sockets or
/// OpenSSL, whose probes see them too (unlike oha's rustls in the fixed-rate runs).
const SATURATION_ENDS: u64 = 2;

fn sum_drops<'a>(maps: impl Iterator<Item = &'a BTreeMap<String, u64>>) -> BTreeMap<String, u64> {
    let mut total = BTreeMap::new();
    for map in maps {
        for (name, n) in map {
            *total.entry(name.clone()).or_insert(0) += n;
        }
    }
    total
}

/// The medians of `run` with the agent in `variant`, against the same rounds without it.
pub fn summarise(run: &ScenarioRun, variant: Variant) -> ScenarioSummary {
    let pairs: Vec<(&Round, &WithAgent)> = run
        .rounds
        .iter()
        .filter_map(|r| Some((r, r.with(variant)?)))
        .collect();
    let of = |f: &dyn Fn(&Round, &WithAgent) -> f64| {
        median(pairs.iter().map(|(r, w)| f(r, w)).collect())
    };
    let saturation_rps_without = of(&|r, _| r.saturation_without.requests_per_second);
    let saturation_rps_with = of(&|_, w| w.saturation.requests_per_second);
    let p99_ms_without = of(&|r, _| r.fixed_without.at(99.0));
    let p99_ms_with = of(&|_, w| w.fixed.at(99.0));
    let agent_cpu_us_per_call =
        of(&|_, w| w.agent.agent_cpu_seconds * 1e6 / w.agent.calls.max(1) as f64);
    ScenarioSummary {
        name: run.name,
        variant: variant.name(),
        variant_description: variant.description(),
        description: run.description,
        saturation_rps_without,
        saturation_rps_with,
        saturation_ratio: saturation_rps_with / saturation_rps_without,
        fixed_rate_rps: of(&|_, w| w.fixed.requests_per_second),
        p50_ms_without: of(&|r, _| r.fixed_without.at(50.0)),
        p50_ms_with: of(&|_, w| w.fixed.at(50.0)),
        p99_ms_without,
        p99_ms_with,
        p99_added_percent: (p99_ms_with / p99_ms_without - 1.0) * 100.0,
        calls_per_request: of(&|_, w| w.agent.calls as f64 / w.fixed.requests.max(1) as f64),
        agent_cpu_us_per_call,
        server_cpu_added_us_per_request: of(&|r, w| {
            (w.server_cpu_seconds / w.fixed.requests.max(1) as f64
                - r.server_cpu_seconds_without / r.fixed_without.requests.max(1) as f64)
                * 1e6
        }),
        bpf_ns_per_call: of(&|_, w| w.agent.bpf_nanoseconds as f64 / w.agent.calls.max(1) as f64),
        bpf_ns_per_request: of(&|_, w| {
            w.agent.bpf_nanoseconds as f64 / w.fixed.requests.max(1) as f64
        }),
        bpf_programs: programs(&pairs),
        max_rss_mib_under_load: pairs
            .iter()
            .map(|(_, w)| w.agent.max_rss_bytes as f64 / MIB)
            .fold(0.0, f64::max),
        drops_at_fixed_rate: sum_drops(pairs.iter().map(|(_, w)| &w.agent.drops)),
        drops_at_saturation: sum_drops(pairs.iter().map(|(_, w)| &w.saturation_drops)),
        calls_lost_at_saturation_percent: of(&|_, w| {
            let expected = w.saturation.requests * SATURATION_ENDS;
            (1.0 - w.saturation_calls as f64 / expected.max(1) as f64).max(0.0) * 100.0
        }),
        exported_bytes_per_call: variant.export().map(|_| {
            of(&|_, w| {
                let bytes = w.agent.exported.map_or(0, |e| e.wire_bytes);
                bytes as f64 / w.agent.calls.max(1) as f64
            })
        }),
        spans_missing_at_fixed_rate: variant.export().map(|_| {
            pairs
                .iter()
                .map(|(_, w)| missing(w.agent.calls, w.agent.exported.as_ref()))
                .sum()
        }),
        spans_missing_at_saturation: variant.export().map(|_| {
            pairs
                .iter()
                .map(|(_, w)| missing(w.saturation_calls, w.saturation_exported.as_ref()))
                .sum()
        }),
    }
}

/// Calls the agent reported that the receiver did not get as spans.
fn missing(calls: u64, exported: Option<&super::sink::Received>) -> u64 {
    calls.saturating_sub(exported.map_or(0, |e| e.spans))
}

/// Where the kernel-side time goes: each program's runs per request and time per run, over
/// every round's fixed-rate run.
fn programs(pairs: &[(&Round, &WithAgent)]) -> Vec<ProgramTime> {
    let requests: u64 = pairs.iter().map(|(_, w)| w.fixed.requests).sum();
    let mut totals: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (_, w) in pairs {
        for (name, (ns, runs)) in &w.agent.bpf_programs {
            let entry = totals.entry(name).or_default();
            entry.0 += ns;
            entry.1 += runs;
        }
    }
    let mut programs: Vec<ProgramTime> = totals
        .into_iter()
        .filter(|(_, (_, runs))| *runs > 0)
        .map(|(name, (ns, runs))| ProgramTime {
            name: name.to_string(),
            runs_per_request: runs as f64 / requests.max(1) as f64,
            ns_per_run: ns as f64 / runs as f64,
            ns_per_request: ns as f64 / requests.max(1) as f64,
        })
        .collect();
    programs.sort_by(|a, b| b.ns_per_request.total_cmp(&a.ns_per_request));
    programs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
