//! The attach worker's uprobe bookkeeping: attaching a library file once for every process,
//! BIO probes for single processes, and detaching (off-thread: the kernel waits for a grace
//! period per uprobe it removes) when processes or libraries go away.

use std::{collections::HashSet, path::Path, time::Instant};

use super::{AttachedFile, FileId, Links, Worker};
use crate::{
    probes::programs,
    stats::Stats,
    tls::elf::{self, Inspection},
};

impl Worker {
    /// Attaches to a TLS file once; an error is kept (and reported) rather than retried.
    /// `shown`: the file's path as a process sees it, for messages and the report.
    pub(super) fn attach(&mut self, id: FileId, shown: &str, path: &Path) {
        if self.attached.contains_key(&id) {
            return;
        }
        let inspection = self.inspected[&id].clone();
        let Inspection::Tls {
            library, points, ..
        } = &*inspection
        else {
            return;
        };
        let refused = self.refused(points);
        let (links, error) = match &refused {
            // Said once at start; each file only carries the reason into the report.
            Some(reason) => (Vec::new(), Some(reason.clone())),
            None => match self.attach_points(path, points, None) {
                Ok(links) => (links, None),
                Err(error) => (Vec::new(), Some(error)),
            },
        };
        if refused.is_some() {
            tracing::debug!(path = %shown, "TLS probes for this library are not loaded");
        } else if let Some(error) = &error {
            tracing::warn!(path = %shown, %error, "attaching TLS probes failed");
            Stats::inc(&self.stats.tls_attach_failures);
        } else {
            tracing::info!(
                library = library.name(),
                path = %shown,
                probes = links.len(),
                "TLS probes attached"
            );
        }
        self.attached.insert(
            id,
            AttachedFile {
                library: *library,
                path: shown.to_string(),
                links,
                error,
                users: HashSet::new(),
                // Until a scan finds a process mapping it (one held at exec may never run).
                unused_since: Some(Instant::now()),
            },
        );
    }

    /// Why the programs behind `points` are not loaded (the kernel refused their feature, or
    /// the options left it out), if they are not.
    fn refused(&self, points: &[elf::AttachPoint]) -> Option<String> {
        points.iter().find_map(|point| {
            let feature = programs::feature_of(point.program)?;
            self.probes
                .support()
                .why_not(feature)
                .map(|why| format!("TLS probes not loaded: {why}"))
        })
    }

    /// Attaches `points` of the file, for every process or only for `pid`; all or none.
    fn attach_points(
        &mut self,
        path: &Path,
        points: &[elf::AttachPoint],
        pid: Option<u32>,
    ) -> Result<Links, String> {
        // `path` is the agent's own descriptor of the file (`procmaps::OpenedFile`): the
        // process whose root led to it may exit meanwhile, taking /proc/PID/root with it.
        let mut links = Vec::new();
        for point in points {
            match self
                .probes
                .attach_uprobe(point.program, path, point.offset, point.cookie, pid)
            {
                Ok(link) => links.push((point.program, link)),
                Err(e) => {
                    self.release(links, None);
                    return Err(e.to_string());
                }
            }
        }
        Ok(links)
    }

    /// The BIO probes of a file, for one process that uses SSL BIOs (once per process).
    pub(super) fn attach_for_process(&mut self, pid: u32, id: FileId, path: &Path) {
        if self
            .process_links
            .get(&pid)
            .is_some_and(|files| files.iter().any(|(f, _)| *f == id))
        {
            return;
        }
        let inspection = self.inspected[&id].clone();
        let Inspection::Tls { bio_points, .. } = &*inspection else {
            return;
        };
        if self.refused(bio_points).is_some() {
            return;
        }
        match self.attach_points(path, bio_points, Some(pid)) {
            Ok(links) => {
                tracing::info!(
                    pid,
                    probes = links.len(),
                    "TLS BIO probes attached for a process using SSL BIOs"
                );
                self.process_links.entry(pid).or_default().push((id, links));
            }
            Err(error) => {
                tracing::warn!(pid, %error, "attaching TLS BIO probes failed");
                Stats::inc(&self.stats.tls_attach_failures);
            }
        }
    }

    /// Detaches a process's own probes, on a thread of their own: the kernel waits for a grace
    /// period per uprobe it removes, which must not hold up attaching for others.
    pub(super) fn detach_process_links(&mut self, pid: u32) {
        let Some(files) = self.process_links.remove(&pid) else {
            return;
        };
        self.release(
            files.into_iter().flat_map(|(_, links)| links).collect(),
            None,
        );
    }

    /// Detaches `links` on a thread of their own (see `detach_process_links`); a file's
    /// (`path`) says when it is done and how long the kernel took: until then, attaching to the
    /// same file again waits behind it.
    fn release(&mut self, links: Links, path: Option<String>) {
        let mut owned = Vec::new();
        for (program, link) in links {
            if let Ok(link) = self.probes.take_uprobe_link(program, link) {
                owned.push(link);
            }
        }
        let _ = std::thread::Builder::new()
            .name("sightline-detach".to_string())
            .spawn(move || {
                let started = Instant::now();
                let probes = owned.len();
                drop(owned);
                if let Some(path) = path {
                    let took_ms = started.elapsed().as_millis() as u64;
                    tracing::info!(%path, probes, took_ms, "TLS probes released");
                }
            });
    }

    pub(super) fn forget_process(&mut self, pid: u32) {
        let now = Instant::now();
        for id in self.process_files.remove(&pid).unwrap_or_default() {
            if let Some(file) = self.attached.get_mut(&id) {
                file.users.remove(&pid);
                if file.users.is_empty() {
                    file.unused_since = Some(now);
                }
            }
        }
    }

    /// Detaches libraries that no process has mapped for a while (kept a while so that short
    /// programs run again and again, like curl, stay covered from their first call).
    pub(super) fn detach_unused(&mut self, now: Instant) {
        let grace = self.config.detach_after;
        let stale: Vec<FileId> = self
            .attached
            .iter()
            .filter(|(_, f)| {
                f.unused_since
                    .is_some_and(|at| now.duration_since(at) >= grace)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(file) = self.attached.remove(&id) {
                tracing::info!(path = %file.path, "TLS probes detached: no process maps it");
                Stats::inc(&self.stats.tls_files_detached);
                self.release(file.links, Some(file.path));
            }
            self.inspected.remove(&id);
        }
    }
}
