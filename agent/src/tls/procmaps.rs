//! The files a process has mapped as code, from /proc/PID/maps: its executable and every
//! library, including those loaded later with dlopen.

use std::{
    collections::HashSet,
    fs::File,
    io,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use rustix::fs::OFlags;

/// A file mapped executable by a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedFile {
    /// The path as the process sees it (inside its mount namespace).
    pub path: String,
}

impl MappedFile {
    /// Opens the file as the process sees it, inside its root (`crate::proc_root`).
    /// Non-blocking, so a FIFO put in a library's place cannot hang the agent.
    pub fn open(&self, proc_root: &str, pid: u32) -> io::Result<OpenedFile> {
        let flags = OFlags::RDONLY | OFlags::NONBLOCK;
        let file = crate::proc_root::open(proc_root, pid, &self.path, flags)?;
        let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        Ok(OpenedFile { file, path })
    }
}

/// A mapped file the agent opened. Everything after the open (ELF reads, uprobe attach) goes
/// through the descriptor's own path, so nothing is resolved twice and the file stays the same
/// one even if the process exits or the container swaps the path meanwhile.
#[derive(Debug)]
pub struct OpenedFile {
    file: File,
    path: PathBuf,
}

impl OpenedFile {
    /// `/proc/self/fd/N`, for APIs that take a path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn metadata(&self) -> io::Result<std::fs::Metadata> {
        self.file.metadata()
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
        let opened = files[0].open("/proc", std::process::id()).unwrap();
        assert_eq!(
            std::fs::read(opened.path()).unwrap(),
            std::fs::read(&files[0].path).unwrap()
        );
    }

    /// A process root laid out as `<proc>/7/root` holding a container's files, with the
    /// symlinks a hostile container could plant.
    #[test]
    fn symlinks_resolve_inside_the_process_root_and_never_outside() {
        use std::os::unix::fs::symlink;
        let proc = tempfile::tempdir().unwrap();
        let root = proc.path().join("7/root");
        let lib = root.join("usr/lib");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(lib.join("libssl.so.3"), b"inside").unwrap();
        // Outside the root: a file the host has.
        std::fs::write(proc.path().join("secret"), b"host").unwrap();
        symlink("libssl.so.3", lib.join("relative.so")).unwrap();
        symlink("/usr/lib/libssl.so.3", lib.join("absolute.so")).unwrap();
        symlink(proc.path().join("secret"), lib.join("escape.so")).unwrap();
        symlink("../../../../../../../../secret", lib.join("climb.so")).unwrap();
        symlink("/proc/self/root/etc/hostname", lib.join("magic.so")).unwrap();
        let proc_root = proc.path().to_str().unwrap();
        let read = |name: &str| {
            MappedFile {
                path: format!("/usr/lib/{name}"),
            }
            .open(proc_root, 7)
            .map(|f| std::fs::read(f.path()).unwrap())
            .map_err(|e| e.kind())
        };
        assert_eq!(read("libssl.so.3"), Ok(b"inside".to_vec()));
        assert_eq!(read("relative.so"), Ok(b"inside".to_vec()));
        // Absolute targets are taken from the process's root, not the agent's.
        assert_eq!(read("absolute.so"), Ok(b"inside".to_vec()));
        assert_eq!(read("escape.so"), Err(io::ErrorKind::NotFound));
        // `..` stops at the process's root: <root>/secret does not exist.
        assert_eq!(read("climb.so"), Err(io::ErrorKind::NotFound));
        assert!(read("magic.so").is_err());
        // A FIFO in a library's place: opened without blocking (then refused as no file).
        rustix::fs::mknodat(
            rustix::fs::CWD,
            lib.join("fifo.so"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let fifo = MappedFile {
            path: "/usr/lib/fifo.so".to_string(),
        }
        .open(proc_root, 7)
        .unwrap();
        assert!(!fifo.metadata().unwrap().is_file());
    }
}
