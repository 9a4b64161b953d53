//! Files as a process sees them, opened from the agent: resolved inside the process's root
//! (`/proc/PID/root`) as if chrooted there, so that no symlink a container plants (absolute, or
//! climbing with `..`) leads the agent to a file of the host, and no procfs magic link is
//! followed. Used to check the program an exec named, and to open a mapped library where its
//! mapping (`/proc/PID/map_files`) cannot be opened.

use std::{fs::File, io};

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// Opens `path` of process `pid` with `flags` (`O_CLOEXEC` is added).
pub fn open(proc_root: &str, pid: u32, path: &str, flags: OFlags) -> io::Result<File> {
    let root = File::open(format!("{proc_root}/{pid}/root"))?;
    let file = rustix::fs::openat2(
        &root,
        path,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )?;
    Ok(File::from(file))
}
