//! cgroup v2 directories made by a test (any depth, e.g. kubelet- or Docker-style paths), with
//! real processes moved into them; removed when dropped.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The cgroup2 mount (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts).
pub fn cgroup2_mount() -> PathBuf {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| PathBuf::from(left.split_whitespace().nth(4).unwrap()))
        })
        .expect("a cgroup2 hierarchy is mounted")
}

pub struct TestCgroup {
    /// The cgroup's directory.
    pub dir: PathBuf,
    /// Its path inside the hierarchy (`/kubepods.slice/...`).
    pub path: String,
    /// Directories this cgroup created, deepest last.
    created: Vec<PathBuf>,
}

impl TestCgroup {
    /// Creates `path` (relative to the hierarchy's root), with any missing parents.
    pub fn create(path: &str) -> TestCgroup {
        let mount = cgroup2_mount();
        let mut created = Vec::new();
        let mut dir = mount.clone();
        for part in path.trim_matches('/').split('/') {
            dir.push(part);
            if !dir.exists() {
                std::fs::create_dir(&dir)
                    .unwrap_or_else(|e| panic!("creating cgroup {}: {e}", dir.display()));
                created.push(dir.clone());
            }
        }
        TestCgroup {
            path: format!("/{}", path.trim_matches('/')),
            dir,
            created,
        }
    }

    /// A shell that moves itself into the cgroup, then execs `command` (the runtimes do the
    /// same: the process is in its cgroup before the program starts).
    pub fn command(&self, command: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!(
            "echo $$ > {}/cgroup.procs && exec {command}",
            self.dir.display()
        ));
        cmd
    }

    /// The kernel's id of the cgroup.
    pub fn id(&self) -> u64 {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&self.dir).unwrap())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for dir in self.created.iter().rev() {
            // Processes may take a moment to leave after being killed.
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}
