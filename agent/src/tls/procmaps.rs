//! The files a process has mapped as code, from /proc/PID/maps: its executable and every
//! library, including those loaded later with dlopen.

use std::{collections::HashSet, io, path::PathBuf};

/// A file mapped executable by a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedFile {
    /// The path as the process sees it (inside its mount namespace).
    pub path: String,
}

impl MappedFile {
    /// The same file seen from the agent: through the process's root, so files inside
    /// containers resolve in the container's filesystem.
    pub fn host_path(&self, proc_root: &str, pid: u32) -> PathBuf {
        PathBuf::from(format!("{proc_root}/{pid}/root{}", self.path))
    }
}

/// Reads the executable mappings of `pid`, each file once.
pub fn executable_files(proc_root: &str, pid: u32) -> io::Result<Vec<MappedFile>> {
    let text = std::fs::read_to_string(format!("{proc_root}/{pid}/maps"))?;
    Ok(parse(&text))
}

/// Parses maps lines: `address perms offset dev inode path`. Anonymous mappings, non-code
/// mappings and deleted files are skipped.
pub fn parse(text: &str) -> Vec<MappedFile> {
    let mut seen = HashSet::new();
    let mut files = Vec::new();
    for line in text.lines() {
        let mut fields = line.splitn(6, ' ');
        let (Some(_), Some(perms), Some(_), Some(_), Some(inode), Some(rest)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        let path = rest.trim_start();
        if perms.as_bytes().get(2) != Some(&b'x')
            || inode == "0"
            || !path.starts_with('/')
            || path.ends_with(" (deleted)")
        {
            continue;
        }
        if seen.insert(path) {
            files.push(MappedFile {
                path: path.to_string(),
            });
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_code_mappings_of_files_once() {
        let text = "\
5581a000-5581b000 r--p 00000000 fd:01 123 /usr/bin/curl
5581b000-5581c000 r-xp 00001000 fd:01 123 /usr/bin/curl
7f00-7f01 r-xp 00000000 fd:01 456 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f01-7f02 r-xp 00000000 fd:01 456 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f02-7f03 rw-p 00000000 00:00 0 
7f03-7f04 r-xp 00000000 00:00 0                          [vdso]
7f04-7f05 r-xp 00000000 fd:01 789 /tmp/lib with space.so
7f05-7f06 r-xp 00000000 fd:01 790 /tmp/gone.so (deleted)
";
        let paths: Vec<String> = parse(text).into_iter().map(|f| f.path).collect();
        assert_eq!(
            paths,
            [
                "/usr/bin/curl",
                "/usr/lib/x86_64-linux-gnu/libssl.so.3",
                "/tmp/lib with space.so"
            ]
        );
    }

    #[test]
    fn the_test_process_maps_its_own_executable() {
        let files = executable_files("/proc", std::process::id()).unwrap();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        assert!(files.iter().any(|f| std::path::Path::new(&f.path) == exe));
        assert_eq!(
            files[0].host_path("/proc", 7).to_string_lossy(),
            format!("/proc/7/root{}", files[0].path)
        );
    }
}
