//! The cgroup a recorded command runs in: made for the run in the cgroup v2 hierarchy, so the
//! kernel filter keeps exactly the command's process tree (parallel jobs on one runner do not
//! mix), and removed afterwards with anything the command left running.

use std::{
    fs::File,
    io::Write as _,
    os::fd::AsFd as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup v2 hierarchy is mounted (sightline record needs one to follow the command)")]
    NoHierarchy,
    #[error("creating the cgroup {path}: {source}")]
    Create {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("opening {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub struct RecordCgroup {
    dir: PathBuf,
    /// The path inside the hierarchy (`/sightline-record-42`), as identity sees cgroups.
    inside: String,
    /// `cgroup.procs`, opened before the command forks: the child writes itself into it
    /// between fork and exec, so not one of its syscalls runs outside.
    procs: File,
}

impl RecordCgroup {
    /// A new cgroup at the root of the hierarchy, named after this process.
    pub fn create() -> Result<Self, CgroupError> {
        let mount = crate::identity::cgroup::cgroup2_mount().ok_or(CgroupError::NoHierarchy)?;
        let inside = format!("/sightline-record-{}", std::process::id());
        let dir = mount.join(inside.trim_start_matches('/'));
        std::fs::create_dir(&dir).map_err(|source| CgroupError::Create {
            path: dir.display().to_string(),
            source,
        })?;
        let procs_path = dir.join("cgroup.procs");
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(&procs_path)
            .map_err(|source| CgroupError::Open {
                path: procs_path.display().to_string(),
                source,
            });
        let procs = match procs {
            Ok(file) => file,
            Err(error) => {
                let _ = std::fs::remove_dir(&dir);
                return Err(error);
            }
        };
        Ok(Self { dir, inside, procs })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn inside(&self) -> &str {
        &self.inside
    }

    /// Makes `command` join the cgroup in the child, after fork and before exec.
    pub fn enter_on_spawn(&self, command: &mut tokio::process::Command) -> std::io::Result<()> {
        let procs = self.procs.try_clone()?;
        #[allow(unsafe_code)]
        // SAFETY: the closure runs in the forked child before exec; it only makes one write(2)
        // on a descriptor opened before the fork (async-signal-safe, no allocation, no lock).
        unsafe {
            command.pre_exec(move || {
                rustix::io::write(procs.as_fd(), b"0")
                    .map(drop)
                    .map_err(std::io::Error::from)
            });
        }
        Ok(())
    }

    /// The processes in the cgroup now.
    pub fn processes(&self) -> Vec<u32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Waits up to `grace` for the cgroup to empty; returns how many processes were then
    /// killed.
    pub async fn wait_empty(&self, grace: Duration) -> usize {
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if self.processes().is_empty() {
                return 0;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left = self.processes().len();
        self.kill_all().await;
        left
    }

    /// SIGKILLs everything in the cgroup until it is empty (`cgroup.kill` where the kernel
    /// has it, 5.14+, else process by process, again while forks race the kills).
    pub async fn kill_all(&self) {
        let kill_file = self.dir.join("cgroup.kill");
        for _ in 0..100 {
            let pids = self.processes();
            if pids.is_empty() {
                return;
            }
            let killed_by_file = std::fs::OpenOptions::new()
                .write(true)
                .open(&kill_file)
                .and_then(|mut f| f.write_all(b"1"))
                .is_ok();
            if !killed_by_file {
                for pid in pids {
                    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for RecordCgroup {
    /// An empty cgroup directory is removed (rmdir); a cgroup still holding processes cannot
    /// be, and is left with a warning.
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir(&self.dir) {
            tracing::warn!(cgroup = %self.dir.display(), %error, "could not remove the recording's cgroup");
        }
    }
}
