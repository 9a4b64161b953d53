//! A hostile container cannot lead the agent out of its root. A container controls both the
//! path its maps show (a lazily unmounted mount shows a path relative to that mount) and what
//! is at that path in its root (a symlink). An absolute symlink followed through
//! /proc/PID/root resolves against the agent's root: the host. The agent opens the very files
//! mapped (/proc/PID/map_files), and else looks paths up inside the process's root (the unit
//! tests of `tls::procmaps`). inotifywait (inotify-tools) watches which files it opens.
#![allow(clippy::unwrap_used)]

use std::{
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use sightline_tests::{Agent, Program};

const LIBSSL: &str = "/usr/lib/x86_64-linux-gnu/libssl.so.3";
const LIBGNUTLS: &str = "/usr/lib/x86_64-linux-gnu/libgnutls.so.30";

/// The container's program: maps two libraries from its bind mounts, then detaches both mounts,
/// so its maps show them as `/libssl.so.3` and `/libgnutls.so.30`.
const CONTAINER_SCRIPT: &str = "
import ctypes, sys
ctypes.CDLL('/mnt-a/libssl.so.3')
ctypes.CDLL('/mnt-b/libgnutls.so.30')
libc = ctypes.CDLL(None, use_errno=True)
for target in (b'/mnt-a', b'/mnt-b'):
    assert libc.umount2(target, 2) == 0, ctypes.get_errno()  # MNT_DETACH
print('detached', flush=True)
sys.stdin.readline()
";

/// Starts inotifywait on `files`, writing each open to the returned file once it watches.
fn watch_opens(files: &[&Path], dir: &Path) -> (Program, PathBuf) {
    let out = dir.join("opens.txt");
    let mut cmd = Command::new("sh");
    let list: Vec<String> = files.iter().map(|f| format!("'{}'", f.display())).collect();
    cmd.args([
        "-c",
        &format!(
            "exec inotifywait -m -e open --format '%w' -o '{}' {} 2>&1",
            out.display(),
            list.join(" ")
        ),
    ]);
    let mut watcher = Program::spawn(cmd);
    while watcher.line() != "Watches established." {}
    (watcher, out)
}

fn opens(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_symlink_in_a_container_never_leads_the_agent_to_a_host_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    for sub in ["usr", "mnt-a", "mnt-b", "inside"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    for (link, target) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        symlink(target, root.join(link)).unwrap();
    }
    let (a, b, host_only) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("host"),
    );
    for d in [&a, &b, &host_only] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::copy(LIBSSL, a.join("libssl.so.3")).unwrap();
    std::fs::copy(LIBGNUTLS, b.join("libgnutls.so.30")).unwrap();
    // A TLS library that exists only on the host (the escape target) and one inside the
    // container's root (where a symlink may lead).
    let host_file = host_only.join("libssl.so.3");
    std::fs::copy(LIBSSL, &host_file).unwrap();
    std::fs::copy(LIBGNUTLS, root.join("inside/libgnutls.so.30")).unwrap();
    // The file the container maps as /libgnutls.so.30: what the agent opens on each scan.
    let mapped_file = b.join("libgnutls.so.30");
    let (watcher, opened) = watch_opens(&[&host_file, &mapped_file], dir.path());

    let mut agent = Agent::start(&["--tls-rescan-secs", "1"]);
    let script = format!(
        "mount --bind /usr {r}/usr && mount --bind {a} {r}/mnt-a && mount --bind {b} {r}/mnt-b \
         && exec chroot {r} python3 -c \"$0\"",
        r = root.display(),
        a = a.display(),
        b = b.display(),
    );
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
        CONTAINER_SCRIPT,
    ]);
    let mut container = Program::spawn_interactive(cmd);
    assert_eq!(container.line(), "detached");
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", container.pid())).unwrap();
    assert!(maps.contains(" /libssl.so.3\n"), "{maps}");
    assert!(maps.contains(" /libgnutls.so.30\n"), "{maps}");

    // What the container puts at those paths in its root: an absolute symlink to the host's
    // file, and an absolute symlink to a file inside its own root.
    symlink(&host_file, root.join("libssl.so.3")).unwrap();
    symlink("/inside/libgnutls.so.30", root.join("libgnutls.so.30")).unwrap();

    // Each rescan opens the mapped files again: two opens of the mapped file mean a whole scan
    // ran after the symlinks were planted (the scan opens both files, in the order of maps).
    let deadline = Instant::now() + Duration::from_secs(60);
    let inside = mapped_file.display().to_string();
    let host = host_file.display().to_string();
    while opens(&opened).iter().filter(|o| **o == inside).count() < 2 {
        assert!(
            !opens(&opened).contains(&host),
            "the agent opened the host's file through the container's symlink"
        );
        assert!(
            Instant::now() < deadline,
            "the agent never opened the container's mapped file twice: {:?}",
            opens(&opened)
        );
        assert!(agent.is_running(), "{}", agent.stderr());
        std::thread::sleep(Duration::from_millis(200));
    }
    container.send_line("done");
    let log = agent.stop();
    drop(watcher);
    let seen = opens(&opened);
    assert!(
        !seen.contains(&host),
        "the agent opened the host's file through the container's symlink: {seen:?}\n{log}"
    );
}
