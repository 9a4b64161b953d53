//! The coverage report file: written atomically by the agent, read and printed by
//! `sightline tls`.

use std::{
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use super::coverage::{ProcessReport, Report, Status};

/// Where the running agent writes the report unless told otherwise.
pub const DEFAULT_REPORT_PATH: &str = "/run/sightline/tls-coverage.json";

/// Writes `report` to a temporary file beside `path` (mode 0600) and renames it over `path`,
/// so a reader never sees half a report.
pub fn write_atomically(path: &Path, report: &Report) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    serde_json::to_writer_pretty(&mut file, report).map_err(std::io::Error::other)?;
    file.write_all(b"\n")?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(
        "no TLS coverage report at {path} ({source}): is the agent running (sightline run), and with this --report path?"
    )]
    Missing {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a coverage report: {source}")]
    Invalid {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

pub fn read(path: &Path) -> Result<Report, ReadError> {
    let text = std::fs::read(path).map_err(|source| ReadError::Missing {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|source| ReadError::Invalid {
        path: path.display().to_string(),
        source,
    })
}

/// The processes to show: those with TLS connections, or every known one with `all`.
pub fn selected(report: &Report, all: bool) -> Vec<&ProcessReport> {
    report
        .processes
        .iter()
        .filter(|p| all || p.tls_connections > 0)
        .collect()
}

/// A table for people: one row per process.
pub fn render_table(report: &Report, all: bool, agent_running: bool) -> String {
    let mut out = String::new();
    if !agent_running {
        out.push_str(&format!(
            "warning: the agent that wrote this report (pid {}) is not running; it may be stale\n",
            report.agent_pid
        ));
    }
    let rows = selected(report, all);
    if rows.is_empty() {
        out.push_str(if all {
            "no process with a TLS library or a TLS connection seen yet\n"
        } else {
            "no TLS connection seen yet (--all lists processes with TLS libraries)\n"
        });
        return out;
    }
    out.push_str(&format!(
        "{:<8} {:<18} {:<13} {:>9}  {:<24} {}\n",
        "PID", "PROCESS", "STATUS", "CAPTURED", "LIBRARY", "DETAIL"
    ));
    for p in rows {
        let library = if p.captured_by.is_empty() {
            p.libraries
                .iter()
                .map(|l| l.library.as_str())
                .collect::<Vec<_>>()
                .join(",")
        } else {
            p.captured_by.join(",")
        };
        let detail = match &p.reason {
            Some(reason) => reason.clone(),
            None => p
                .libraries
                .iter()
                .map(|l| l.path.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        };
        out.push_str(&format!(
            "{:<8} {:<18} {:<13} {:>9}  {:<24} {}{}\n",
            p.pid,
            p.executable,
            status_name(p.status),
            format!("{}/{}", p.captured_connections, p.tls_connections),
            if library.is_empty() { "-" } else { &library },
            detail,
            if p.exited { " (exited)" } else { "" },
        ));
    }
    out
}

pub fn status_name(status: Status) -> &'static str {
    match status {
        Status::Captured => "captured",
        Status::Partial => "partial",
        Status::NotCaptured => "not captured",
        Status::Ready => "ready",
        Status::Unsupported => "unsupported",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::coverage::LibraryReport;

    fn report() -> Report {
        Report {
            agent_pid: 1,
            written_at_unix_ms: 0,
            processes: vec![
                ProcessReport {
                    pid: 10,
                    executable: "curl".into(),
                    exited: true,
                    status: Status::Captured,
                    libraries: vec![LibraryReport {
                        library: "openssl".into(),
                        path: "/usr/lib/x86_64-linux-gnu/libssl.so.3".into(),
                        attached: true,
                        error: None,
                    }],
                    captured_by: vec!["openssl".into()],
                    tls_connections: 1,
                    captured_connections: 1,
                    reason: None,
                },
                ProcessReport {
                    pid: 11,
                    executable: "nginx".into(),
                    exited: false,
                    status: Status::Ready,
                    libraries: vec![],
                    captured_by: vec![],
                    tls_connections: 0,
                    captured_connections: 0,
                    reason: None,
                },
            ],
        }
    }

    #[test]
    fn table_lists_tls_processes_unless_all() {
        let table = render_table(&report(), false, true);
        assert!(table.contains("curl"), "{table}");
        assert!(table.contains("captured"), "{table}");
        assert!(table.contains("1/1"), "{table}");
        assert!(table.contains("(exited)"), "{table}");
        assert!(!table.contains("nginx"), "{table}");
        assert!(render_table(&report(), true, true).contains("nginx"));
        assert!(render_table(&report(), false, false).starts_with("warning"));
    }

    #[test]
    fn written_report_reads_back_and_is_private() {
        let dir = std::env::temp_dir().join(format!("sightline-report-{}", std::process::id()));
        let path = dir.join("tls.json");
        write_atomically(&path, &report()).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back.processes.len(), 2);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("is the agent running"), "{err}");
    }
}
