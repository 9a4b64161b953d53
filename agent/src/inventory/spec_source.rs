//! The specs of the config file, reloaded when their files change. A spec that cannot be read
//! is reported with its file and place, and the last good version of it stays in use.

use std::{path::PathBuf, time::SystemTime};

use super::{
    classify::{BoundSpec, Specs},
    spec,
};
use serde::Deserialize;

use crate::stats::Stats;

/// One `[[api_specs]]` entry of the config file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSpecEntry {
    /// A spec file, or a directory of them (relative paths are relative to the config file).
    pub path: PathBuf,
    /// The `service.name` the spec documents (else it applies by its servers' hosts).
    pub service: Option<String>,
    /// The spec describes a retired API: every endpoint it lists is a zombie when called.
    #[serde(default)]
    pub retired: bool,
}

/// What the files of an entry looked like: (path, modified, length) of each.
type Stamp = Vec<(PathBuf, Option<SystemTime>, u64)>;

pub struct SpecSource {
    entries: Vec<ApiSpecEntry>,
    /// Per entry: its last good specs and the stamp they were read at.
    loaded: Vec<(Vec<BoundSpec>, Stamp)>,
}

impl SpecSource {
    /// Reads every entry once (entries that fail are empty until they read well).
    pub fn load(entries: Vec<ApiSpecEntry>, stats: &Stats) -> Self {
        let mut source = Self {
            loaded: vec![(Vec::new(), Vec::new()); entries.len()],
            entries,
        };
        for index in 0..source.entries.len() {
            source.read(index, stats);
        }
        source
    }

    pub fn specs(&self) -> Specs {
        Specs::new(self.loaded.iter().flat_map(|(s, _)| s.clone()).collect())
    }

    /// Takes the entries of a reloaded config and reads every spec file again, changed or not.
    /// An entry that was already there keeps its last good specs when its file is now broken.
    pub fn replace_entries(&mut self, entries: Vec<ApiSpecEntry>, stats: &Stats) -> Specs {
        let loaded = entries
            .iter()
            .map(|entry| {
                let kept = self.entries.iter().position(|old| old == entry);
                (
                    kept.map_or_else(Vec::new, |i| self.loaded[i].0.clone()),
                    Vec::new(),
                )
            })
            .collect();
        self.entries = entries;
        self.loaded = loaded;
        for index in 0..self.entries.len() {
            self.read(index, stats);
        }
        self.specs()
    }

    /// The specs again when a file changed since it was last read; `None` when nothing did.
    pub fn reload_if_changed(&mut self, stats: &Stats) -> Option<Specs> {
        let mut changed = false;
        for index in 0..self.entries.len() {
            if stamp(&self.entries[index].path) != self.loaded[index].1 {
                self.read(index, stats);
                changed = true;
            }
        }
        changed.then(|| self.specs())
    }

    fn read(&mut self, index: usize, stats: &Stats) {
        let entry = &self.entries[index];
        let now = stamp(&entry.path);
        match spec::load(&entry.path) {
            Ok(specs) => {
                for spec in &specs {
                    tracing::info!(
                        file = %spec.file.display(),
                        format = spec.format,
                        operations = spec.operations.len(),
                        "API spec loaded"
                    );
                }
                let bound = specs
                    .into_iter()
                    .map(|spec| BoundSpec {
                        spec,
                        service: entry.service.clone(),
                        retired: entry.retired,
                    })
                    .collect();
                self.loaded[index] = (bound, now);
            }
            Err(error) => {
                Stats::inc(&stats.inventory_spec_errors);
                let kept = self.loaded[index].0.len();
                tracing::error!(%error, kept_last_good = kept, "API spec not loaded");
                // Not read again until it changes.
                self.loaded[index].1 = now;
            }
        }
    }
}

/// The stamp of a spec file, or of each spec file of a directory.
fn stamp(path: &std::path::Path) -> Stamp {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    files
        .into_iter()
        .map(|file| {
            let meta = std::fs::metadata(&file).ok();
            let modified = meta.as_ref().and_then(|m| m.modified().ok());
            let len = meta.map_or(0, |m| m.len());
            (file, modified, len)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_good_spec_and_picks_up_fixes() {
        let dir = std::env::temp_dir().join(format!("sightline-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("api.yaml");
        std::fs::write(&file, "openapi: 3.0.0\npaths:\n  /a: {get: {}}\n").unwrap();
        let stats = Stats::default();
        let entry = ApiSpecEntry {
            path: file.clone(),
            service: Some("svc".into()),
            retired: false,
        };
        let mut source = SpecSource::load(vec![entry], &stats);
        let classify = |specs: &Specs, path| specs.classify("svc", "GET", path).class.name();
        assert_eq!(classify(&source.specs(), "/a"), "documented");
        assert!(source.reload_if_changed(&stats).is_none());
        std::fs::write(&file, "openapi: 3.0.0\npaths:\n  /a: {get: [}\n").unwrap();
        let kept = source.reload_if_changed(&stats).unwrap();
        assert_eq!(
            classify(&kept, "/a"),
            "documented",
            "the last good spec stays"
        );
        assert_eq!(
            stats
                .inventory_spec_errors
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        std::fs::write(
            &file,
            "openapi: 3.0.0\npaths:\n  /a: {get: {}}\n  /b: {get: {}}\n",
        )
        .unwrap();
        let fixed = source.reload_if_changed(&stats).unwrap();
        assert_eq!(classify(&fixed, "/b"), "documented");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
