//! The `sightline` binary: parses the command line and runs the library.

#[cfg(not(target_os = "linux"))]
compile_error!("sightline runs on Linux only: it loads eBPF programs into the Linux kernel");

use clap::Parser as _;
use sightline::cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

/// mimalloc: the agent allocates many small, short-lived buffers per call (payloads, headers,
/// output), where the system allocator spent about 40% of the agent's CPU under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sightline::allocator::starting();
    let cli = Cli::parse();
    // A recording shares the terminal with the command it runs: only warnings from us.
    let level = match cli.command {
        Some(Command::Record(_)) => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Some(Command::Check(args)) => check(args),
        Some(Command::Run(args)) => run(args),
        Some(Command::Tls(args)) => tls_report(&args),
        Some(Command::Inventory(args)) => inventory(&args),
        Some(Command::Changes(args)) => changes(&args),
        Some(Command::Findings(args)) => findings(&args),
        Some(Command::Openapi(args)) => openapi(&args),
        Some(Command::Capabilities) => {
            use std::io::Write as _;
            let text = sightline::probes::capabilities::render();
            std::io::stdout()
                .lock()
                .write_all(text.as_bytes())
                .map_err(anyhow::Error::from)
        }
        Some(Command::Health(args)) => sightline::health::ask(args.address, args.live)
            .map(|body| eprintln!("sightline: {body}"))
            .map_err(anyhow::Error::from),
        Some(Command::Record(args)) => match record(args) {
            Ok(code) => return std::process::ExitCode::from(code),
            Err(error) => Err(error),
        },
        Some(Command::Gate(args)) => match gate(&args) {
            Ok(true) => Ok(()),
            Ok(false) => return std::process::ExitCode::FAILURE,
            Err(error) => Err(error),
        },
        None => run(cli.run),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One line, with every cause, never a backtrace.
            eprintln!("sightline: error: {}", one_line(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: sightline::cli::RunArgs) -> anyhow::Result<()> {
    // Before the runtime starts its threads: they inherit the policy.
    sightline::priority::apply(args.cpu_priority)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("sightline")
        .build()?;
    let config = args.into_config()?;
    runtime.block_on(sightline::pipeline::run(config))?;
    Ok(())
}

/// `sightline check`: loads what the agent would load, prints what the kernel accepted.
fn check(args: sightline::cli::CheckArgs) -> anyhow::Result<()> {
    use sightline::probes::{LoadedProbes, support};
    use std::io::Write as _;
    let options = args.run.into_config()?.probes;
    let found = LoadedProbes::check(&options)?;
    std::io::stdout()
        .lock()
        .write_all(support::render_check(&found).as_bytes())?;
    let missing: Vec<&str> = found.refused().map(|f| f.name()).collect();
    if missing.is_empty() {
        eprintln!("sightline: this host can run the agent");
        return Ok(());
    }
    let missing = missing.join(", ");
    if args.strict {
        anyhow::bail!("the agent would run without: {missing}");
    }
    eprintln!("sightline: this host can run the agent, without: {missing}");
    Ok(())
}

/// `sightline tls`: prints the running agent's TLS coverage report.
fn tls_report(args: &sightline::cli::TlsArgs) -> anyhow::Result<()> {
    use sightline::tls::report;
    use std::io::Write as _;
    let coverage = report::read(&args.report)?;
    let text = match args.format {
        sightline::cli::ReportFormat::Json => {
            let selected = report::selected(&coverage, args.all);
            serde_json::to_string_pretty(&selected)? + "\n"
        }
        sightline::cli::ReportFormat::Table => {
            let running = std::path::Path::new(&format!("/proc/{}", coverage.agent_pid)).exists();
            report::render_table(&coverage, args.all, running)
        }
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// `sightline inventory`: prints the stored API inventory, each endpoint with its risk.
fn inventory(args: &sightline::cli::InventoryArgs) -> anyhow::Result<()> {
    use sightline::{cli::InventoryOrder, findings::risk, inventory::report, store::Store};
    use std::io::Write as _;
    if let Some(url) = &args.prometheus {
        return cluster_inventory(url, args);
    }
    let store = Store::open_read_only(&args.db)?;
    let findings = store.load_findings()?;
    let mut rows: Vec<report::Row> = report::selected(store.load()?, args.service.as_deref())
        .into_iter()
        .map(|(key, stats)| {
            let risk = risk::score(&key, &stats, &findings);
            (key, stats, risk)
        })
        .filter(|(.., risk)| args.min_risk.is_none_or(|min| risk.score >= min))
        .collect();
    if args.sort == InventoryOrder::Risk {
        // Stable: equal scores keep the stored order (by API and route).
        rows.sort_by(|a, b| b.2.score.total_cmp(&a.2.score));
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let window = std::time::Duration::from_secs(args.unused_days.saturating_mul(86_400));
    let since = now.saturating_sub(window).as_nanos() as u64;
    let unused: Vec<report::Unused> = match args.min_risk {
        // Unused operations have no calls and no risk.
        Some(_) => Vec::new(),
        None => store
            .unused_operations(since)?
            .into_iter()
            .filter(|u| args.service.as_deref().is_none_or(|s| s == u.api))
            .collect(),
    };
    let text = match args.format {
        sightline::cli::ReportFormat::Json => {
            serde_json::to_string_pretty(&report::to_json(&rows, &unused))? + "\n"
        }
        sightline::cli::ReportFormat::Table => report::render_table(&rows, &unused),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// `sightline changes`: prints the stored changes of the endpoints.
fn changes(args: &sightline::cli::ChangesArgs) -> anyhow::Result<()> {
    use sightline::{inventory::changes, store::Store};
    use std::io::Write as _;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let since = now.saturating_sub(args.since).as_nanos() as u64;
    let store = Store::open_read_only(&args.db)?;
    let found = store.load_changes(since, args.service.as_deref())?;
    let text = match args.format {
        sightline::cli::ReportFormat::Json => {
            let list: Vec<serde_json::Value> = found.iter().map(|c| c.to_json()).collect();
            serde_json::to_string_pretty(&list)? + "\n"
        }
        sightline::cli::ReportFormat::Table => changes::render_table(&found),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// `sightline inventory --prometheus URL`: the cluster's inventory, from the metrics store.
fn cluster_inventory(url: &str, args: &sightline::cli::InventoryArgs) -> anyhow::Result<()> {
    use sightline::cluster::{inventory, prometheus_api::Prometheus};
    use std::io::Write as _;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let window = std::time::Duration::from_secs(args.unused_days.saturating_mul(86_400));
    let since_ms = now.saturating_sub(window).as_millis() as u64;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut cluster = runtime.block_on(inventory::read(&Prometheus::new(url), since_ms))?;
    if let Some(service) = &args.service {
        cluster.endpoints.retain(|e| &e.key.api == service);
        cluster.unused.retain(|u| &u.api == service);
    }
    if let Some(min) = args.min_risk {
        cluster.endpoints.retain(|e| e.risk >= min);
        cluster.unused.clear();
    }
    if args.sort == sightline::cli::InventoryOrder::Risk {
        cluster.endpoints.sort_by(|a, b| b.risk.total_cmp(&a.risk));
    }
    let text = match args.format {
        sightline::cli::ReportFormat::Json => {
            serde_json::to_string_pretty(&inventory::to_json(&cluster))? + "\n"
        }
        sightline::cli::ReportFormat::Table => inventory::render_table(&cluster),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// `sightline findings`: prints the stored findings.
fn findings(args: &sightline::cli::FindingsArgs) -> anyhow::Result<()> {
    use sightline::{findings::report, store::Store};
    use std::io::Write as _;
    let all = match &args.prometheus {
        Some(url) => {
            use sightline::cluster::{findings, prometheus_api::Prometheus};
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(findings::read(&Prometheus::new(url)))?
        }
        None => Store::open_read_only(&args.db)?.load_findings()?,
    };
    let findings = report::selected(
        all,
        &report::Filter {
            service: args.service.clone(),
            min_severity: args.min_severity,
            rule: args.rule,
        },
    );
    let text = match args.format {
        sightline::cli::ReportFormat::Json => {
            let list: Vec<serde_json::Value> = findings.iter().map(|f| f.to_json()).collect();
            serde_json::to_string_pretty(&list)? + "\n"
        }
        sightline::cli::ReportFormat::Table => report::render_table(&findings),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// `sightline openapi`: prints the document reconstructed from a service's traffic.
fn openapi(args: &sightline::cli::OpenapiArgs) -> anyhow::Result<()> {
    use sightline::{
        inventory::{openapi_out, report},
        store::Store,
    };
    use std::io::Write as _;
    let inventories = args
        .db
        .iter()
        .map(|db| Ok(Store::open_read_only(db)?.load()?))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let endpoints = report::selected(report::merged(inventories), Some(&args.service));
    if endpoints.is_empty() {
        let dbs: Vec<String> = args.db.iter().map(|d| d.display().to_string()).collect();
        anyhow::bail!("no endpoint of {:?} in {}", args.service, dbs.join(", "));
    }
    let doc = openapi_out::document(&args.service, &endpoints);
    let text = serde_json::to_string_pretty(&doc)? + "\n";
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// `sightline record`: the command's exit code, once the run is in its database.
fn record(args: sightline::cli::RecordArgs) -> anyhow::Result<u8> {
    let db = args.db.clone();
    let wait = args.wait_secs;
    let recorded = sightline::record::run(args)?;
    if recorded.left_running > 0 {
        let n = recorded.left_running;
        let processes = if n == 1 { "process" } else { "processes" };
        eprintln!(
            "sightline: record: the command left {n} {processes} running; killed after {wait} s"
        );
    }
    eprintln!(
        "sightline: record: {} calls to {} endpoints, {} findings, in {}",
        recorded.calls,
        recorded.endpoints,
        recorded.findings,
        db.display()
    );
    Ok(recorded.exit_code)
}

/// `sightline gate`: whether the gate passed (its summary is printed either way).
fn gate(args: &sightline::cli::GateArgs) -> anyhow::Result<bool> {
    use sightline::{
        gate::{Outcome, baseline::Baseline, junit, result, sarif},
        store::Store,
    };
    use std::io::Write as _;
    let store = Store::open_read_only(&args.db)?;
    let inputs = result::Inputs {
        endpoints: store.load()?,
        findings: store.load_findings()?,
        operations: store.spec_operations()?,
        unused: store.unused_operations(0)?,
    };
    let results = result::collect(&inputs);
    if let Some(path) = &args.write_baseline {
        Baseline::write(path, &results)?;
    }
    let baseline = args.baseline.as_deref().map(Baseline::read).transpose()?;
    let terms = args.fail_on.clone().map(|t| t.0).unwrap_or_default();
    // Writing a baseline accepts this run: it passes.
    let terms = if args.write_baseline.is_some() {
        Vec::new()
    } else {
        terms
    };
    let outcome = Outcome::judge(results, terms, baseline.as_ref());
    if let Some(path) = &args.sarif {
        let log = sarif::log(&outcome, &std::env::current_dir()?);
        write_file(path, &(serde_json::to_string_pretty(&log)? + "\n"))?;
    }
    if let Some(path) = &args.junit {
        let mut subjects: Vec<_> = inputs.endpoints.iter().map(|(k, _)| k.clone()).collect();
        subjects.extend(inputs.unused.iter().map(|u| {
            sightline::inventory::endpoint::EndpointKey {
                api: u.api.clone(),
                namespace: String::new(),
                direction: sightline::inventory::endpoint::Direction::Served,
                method: u.method.clone(),
                route: u.route.clone(),
            }
        }));
        write_file(path, &junit::document(&outcome, &subjects))?;
    }
    if let Some(path) = &args.json {
        write_file(
            path,
            &(serde_json::to_string_pretty(&outcome.to_json())? + "\n"),
        )?;
    }
    std::io::stdout()
        .lock()
        .write_all(outcome.summary().as_bytes())?;
    Ok(!outcome.failed())
}

fn write_file(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

/// The error and its causes on one line, skipping causes that their parent's text already
/// repeats (some libraries include their source in their own message).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}
