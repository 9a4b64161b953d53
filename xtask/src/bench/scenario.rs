//! One scenario: a server, its load, and the same load measured with and without the agent in
//! alternating rounds.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::bail;
use serde::Serialize;

use super::{
    Settings,
    agent::{Agent, Counters},
    bpf,
    load::{self, FixedRate, RateOptions, Saturation},
    proc, profile,
    servers::{self, Assets, ServerKind},
    sink::Received,
    variant::Variant,
};

/// A scenario of the benchmark.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub description: &'static str,
    pub server: ServerKind,
    pub url_path: &'static str,
    /// Ends of a fixed-rate request the agent can see: 2 when oha is traced too (plain
    /// sockets), 1 when only the server is (oha's TLS is rustls, which has no probes).
    pub observed_ends: u64,
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "nginx-http",
        description: "nginx, HTTP/1.1 keep-alive, plaintext",
        server: ServerKind::NginxHttp,
        url_path: "/api/items",
        observed_ends: 2,
    },
    Scenario {
        name: "nginx-https",
        description: "nginx, HTTP/1.1 keep-alive over TLS (OpenSSL)",
        server: ServerKind::NginxHttps,
        url_path: "/api/items",
        observed_ends: 1,
    },
    Scenario {
        name: "nginx-h2-tls",
        description: "nginx, HTTP/2 over TLS (OpenSSL)",
        server: ServerKind::NginxHttp2Tls,
        url_path: "/api/items",
        observed_ends: 1,
    },
    Scenario {
        name: "go-http",
        description: "Go net/http JSON service, HTTP/1.1 keep-alive, plaintext",
        server: ServerKind::GoHttp,
        url_path: "/users/42",
        observed_ends: 2,
    },
];

impl Scenario {
    fn url(&self, port: u16) -> String {
        let scheme = match self.server {
            ServerKind::NginxHttps | ServerKind::NginxHttp2Tls => "https",
            ServerKind::NginxHttp | ServerKind::GoHttp => "http",
        };
        format!("{scheme}://127.0.0.1:{port}{}", self.url_path)
    }

    fn http2(&self) -> bool {
        self.server == ServerKind::NginxHttp2Tls
    }
}

/// One fixed-rate run with the agent.
#[derive(Clone, Debug, Serialize)]
pub struct AgentRun {
    pub calls: u64,
    pub agent_cpu_seconds: f64,
    pub bpf_nanoseconds: u64,
    pub bpf_program_runs: u64,
    /// Per program name: (nanoseconds, runs).
    pub bpf_programs: BTreeMap<String, (u64, u64)>,
    pub max_rss_bytes: u64,
    pub startup_seconds: f64,
    pub startup_peak_rss_bytes: u64,
    pub drops: BTreeMap<String, u64>,
    /// What the OTLP receiver got, for the export variants.
    pub exported: Option<Received>,
}

/// The loads of one round with the agent in one variant.
#[derive(Clone, Debug, Serialize)]
pub struct WithAgent {
    pub variant: Variant,
    pub fixed: FixedRate,
    pub server_cpu_seconds: f64,
    pub agent: AgentRun,
    pub saturation: Saturation,
    pub saturation_calls: u64,
    pub saturation_drops: BTreeMap<String, u64>,
    pub saturation_exported: Option<Received>,
}

/// One round: the same loads without the agent and with it in each variant.
#[derive(Clone, Debug, Serialize)]
pub struct Round {
    pub fixed_without: FixedRate,
    pub server_cpu_seconds_without: f64,
    pub saturation_without: Saturation,
    pub with: Vec<WithAgent>,
}

impl Round {
    pub fn with(&self, variant: Variant) -> Option<&WithAgent> {
        self.with.iter().find(|w| w.variant == variant)
    }
}

/// Every round of a scenario.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioRun {
    pub name: &'static str,
    pub description: &'static str,
    pub rounds: Vec<Round>,
}

pub fn run(
    scenario: &Scenario,
    settings: &Settings,
    assets: &Assets,
    port: u16,
    work: &Path,
) -> anyhow::Result<ScenarioRun> {
    let server = servers::start(scenario.server, port, assets)?;
    let url = scenario.url(port);
    let options = RateOptions {
        http2: scenario.http2(),
        no_keepalive: false,
    };
    // Warm the server (and the page cache of every binary) before measuring.
    load::oha(
        &settings.oha,
        &url,
        settings.rate,
        Duration::from_secs(3),
        options,
    )?;
    let mut rounds = Vec::new();
    for round in 0..settings.rounds {
        println!(
            "bench: {} round {}/{}",
            scenario.name,
            round + 1,
            settings.rounds
        );
        // Rotate the order between rounds, so a drift of the machine favours no side.
        let mut order: Vec<Option<Variant>> = std::iter::once(None)
            .chain(settings.variants.iter().copied().map(Some))
            .collect();
        let turn = round as usize % order.len();
        order.rotate_left(turn);
        let mut fixed_without = None;
        let mut fixed_with = Vec::new();
        for side in &order {
            match side {
                None => fixed_without = Some(fixed_alone(settings, &url, options, &server)?),
                Some(variant) => {
                    let run = fixed_with_agent(settings, *variant, &url, options, &server, work)?;
                    if variant.captures() {
                        check_capture(scenario, &run.0, run.2.calls)?;
                    }
                    fixed_with.push((*variant, run));
                }
            }
        }
        let mut saturation_without = None;
        let mut saturated = Vec::new();
        for side in &order {
            match side {
                None => saturation_without = Some(saturation(scenario, settings, &url)?),
                Some(variant) => {
                    saturated.push(with_agent(settings, *variant, port, work, || {
                        saturation(scenario, settings, &url)
                    })?)
                }
            }
        }
        let with = fixed_with
            .into_iter()
            .zip(saturated)
            .map(
                |((variant, (fixed, server_cpu, agent)), (saturation, counters))| WithAgent {
                    variant,
                    fixed,
                    server_cpu_seconds: server_cpu,
                    agent,
                    saturation,
                    saturation_calls: counters.calls(),
                    saturation_drops: counters.drops(),
                    saturation_exported: counters.1,
                },
            )
            .collect();
        let (Some((fixed_without, server_cpu_without)), Some(saturation_without)) =
            (fixed_without, saturation_without)
        else {
            bail!("a round ran no load without the agent");
        };
        rounds.push(Round {
            fixed_without,
            server_cpu_seconds_without: server_cpu_without,
            saturation_without,
            with,
        });
    }
    if let Some(out) = &settings.profile_to {
        for variant in [Variant::Json, Variant::OtlpGrpc] {
            let path = profile::agent(
                settings,
                variant,
                scenario.name,
                &url,
                options,
                port,
                work,
                out,
            )?;
            println!("bench: profile in {}", path.display());
        }
    }
    Ok(ScenarioRun {
        name: scenario.name,
        description: scenario.description,
        rounds,
    })
}

/// A capture that saw far fewer calls than were made is broken, not fast: stop there.
fn check_capture(scenario: &Scenario, run: &FixedRate, calls: u64) -> anyhow::Result<()> {
    let expected = run.requests * scenario.observed_ends;
    if calls * 10 < expected * 9 {
        bail!(
            "{}: the agent reported {calls} calls for {} requests ({} expected): capture is broken",
            scenario.name,
            run.requests,
            expected
        );
    }
    Ok(())
}

fn saturation(scenario: &Scenario, settings: &Settings, url: &str) -> anyhow::Result<Saturation> {
    if scenario.http2() {
        load::h2load(url, settings.seconds)
    } else {
        load::wrk(url, settings.seconds)
    }
}

fn fixed_alone(
    settings: &Settings,
    url: &str,
    options: RateOptions,
    server: &servers::Server,
) -> anyhow::Result<(FixedRate, f64)> {
    let cpu_before = proc::cpu_time_exact(server.pid())?;
    let run = load::oha(&settings.oha, url, settings.rate, settings.seconds, options)?;
    let cpu = proc::cpu_time_exact(server.pid())? - cpu_before;
    Ok((run, cpu.as_secs_f64()))
}

fn fixed_with_agent(
    settings: &Settings,
    variant: Variant,
    url: &str,
    options: RateOptions,
    server: &servers::Server,
    work: &Path,
) -> anyhow::Result<(FixedRate, f64, AgentRun)> {
    let agent = Agent::start(settings, variant, server.port, work)?;
    let pid = agent.pid();
    let startup = (agent.startup, agent.startup_peak_rss);
    let bpf_before = bpf::run_times(&agent.programs)?;
    let agent_cpu_before = proc::cpu_time(pid)?;
    let server_cpu_before = proc::cpu_time_exact(server.pid())?;
    let rss = proc::RssSampler::start(pid, Duration::from_millis(250));
    let run = load::oha(&settings.oha, url, settings.rate, settings.seconds, options)?;
    let server_cpu = proc::cpu_time_exact(server.pid())? - server_cpu_before;
    let bpf_programs = bpf::difference(&bpf::run_times(&agent.programs)?, &bpf_before);
    let bpf = bpf::total(&bpf_programs);
    // Let the agent finish what the load left in its queues: that work is part of the cost.
    settle(pid)?;
    let agent_cpu = proc::cpu_time(pid)? - agent_cpu_before;
    let max_rss = rss.finish();
    let counters = agent.stop()?;
    Ok((
        run,
        server_cpu.as_secs_f64(),
        AgentRun {
            calls: counters.calls(),
            agent_cpu_seconds: agent_cpu.as_secs_f64(),
            bpf_nanoseconds: bpf.nanoseconds,
            bpf_program_runs: bpf.runs,
            bpf_programs: bpf_programs
                .into_iter()
                .map(|(name, t)| (name, (t.nanoseconds, t.runs)))
                .collect(),
            max_rss_bytes: max_rss,
            startup_seconds: startup.0.as_secs_f64(),
            startup_peak_rss_bytes: startup.1,
            drops: counters.drops(),
            exported: counters.1,
        },
    ))
}

/// Waits until the agent used no CPU for 200 ms (its queues are empty), at most 10 s.
fn settle(pid: u32) -> anyhow::Result<()> {
    let begun = Instant::now();
    let mut last = proc::cpu_time(pid)?;
    while begun.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
        let now = proc::cpu_time(pid)?;
        if now == last {
            break;
        }
        last = now;
    }
    Ok(())
}

/// Runs `load` with a fresh agent capturing `port`; returns its result and the agent's counters.
pub fn with_agent<T>(
    settings: &Settings,
    variant: Variant,
    port: u16,
    work: &Path,
    load: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<(T, Counters)> {
    let agent = Agent::start(settings, variant, port, work)?;
    let result = load();
    settle(agent.pid())?;
    let counters = agent.stop()?;
    Ok((result?, counters))
}
