//! The results a team has accepted: written by `--write-baseline` from one run, read by
//! `--baseline` so that only what is new against it fails. A result is remembered by its
//! check and endpoint (`GateResult::key`), never by counts or clients.

use std::{collections::BTreeSet, path::Path};

use serde::{Deserialize, Serialize};

use super::result::GateResult;

/// The format's version: a file of another version is refused, not half read.
const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("reading the baseline {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the baseline {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the baseline {path} is not a Sightline baseline: {message}")]
    Format { path: String, message: String },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    sightline_baseline: u32,
    results: Vec<Entry>,
}

/// One accepted result; the fields besides `key` are for the people who review the file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    key: String,
    rule_id: String,
    check: String,
    service: String,
    method: String,
    route: String,
}

#[derive(Debug, Default)]
pub struct Baseline {
    keys: BTreeSet<String>,
}

impl Baseline {
    pub fn read(path: &Path) -> Result<Self, BaselineError> {
        let text = std::fs::read_to_string(path).map_err(|source| BaselineError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let format = |message: String| BaselineError::Format {
            path: path.display().to_string(),
            message,
        };
        let file: File = serde_json::from_str(&text).map_err(|e| format(e.to_string()))?;
        if file.sightline_baseline != VERSION {
            return Err(format(format!(
                "version {} (this sightline reads version {VERSION})",
                file.sightline_baseline
            )));
        }
        Ok(Self {
            keys: file.results.into_iter().map(|e| e.key).collect(),
        })
    }

    pub fn accepts(&self, result: &GateResult) -> bool {
        self.keys.contains(&result.key())
    }

    /// Writes every result as accepted (sorted, one per key: the file diffs well in review).
    pub fn write(path: &Path, results: &[GateResult]) -> Result<(), BaselineError> {
        let mut entries: Vec<Entry> = results
            .iter()
            .map(|r| Entry {
                key: r.key(),
                rule_id: r.check.id().to_string(),
                check: r.check.name().to_string(),
                service: r.endpoint.api.clone(),
                method: r.endpoint.method.clone(),
                route: r.endpoint.route.clone(),
            })
            .collect();
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        entries.dedup_by(|a, b| a.key == b.key);
        let file = File {
            sightline_baseline: VERSION,
            results: entries,
        };
        let text = serde_json::to_string_pretty(&file).expect("a baseline serializes") + "\n";
        std::fs::write(path, text).map_err(|source| BaselineError::Write {
            path: path.display().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{check::Check, tests::result as of};

    fn result(check: Check, route: &str, calls: u64) -> GateResult {
        GateResult {
            calls,
            ..of(check, route)
        }
    }

    #[test]
    fn a_written_baseline_accepts_the_same_results_with_other_counts_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("baseline.json");
        Baseline::write(&path, &[result(Check::Shadow, "/debug", 3)]).unwrap();
        let baseline = Baseline::read(&path).unwrap();
        assert!(baseline.accepts(&result(Check::Shadow, "/debug", 40)));
        assert!(!baseline.accepts(&result(Check::Zombie, "/debug", 3)));
        assert!(!baseline.accepts(&result(Check::Shadow, "/debug2", 3)));
    }

    #[test]
    fn a_file_of_another_kind_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.json");
        std::fs::write(&path, r#"{"sightline_baseline": 2, "results": []}"#).unwrap();
        let error = Baseline::read(&path).unwrap_err().to_string();
        assert!(
            error.contains("other.json") && error.contains("version 2"),
            "{error}"
        );
        std::fs::write(&path, "[]").unwrap();
        assert!(matches!(
            Baseline::read(&path),
            Err(BaselineError::Format { .. })
        ));
    }
}
