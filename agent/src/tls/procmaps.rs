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
    /// The path as the process sees it (inside its mount namespace), without the kernel's
    /// ` (deleted)` mark.
    pub path: String,
    /// The address range of one of its code mappings (`7f00-7f01`), which names the mapping
    /// in /proc/PID/map_files.
    pub range: String,
    /// The file was deleted or replaced since it was mapped (a library upgraded under a
    /// running process): only the mapping still leads to it.
    pub deleted: bool,
}

impl MappedFile {
    /// Opens the very file the process mapped, through its mapping
    /// (`/proc/PID/map_files/<range>`: no path is looked up, so nothing a container puts at
    /// the path matters, and a deleted or replaced library is still the one in use). Where
    /// that is not allowed (it needs `CAP_SYS_ADMIN`), by its path inside the process's root
    /// (`crate::proc_root`), unless the file was deleted. Non-blocking, so a FIFO put in a
    /// library's place cannot hang the agent.
    pub fn open(&self, proc_root: &str, pid: u32) -> io::Result<OpenedFile> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mapping = format!("{proc_root}/{pid}/map_files/{}", self.range);
        let file = match File::options()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(mapping)
        {
            Ok(file) => file,
            Err(error) if self.deleted => return Err(error),
            Err(_) => {
                let flags = OFlags::RDONLY | OFlags::NONBLOCK;
                crate::proc_root::open(proc_root, pid, &self.path, flags)?
            }
        };
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
    /// A file opened elsewhere (an exec's, handed over by fanotify).
    pub fn from_file(file: File) -> Self {
        let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        Self { file, path }
    }

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

/// Parses maps lines: `address perms offset dev inode path`. Anonymous mappings and non-code
/// mappings are skipped.
pub fn parse(text: &str) -> Vec<MappedFile> {
    let mut seen = HashSet::new();
    let mut files = Vec::new();
    for line in text.lines() {
        let mut fields = line.splitn(6, ' ');
        let (Some(range), Some(perms), Some(_), Some(_), Some(inode), Some(rest)) = (
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
        if perms.as_bytes().get(2) != Some(&b'x') || inode == "0" || !path.starts_with('/') {
            continue;
        }
        let (path, deleted) = match path.strip_suffix(" (deleted)") {
            Some(path) => (path, true),
            None => (path, false),
        };
        // The same path twice is the same file, unless one of the two is a deleted one.
        if seen.insert((path, deleted)) {
            files.push(MappedFile {
                path: path.to_string(),
                range: range.to_string(),
                deleted,
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
        let files: Vec<(String, String, bool)> = parse(text)
            .into_iter()
            .map(|f| (f.path, f.range, f.deleted))
            .collect();
        let file =
            |path: &str, range: &str, deleted| (path.to_string(), range.to_string(), deleted);
        assert_eq!(
            files,
            [
                file("/usr/bin/curl", "5581b000-5581c000", false),
                file("/usr/lib/x86_64-linux-gnu/libssl.so.3", "7f00-7f01", false),
                file("/tmp/lib with space.so", "7f04-7f05", false),
                file("/tmp/gone.so", "7f05-7f06", true),
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

    /// A library replaced on disk while mapped (an upgrade under a running process): its
    /// mapping still leads to the old file, whatever is at the path now.
    #[test]
    fn a_deleted_mapped_file_is_opened_through_its_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old-lib.so");
        std::fs::write(&path, vec![7u8; 8192]).unwrap();
        #[allow(unsafe_code)]
        // Safety: a private read-only mapping of a file this test owns and never writes to.
        let map =
            unsafe { memmap2::MmapOptions::new().map_exec(&File::open(&path).unwrap()) }.unwrap();
        std::fs::write(dir.path().join("new-lib.so"), b"new").unwrap();
        std::fs::rename(dir.path().join("new-lib.so"), &path).unwrap();
        let files = executable_files("/proc", std::process::id()).unwrap();
        let mapped = files
            .iter()
            .find(|f| std::path::Path::new(&f.path) == path)
            .unwrap();
        assert!(mapped.deleted);
        let opened = mapped.open("/proc", std::process::id()).unwrap();
        assert_eq!(std::fs::read(opened.path()).unwrap(), vec![7u8; 8192]);
        drop(map);
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
            // No map_files in this fake /proc: the path is looked up inside the root.
            MappedFile {
                path: format!("/usr/lib/{name}"),
                range: "1000-2000".to_string(),
                deleted: false,
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
            range: "1000-2000".to_string(),
            deleted: false,
        }
        .open(proc_root, 7)
        .unwrap();
        assert!(!fifo.metadata().unwrap().is_file());
    }
}
