//! cgroup v2: where the unified hierarchy is mounted (/sys/fs/cgroup on unified hosts,
//! /sys/fs/cgroup/unified on hybrid ones) and the id the kernel gives a cgroup (the inode
//! number of its directory, what `bpf_get_current_cgroup_id` returns).

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

/// Paths remembered (the table is cleared when full: ids are cheap to find again).
const MAX_PATHS: usize = 16_384;
/// Directories visited at most by one walk of the hierarchy.
const MAX_WALK: usize = 65_536;
/// At most one walk per interval (an unknown id is usually a short-lived cgroup).
const WALK_INTERVAL: Duration = Duration::from_secs(5);

/// Kernel cgroup id -> path inside the hierarchy (`/kubepods.slice/...`), as the events give
/// the id: learnt when the cgroup was made (the kernel's cgroup_mkdir events), else through the
/// process's /proc/PID/cgroup (checked against the id, since the process may have moved), else
/// by walking the hierarchy (cgroups older than the agent).
pub struct CgroupPaths {
    mount: Option<PathBuf>,
    proc_root: String,
    known: HashMap<u64, Arc<str>>,
    last_walk: Option<Instant>,
}

impl CgroupPaths {
    pub fn new(proc_root: &str) -> Self {
        Self {
            mount: cgroup2_mount(),
            proc_root: proc_root.to_string(),
            known: HashMap::new(),
            last_walk: None,
        }
    }

    /// Whether a cgroup v2 hierarchy is mounted (paths can be resolved at all).
    pub fn has_hierarchy(&self) -> bool {
        self.mount.is_some()
    }

    /// The path of cgroup `id`, where process `pid` was seen.
    pub fn path(&mut self, id: u64, pid: u32) -> Option<Arc<str>> {
        if let Some(path) = self.known.get(&id) {
            return Some(path.clone());
        }
        let mount = self.mount.clone()?;
        let from_proc = std::fs::read_to_string(format!("{}/{pid}/cgroup", self.proc_root))
            .ok()
            .and_then(|text| unified_path(&text).map(str::to_string))
            .filter(|path| cgroup_id(&mount.join(path.trim_start_matches('/'))).ok() == Some(id));
        if let Some(path) = from_proc {
            return Some(self.remember(id, &path));
        }
        if self
            .last_walk
            .is_some_and(|at| at.elapsed() < WALK_INTERVAL)
        {
            return None;
        }
        self.last_walk = Some(Instant::now());
        self.walk(&mount);
        self.known.get(&id).cloned()
    }

    /// A cgroup the kernel reported made (`cgroup:cgroup_mkdir`): no lookup needed later.
    pub fn learn(&mut self, id: u64, path: &str) {
        self.remember(id, path);
    }

    fn remember(&mut self, id: u64, path: &str) -> Arc<str> {
        if self.known.len() >= MAX_PATHS {
            self.known.clear();
        }
        let path: Arc<str> = Arc::from(if path.is_empty() { "/" } else { path });
        self.known.insert(id, path.clone());
        path
    }

    /// Learns every cgroup of the hierarchy (bounded).
    fn walk(&mut self, mount: &Path) {
        let mut stack = vec![mount.to_path_buf()];
        let mut visited = 0;
        while let Some(dir) = stack.pop() {
            visited += 1;
            if visited > MAX_WALK {
                break;
            }
            if let (Ok(id), Ok(relative)) = (cgroup_id(&dir), dir.strip_prefix(mount)) {
                let path = format!("/{}", relative.display());
                self.remember(id, &path);
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            stack.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
}

/// The cgroup v2 line of /proc/PID/cgroup (`0::/path`).
pub fn unified_path(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

/// The cgroup2 mount point, from /proc/self/mountinfo.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    parse_cgroup2_mount(&mountinfo)
}

/// The first cgroup2 mount in the text of a mountinfo file.
pub fn parse_cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // "36 25 0:31 / /sys/fs/cgroup rw,... shared:9 - cgroup2 cgroup2 rw"
        let (left, right) = line.split_once(" - ")?;
        let fs_type = right.split_whitespace().next()?;
        (fs_type == "cgroup2").then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

/// The directory of a cgroup given as an absolute path, or as a path inside the hierarchy.
pub fn cgroup_dir(path: &str) -> Option<PathBuf> {
    let given = Path::new(path);
    if given.is_absolute()
        && given.is_dir()
        && cgroup2_mount().is_some_and(|m| given.starts_with(m))
    {
        return Some(given.to_path_buf());
    }
    Some(cgroup2_mount()?.join(path.trim_start_matches('/')))
}

/// The id of the cgroup at `dir`.
pub fn cgroup_id(dir: &Path) -> std::io::Result<u64> {
    std::fs::metadata(dir).map(|m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_its_own_cgroup() {
        let Some(mount) = cgroup2_mount() else { return };
        let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let own = unified_path(&text).unwrap().to_string();
        let id = cgroup_id(&mount.join(own.trim_start_matches('/'))).unwrap();
        let mut paths = CgroupPaths::new("/proc");
        let expected = if own.is_empty() { "/" } else { own.as_str() };
        assert_eq!(
            paths.path(id, std::process::id()).as_deref(),
            Some(expected)
        );
        // Found by the walk when the pid says nothing.
        let mut paths = CgroupPaths::new("/nonexistent");
        assert_eq!(paths.path(id, 1).as_deref(), Some(expected));
    }

    #[test]
    fn finds_unified_and_hybrid_mounts() {
        let unified =
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            parse_cgroup2_mount(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let hybrid = "31 23 0:27 / /sys/fs/cgroup ro shared:9 - tmpfs tmpfs ro,mode=755\n\
                      32 31 0:28 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            parse_cgroup2_mount("1 2 0:1 / / rw - ext4 /dev/vda rw\n"),
            None
        );
    }
}
