//! The load generators, none of them ours: wrk (HTTP/1.1 at saturation), h2load (HTTP/2 at
//! saturation) and oha (a fixed request rate, with latency percentiles corrected for
//! coordinated omission).

use std::{path::Path, process::Command, time::Duration};

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::shell;

/// Throughput of a closed-loop run as fast as the server answers.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Saturation {
    pub requests: u64,
    pub requests_per_second: f64,
}

/// HTTP/1.1 with wrk: one thread, 32 keep-alive connections (a 2-core machine runs the
/// server, the generator and the agent).
pub fn wrk(url: &str, duration: Duration) -> anyhow::Result<Saturation> {
    let out = shell::output(
        Command::new("wrk")
            .args(["-t", "1", "-c", "32", "-d"])
            .arg(format!("{}s", duration.as_secs()))
            .arg(url),
    )?;
    if let Some(line) = out.lines().find(|l| l.contains("Non-2xx")) {
        bail!("wrk saw errors: {line}");
    }
    let requests = out
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no request count in wrk's output: {out}"))?;
    let requests_per_second = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("no rate in wrk's output: {out}"))?;
    Ok(Saturation {
        requests,
        requests_per_second,
    })
}

/// HTTP/2 with h2load: one thread, 8 connections of 16 concurrent streams.
pub fn h2load(url: &str, duration: Duration) -> anyhow::Result<Saturation> {
    let out = shell::output(
        Command::new("h2load")
            .args(["-t", "1", "-c", "8", "-m", "16", "-D"])
            .arg(duration.as_secs().to_string())
            .arg(url),
    )?;
    let counts = out
        .lines()
        .find_map(|l| l.strip_prefix("requests: "))
        .with_context(|| format!("no request counts in h2load's output: {out}"))?;
    let count = |label: &str| -> Option<u64> {
        counts
            .split(',')
            .find(|p| p.trim().ends_with(label))
            .and_then(|p| p.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    if count("failed").unwrap_or(0) > 0 || count("errored").unwrap_or(0) > 0 {
        bail!("h2load saw failed requests: {counts}");
    }
    let requests = count("succeeded").context("no succeeded count from h2load")?;
    let requests_per_second = out
        .lines()
        .find(|l| l.starts_with("finished in"))
        .and_then(|l| l.split(',').nth(1))
        .and_then(|p| p.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no rate in h2load's output: {out}"))?;
    Ok(Saturation {
        requests,
        requests_per_second,
    })
}

/// A fixed-rate run: what was sent and how long answers took.
#[derive(Clone, Debug, Serialize)]
pub struct FixedRate {
    pub requests: u64,
    pub requests_per_second: f64,
    /// Latency percentiles in milliseconds: (percentile, latency), ascending.
    pub percentiles_ms: Vec<(f64, f64)>,
}

impl FixedRate {
    /// The latency at percentile `p` (one of oha's).
    pub fn at(&self, p: f64) -> f64 {
        self.percentiles_ms
            .iter()
            .find(|(q, _)| (q - p).abs() < 1e-9)
            .map(|(_, ms)| *ms)
            .unwrap_or(f64::NAN)
    }
}

/// How a fixed-rate run connects.
#[derive(Clone, Copy, Debug)]
pub struct RateOptions {
    pub http2: bool,
    /// A new connection per request.
    pub no_keepalive: bool,
}

/// A fixed request rate with oha (`-q`), latencies corrected for coordinated omission.
pub fn oha(
    oha: &Path,
    url: &str,
    rate: u32,
    duration: Duration,
    options: RateOptions,
) -> anyhow::Result<FixedRate> {
    let mut cmd = Command::new(oha);
    cmd.args([
        "--no-tui",
        "--output-format",
        "json",
        "--latency-correction",
    ])
    .args(["-c", "32", "-q", &rate.to_string(), "-z"])
    .arg(format!("{}s", duration.as_secs()))
    .arg("--insecure");
    if options.http2 {
        cmd.arg("--http2");
    }
    if options.no_keepalive {
        cmd.arg("--disable-keepalive");
    }
    let out = shell::output(cmd.arg(url))?;
    parse_oha(&out)
}

fn parse_oha(json: &str) -> anyhow::Result<FixedRate> {
    let report: serde_json::Value =
        serde_json::from_str(json).context("oha's JSON report does not parse")?;
    let summary = &report["summary"];
    let success = summary["successRate"].as_f64().unwrap_or(0.0);
    if success < 1.0 {
        bail!(
            "oha: only {:.2} % of requests succeeded: {}",
            success * 100.0,
            report["errorDistribution"]
        );
    }
    let requests: u64 = report["statusCodeDistribution"]
        .as_object()
        .map(|codes| codes.values().filter_map(|n| n.as_u64()).sum())
        .unwrap_or(0);
    let mut percentiles_ms: Vec<(f64, f64)> = report["latencyPercentiles"]
        .as_object()
        .context("no latency percentiles in oha's report")?
        .iter()
        .filter_map(|(name, seconds)| {
            let p = name.strip_prefix('p')?.parse::<f64>().ok()?;
            Some((p, seconds.as_f64()? * 1000.0))
        })
        .collect();
    percentiles_ms.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(FixedRate {
        requests,
        requests_per_second: summary["requestsPerSec"].as_f64().unwrap_or(0.0),
        percentiles_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_oha_report() {
        let json = r#"{"summary":{"successRate":1.0,"requestsPerSec":4999.5},
            "latencyPercentiles":{"p50":0.0002,"p99":0.0011,"p99.9":0.003,"p10":0.0001},
            "statusCodeDistribution":{"200":49995}}"#;
        let run = parse_oha(json).expect("parses");
        assert_eq!(run.requests, 49995);
        assert_eq!(run.percentiles_ms.first().map(|p| p.0), Some(10.0));
        assert!((run.at(99.0) - 1.1).abs() < 1e-9);
        assert!((run.at(99.9) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn refuses_a_run_with_errors() {
        let json = r#"{"summary":{"successRate":0.5},"errorDistribution":{"refused":3}}"#;
        let error = parse_oha(json).expect_err("errors");
        assert!(error.to_string().contains("50.00 %"), "{error}");
    }
}
