//! SIGHUP: the config file read again while the agent runs. A file that does not load is
//! refused with its file and place (as at start), and the last good config stays in use. What
//! the running stages can take without losing state changes at once: the API specs (every spec
//! file is read again, each keeping its last good version when it is broken) and the findings'
//! names, rules, thresholds and allowlists. Sections read only at start (identity, Kubernetes,
//! OTLP, service rules, the fingerprint key) are named in a warning as waiting for a restart;
//! the running agent keeps their old values, so what it reports stays consistent.

use std::path::PathBuf;

use super::file::{ApiSpecEntry, FileConfig};
use crate::{findings::config::FindingsSection, stats::Stats};

/// What a reload hands to the running stages.
#[derive(Clone, Debug)]
pub struct LiveSettings {
    pub api_specs: Vec<ApiSpecEntry>,
    pub findings: FindingsSection,
}

/// The config file and the last good config read from it.
pub struct Reloader {
    path: Option<PathBuf>,
    current: FileConfig,
}

impl Reloader {
    pub fn new(path: Option<PathBuf>, current: FileConfig) -> Self {
        Self { path, current }
    }

    /// Reads the file again. `None` when it does not load (logged, counted; nothing changes)
    /// or when there is none (nothing to reload: specs only come from a config file).
    pub fn reload(&mut self, stats: &Stats) -> Option<LiveSettings> {
        let Some(path) = &self.path else {
            tracing::info!("SIGHUP: no config file to read again (--config)");
            return None;
        };
        let next = match FileConfig::load(path) {
            Ok(next) => next,
            Err(error) => {
                Stats::inc(&stats.config_reload_errors);
                tracing::error!(%error, "config not reloaded; the last good config stays in use");
                return None;
            }
        };
        let waiting = restart_only_changes(&self.current, &next);
        if !waiting.is_empty() {
            tracing::warn!(
                sections = %waiting.join(", "),
                "config reloaded, but these settings take effect only after a restart"
            );
        }
        // Keep the values in use for what did not change live, so the next comparison
        // still sees a restart-only change as pending.
        self.current.api_specs = next.api_specs;
        self.current.findings = FindingsSection {
            fingerprint_key_file: self.current.findings.fingerprint_key_file.clone(),
            ..next.findings
        };
        Stats::inc(&stats.config_reloads);
        tracing::info!(path = %path.display(), "config reloaded");
        Some(LiveSettings {
            api_specs: self.current.api_specs.clone(),
            findings: self.current.findings.clone(),
        })
    }
}

/// The sections read only at start that differ between `running` and `next`. Compared by
/// their `Debug` text: the sections hold regular expressions and nested settings that have no
/// equality of their own, and their text shows every value (it is never logged here: the OTLP
/// section may hold credentials).
fn restart_only_changes(running: &FileConfig, next: &FileConfig) -> Vec<&'static str> {
    let same =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") == format!("{b:?}");
    let mut changed = Vec::new();
    if !same(&running.identity, &next.identity) {
        changed.push("identity");
    }
    if !same(&running.kubernetes, &next.kubernetes) {
        changed.push("kubernetes");
    }
    if !same(&running.service_rules, &next.service_rules) {
        changed.push("service_rules");
    }
    if !same(&running.otlp, &next.otlp) {
        changed.push("otlp");
    }
    if running.findings.fingerprint_key_file != next.findings.fingerprint_key_file {
        changed.push("findings.fingerprint_key_file");
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &std::path::Path, text: &str) -> PathBuf {
        let path = dir.join("sightline.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_broken_file_is_refused_and_the_last_good_config_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "[findings]\napi_key_headers = [\"x-key\"]\n");
        let stats = Stats::default();
        let mut reloader = Reloader::new(Some(path.clone()), FileConfig::load(&path).unwrap());
        write(dir.path(), "[findings]\napi_key_headers = [\"x-key\"\n");
        assert!(reloader.reload(&stats).is_none());
        write(dir.path(), "[findings]\napi_key_headers = [\"x-other\"]\n");
        let live = reloader.reload(&stats).expect("a good file loads");
        assert_eq!(live.findings.api_key_headers, ["x-other"]);
        let counts = stats.snapshot();
        let count = |name| counts.iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(
            (count("config_reloads"), count("config_reload_errors")),
            (1, 1)
        );
    }

    #[test]
    fn sections_read_at_start_are_reported_until_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "[identity]\nhost_name = \"a\"\n");
        let running = FileConfig::load(&path).unwrap();
        write(
            dir.path(),
            "[identity]\nhost_name = \"b\"\n[otlp]\nendpoint = \"http://127.0.0.1:4317\"\n",
        );
        let next = FileConfig::load(&path).unwrap();
        assert_eq!(restart_only_changes(&running, &next), ["identity", "otlp"]);
        assert!(restart_only_changes(&running, &running).is_empty());
        let stats = Stats::default();
        let mut reloader = Reloader::new(Some(path), running);
        reloader.reload(&stats).unwrap();
        // Still pending: the running agent kept the old identity.
        assert_eq!(
            restart_only_changes(&reloader.current, &next),
            ["identity", "otlp"]
        );
    }
}
