//! The report: JSON for machines, a Markdown table for the README, and the targets (issue 22)
//! checked against what was measured (met or missed, and by how much). The kernel-side cost
//! is judged against the floor: the same load with empty programs at the same hooks.

use std::fmt::Write as _;

use serde::Serialize;

use super::{
    phases::{Connections, Sustained},
    scenario::ScenarioRun,
    summary::{MIB, ScenarioSummary, median},
    variant::Variant,
};

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub memory_mib: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Startup {
    pub runs: usize,
    pub median_seconds: f64,
    pub max_seconds: f64,
    pub max_peak_rss_mib: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub name: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
    /// How far from the target, when missed.
    pub missed_by: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub date: String,
    pub commit: String,
    pub machine: Machine,
    pub rounds: u32,
    pub seconds_per_run: u64,
    pub fixed_rate_rps: u32,
    pub summaries: Vec<ScenarioSummary>,
    pub startup: Startup,
    pub sustained: Option<Sustained>,
    pub connections: Option<Connections>,
    pub targets: Vec<Target>,
    pub runs: Vec<ScenarioRun>,
}

pub fn startup(runs: &[ScenarioRun]) -> Startup {
    let agents: Vec<_> = runs
        .iter()
        .flat_map(|r| {
            r.rounds
                .iter()
                .flat_map(|round| round.with.iter().map(|w| &w.agent))
        })
        .collect();
    Startup {
        runs: agents.len(),
        median_seconds: median(agents.iter().map(|a| a.startup_seconds).collect()),
        max_seconds: agents.iter().map(|a| a.startup_seconds).fold(0.0, f64::max),
        max_peak_rss_mib: agents
            .iter()
            .map(|a| a.startup_peak_rss_bytes as f64 / MIB)
            .fold(0.0, f64::max),
    }
}

/// A target that is an upper bound.
fn at_most(name: &str, value: f64, limit: f64, unit: &str) -> Target {
    let met = value <= limit;
    Target {
        name: name.to_string(),
        target: format!("<= {} {unit}", num(limit)),
        measured: format!("{} {unit}", num(value)),
        met,
        missed_by: (!met).then(|| {
            format!(
                "+{} {unit} ({:.1}x the target)",
                num(value - limit),
                value / limit
            )
        }),
    }
}

/// Numbers as a reader wants them: three significant digits at most, no exponent.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    let magnitude = v.abs();
    if magnitude >= 100.0 {
        format!("{v:.0}")
    } else if magnitude >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The floor's server CPU added per request in the scenario of `s`.
fn floor_of<'a>(
    summaries: &'a [ScenarioSummary],
    s: &ScenarioSummary,
) -> Option<&'a ScenarioSummary> {
    summaries
        .iter()
        .find(|f| f.name == s.name && f.variant == Variant::Floor.name())
}

/// Server CPU added per request with the agent, as a multiple of the floor's.
pub fn kernel_cost_ratio(summaries: &[ScenarioSummary], s: &ScenarioSummary) -> Option<f64> {
    let floor = floor_of(summaries, s)?;
    Some(s.server_cpu_added_us_per_request / floor.server_cpu_added_us_per_request)
}

pub fn targets(
    summaries: &[ScenarioSummary],
    startup: &Startup,
    sustained: Option<&Sustained>,
    connections: Option<&Connections>,
) -> Vec<Target> {
    let mut targets = Vec::new();
    let captured = || {
        summaries
            .iter()
            .filter(|s| s.variant != Variant::Floor.name())
    };
    for s in captured().filter(|s| s.variant != Variant::JsonIdle.name()) {
        let limit = if s.variant == Variant::Json.name() {
            3.0
        } else {
            4.0
        };
        targets.push(at_most(
            &format!("{} ({}): agent CPU per call", s.name, s.variant),
            s.agent_cpu_us_per_call,
            limit,
            "us",
        ));
    }
    for s in captured().filter(|s| s.variant == Variant::Json.name()) {
        if let Some(ratio) = kernel_cost_ratio(summaries, s) {
            targets.push(at_most(
                &format!("{}: server CPU added per request, x the floor's", s.name),
                ratio,
                1.3,
                "x",
            ));
        }
    }
    for s in captured().filter(|s| s.variant != Variant::JsonIdle.name()) {
        targets.push(at_most(
            &format!("{} ({}): p99 added at a fixed rate", s.name, s.variant),
            s.p99_added_percent,
            5.0,
            "%",
        ));
    }
    if let Some(sustained) = sustained {
        let drops: u64 = sustained.drops.values().sum();
        let missing = sustained
            .calls
            .saturating_sub(sustained.exported.map_or(0, |e| e.spans));
        targets.push(at_most(
            &format!(
                "drops and spans missing at {} calls/s for {} s (OTLP/gRPC)",
                num(sustained.calls_per_second),
                sustained.seconds
            ),
            (drops + missing) as f64,
            0.0,
            "events",
        ));
    }
    if let Some(c) = connections {
        targets.push(at_most(
            "RSS idle after start",
            c.rss_at_start_bytes as f64 / MIB,
            64.0,
            "MiB",
        ));
        targets.push(at_most(
            &format!(
                "RSS with {} open connections and {} endpoints",
                c.open_connections, c.server_endpoints_in_inventory
            ),
            c.max_rss_bytes as f64 / MIB,
            96.0,
            "MiB",
        ));
    }
    targets.push(at_most(
        "start-up time (to ready)",
        startup.max_seconds,
        2.0,
        "s",
    ));
    targets.push(at_most(
        "start-up peak RSS",
        startup.max_peak_rss_mib,
        150.0,
        "MiB",
    ));
    targets
}

fn drops_text(drops: &std::collections::BTreeMap<String, u64>) -> String {
    if drops.is_empty() {
        return "0".to_string();
    }
    drops
        .iter()
        .map(|(name, n)| format!("{n} {name}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One scenario and variant's row of the table.
fn summary_row(md: &mut String, report: &Report, s: &ScenarioSummary) {
    let floor = s.variant == Variant::Floor.name();
    let captured = |text: String| if floor { "-".to_string() } else { text };
    let ratio = match kernel_cost_ratio(&report.summaries, s) {
        Some(r) if !floor => format!(" ({}x)", num(r)),
        _ => String::new(),
    };
    let _ = writeln!(
        md,
        "| {} | {} | {} -> {} ({}x) | {} -> {} | {} -> {} ({}{} %) | {} | {} | {} us{} | {} | {} | {} MiB | {} | {} | {} |",
        s.name,
        s.variant_description,
        num(s.saturation_rps_without),
        num(s.saturation_rps_with),
        num(s.saturation_ratio),
        num(s.p50_ms_without),
        num(s.p50_ms_with),
        num(s.p99_ms_without),
        num(s.p99_ms_with),
        if s.p99_added_percent >= 0.0 { "+" } else { "" },
        num(s.p99_added_percent),
        captured(num(s.calls_per_request)),
        captured(format!("{} us", num(s.agent_cpu_us_per_call))),
        num(s.server_cpu_added_us_per_request),
        ratio,
        captured(format!("{} ns", num(s.bpf_ns_per_call))),
        s.exported_bytes_per_call.map_or("-".to_string(), num),
        num(s.max_rss_mib_under_load),
        drops_text(&s.drops_at_fixed_rate),
        match (s.spans_missing_at_fixed_rate, s.spans_missing_at_saturation) {
            (Some(fixed), Some(saturated)) => format!("{fixed}, {saturated}"),
            _ => "-".to_string(),
        },
        captured(format!("{} %", num(s.calls_lost_at_saturation_percent))),
    );
}

/// The Markdown the README carries.
pub fn markdown(report: &Report) -> String {
    let mut md = String::new();
    let m = &report.machine;
    let _ = writeln!(
        md,
        "Measured {} on `{}`: {} CPUs ({}), {} MiB, Linux {}. {} rounds of {} s per load: without \
         the agent, with it writing JSON lines (to /dev/null), with it exporting every span over \
         OTLP/gRPC and OTLP/HTTP to a local receiver (no local output), and the floor (empty \
         programs at every tracepoint and uprobe the agent uses), in an order that rotates \
         between rounds; medians over the rounds; the SQLite inventory on in every agent run. \
         Fixed rate: {} requests/s (oha, latency corrected for coordinated omission); \
         saturation: wrk (HTTP/1.1) or h2load (HTTP/2). Both ends are traced where the client \
         uses plain sockets.\n",
        report.date,
        report.commit,
        m.cpus,
        m.cpu_model,
        m.memory_mib,
        m.kernel,
        report.rounds,
        report.seconds_per_run,
        report.fixed_rate_rps
    );
    md.push_str(
        "| Scenario | Agent | Saturation req/s without -> with (ratio) | p50 ms without -> with | p99 ms without -> with (added) | Calls per request | Agent CPU per call | Server CPU added per request (x floor) | BPF time per call | Bytes exported per call | Agent RSS under load | Drops at fixed rate | Spans missing (fixed, saturation) | Calls lost at saturation |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for s in &report.summaries {
        summary_row(&mut md, report, s);
    }
    md.push_str(
        "\nWhere the kernel-side time goes (JSON lines run; runs per request x time per run):\n\n",
    );
    for s in report
        .summaries
        .iter()
        .filter(|s| s.variant == Variant::Json.name())
    {
        let programs: Vec<String> = s
            .bpf_programs
            .iter()
            .take(6)
            .map(|p| {
                format!(
                    "`{}` {} x {} ns",
                    p.name,
                    num(p.runs_per_request),
                    num(p.ns_per_run)
                )
            })
            .collect();
        let _ = writeln!(md, "- {}: {}", s.name, programs.join(", "));
    }
    md.push('\n');
    if let Some(s) = &report.sustained {
        let _ = writeln!(
            md,
            "Sustained, exporting over OTLP/gRPC: {} requests/s for {} s ({} calls/s reported, {} \
             spans received): drops {}; agent CPU {} % of one core; RSS at most {} MiB.\n",
            num(s.requests_per_second),
            s.seconds,
            num(s.calls_per_second),
            s.exported.map_or(0, |e| e.spans),
            drops_text(&s.drops),
            num(s.agent_cpu_percent_of_a_core),
            num(s.max_rss_bytes as f64 / MIB)
        );
    }
    if let Some(c) = &report.connections {
        let _ = writeln!(
            md,
            "Connections (exporting over OTLP/gRPC): agent RSS {} MiB idle after start, {} MiB with {} open keep-alive connections \
             that called {} endpoints ({} server endpoints in the inventory), at most {} MiB while \
             {} new connections/s came and went ({} requests), {} MiB at the end; drops {}. With \
             the connections open: {} MiB of BPF maps mapped into the agent (the ring buffer, \
             counted twice by RSS), {} MiB anonymous (heap, stacks), {} MiB of files (binary, \
             libraries).\n",
            num(c.rss_at_start_bytes as f64 / MIB),
            num(c.rss_with_open_connections_bytes as f64 / MIB),
            c.open_connections,
            c.endpoints_called,
            c.server_endpoints_in_inventory,
            num(c.max_rss_bytes as f64 / MIB),
            c.new_connections_per_second,
            c.new_connection_requests,
            num(c.rss_at_end_bytes as f64 / MIB),
            drops_text(&c.drops),
            num(c.breakdown_with_open_connections.bpf_maps as f64 / MIB),
            num(c.breakdown_with_open_connections.anonymous as f64 / MIB),
            num(c.breakdown_with_open_connections.files as f64 / MIB),
        );
    }
    let st = &report.startup;
    let _ = writeln!(
        md,
        "Start-up (spawn to ready, {} starts): median {} s, at most {} s; peak RSS at most {} MiB.\n",
        st.runs,
        num(st.median_seconds),
        num(st.max_seconds),
        num(st.max_peak_rss_mib)
    );
    md.push_str("| Target | Goal | Measured | Met |\n|---|---|---|---|\n");
    for t in &report.targets {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            t.name,
            t.target,
            t.measured,
            match &t.missed_by {
                None => "yes".to_string(),
                Some(by) => format!("**no**, by {by}"),
            }
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missed_target_says_by_how_much() {
        let t = at_most("x", 7.5, 5.0, "us");
        assert!(!t.met);
        assert_eq!(t.missed_by.as_deref(), Some("+2.50 us (1.5x the target)"));
        assert!(at_most("z", 400.0, 500.0, "ns").met);
    }
}
