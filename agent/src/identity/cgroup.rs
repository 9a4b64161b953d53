//! cgroup v2: where the unified hierarchy is mounted (/sys/fs/cgroup on unified hosts,
//! /sys/fs/cgroup/unified on hybrid ones) and the id the kernel gives a cgroup (the inode
//! number of its directory, what `bpf_get_current_cgroup_id` returns).

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

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
