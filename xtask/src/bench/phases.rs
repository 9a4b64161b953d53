//! The runs that are not with/without comparisons: sustained load for drops, and many open
//! connections with many endpoints for memory.

use std::{path::Path, process::Command, time::Duration};

use anyhow::Context as _;
use serde::Serialize;

use super::{
    Settings,
    agent::Agent,
    conns::{self, OpenConnections},
    load::{self, RateOptions},
    proc,
    servers::{self, Assets, ServerKind},
    sink::Received,
    variant::Variant,
};
use crate::shell;

/// 20,000 calls/s (10,000 requests/s, both ends traced) for a minute, every span exported
/// over OTLP/gRPC (as deployed).
#[derive(Clone, Debug, Serialize)]
pub struct Sustained {
    pub seconds: u64,
    pub requests_per_second: f64,
    pub requests: u64,
    pub calls: u64,
    pub calls_per_second: f64,
    pub drops: std::collections::BTreeMap<String, u64>,
    pub agent_cpu_percent_of_a_core: f64,
    pub max_rss_bytes: u64,
    /// What the OTLP receiver got.
    pub exported: Option<Received>,
}

pub fn sustained(
    settings: &Settings,
    assets: &Assets,
    port: u16,
    work: &Path,
) -> anyhow::Result<Sustained> {
    const RATE: u32 = 10_000;
    let server = servers::start(ServerKind::NginxHttp, port, assets)?;
    let url = format!("http://127.0.0.1:{}/api/items", server.port);
    let options = RateOptions {
        http2: false,
        no_keepalive: false,
    };
    let agent = Agent::start(settings, Variant::OtlpGrpc, port, work)?;
    let pid = agent.pid();
    let rss = proc::RssSampler::start(pid, Duration::from_millis(500));
    let cpu_before = proc::cpu_time(pid)?;
    let run = load::oha(&settings.oha, &url, RATE, settings.sustain, options)?;
    let cpu = proc::cpu_time(pid)? - cpu_before;
    let max_rss_bytes = rss.finish();
    std::thread::sleep(Duration::from_secs(1));
    let counters = agent.stop()?;
    let seconds = settings.sustain.as_secs_f64();
    Ok(Sustained {
        seconds: settings.sustain.as_secs(),
        requests_per_second: run.requests_per_second,
        requests: run.requests,
        calls: counters.calls(),
        calls_per_second: counters.calls() as f64 / seconds,
        drops: counters.drops(),
        agent_cpu_percent_of_a_core: cpu.as_secs_f64() / seconds * 100.0,
        max_rss_bytes,
        exported: counters.1,
    })
}

/// Agent memory (exporting over OTLP/gRPC, as deployed) with 10,000 open keep-alive
/// connections calling 1,000 endpoints, while 1,000 new connections a second come and go.
#[derive(Clone, Debug, Serialize)]
pub struct Connections {
    pub open_connections: usize,
    pub endpoints_called: usize,
    pub server_endpoints_in_inventory: usize,
    pub new_connections_per_second: u32,
    pub new_connection_requests: u64,
    pub rss_at_start_bytes: u64,
    pub rss_with_open_connections_bytes: u64,
    pub max_rss_bytes: u64,
    pub rss_at_end_bytes: u64,
    /// RSS by kind with the connections open.
    pub breakdown_with_open_connections: proc::Breakdown,
    pub drops: std::collections::BTreeMap<String, u64>,
}

pub fn connections(
    settings: &Settings,
    assets: &Assets,
    port: u16,
    work: &Path,
) -> anyhow::Result<Connections> {
    const OPEN: usize = 10_000;
    const ENDPOINTS: usize = 1_000;
    const NEW_PER_SECOND: u32 = 1_000;
    let server = servers::start(ServerKind::NginxHttp, port, assets)?;
    // A database of its own: the endpoint count below is this run's.
    let dir = work.join("connections");
    std::fs::create_dir_all(&dir)?;
    let agent = Agent::start(settings, Variant::OtlpGrpc, port, &dir)?;
    let pid = agent.pid();
    // Idle after start: what a node with no traffic pays.
    std::thread::sleep(Duration::from_secs(2));
    let rss_at_start_bytes = proc::memory(pid)?.rss;
    let rss = proc::RssSampler::start(pid, Duration::from_millis(250));
    let paths = conns::endpoint_paths(ENDPOINTS);
    let open = OpenConnections::open(server.port, OPEN, &paths)?;
    std::thread::sleep(Duration::from_secs(2));
    let rss_with_open_connections_bytes = proc::memory(pid)?.rss;
    let breakdown_with_open_connections = proc::breakdown(pid)?;
    let churn = load::oha(
        &settings.oha,
        &format!("http://127.0.0.1:{}/churn", server.port),
        NEW_PER_SECOND,
        settings.seconds.max(Duration::from_secs(10)),
        RateOptions {
            http2: false,
            no_keepalive: true,
        },
    )?;
    std::thread::sleep(Duration::from_secs(2));
    let rss_at_end_bytes = proc::memory(pid)?.rss;
    let max_rss_bytes = rss.finish();
    let open_connections = open.len();
    drop(open);
    let counters = agent.stop()?;
    Ok(Connections {
        open_connections,
        endpoints_called: paths.len(),
        server_endpoints_in_inventory: server_endpoints(&settings.agent, &dir)?,
        new_connections_per_second: NEW_PER_SECOND,
        new_connection_requests: churn.requests,
        rss_at_start_bytes,
        rss_with_open_connections_bytes,
        max_rss_bytes,
        rss_at_end_bytes,
        breakdown_with_open_connections,
        drops: counters.drops(),
    })
}

/// Server-side endpoints in the run's inventory (`sightline inventory --format json`).
fn server_endpoints(agent: &Path, dir: &Path) -> anyhow::Result<usize> {
    let json = shell::output(
        Command::new(agent)
            .args(["inventory", "--format", "json", "--db"])
            .arg(dir.join("inventory.db")),
    )?;
    let endpoints: Vec<serde_json::Value> =
        serde_json::from_str(&json).context("the inventory's JSON does not parse")?;
    Ok(endpoints
        .iter()
        .filter(|e| e["direction"] == "served")
        .count())
}
