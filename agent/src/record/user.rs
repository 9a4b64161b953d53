//! Who the recorded command runs as. `sudo sightline record -- make test` needs root for the
//! probes, not for the tests: the command runs as the user who invoked sudo (`SUDO_UID`,
//! `SUDO_GID`), with that user's home, so it writes no root-owned files into the checkout and
//! its tests see the privileges they will have everywhere else. `--as-root` keeps root.

/// The invoking user, when sightline runs as root under sudo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvokingUser {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
    pub home: String,
}

impl InvokingUser {
    /// From sudo's variables and the user's /etc/passwd line (`None`: not under sudo, or
    /// sudo was run by root itself).
    pub fn from_environment(passwd: &str) -> Option<Self> {
        let id = |name: &str| std::env::var(name).ok()?.parse::<u32>().ok();
        let (uid, gid) = (id("SUDO_UID")?, id("SUDO_GID")?);
        if uid == 0 || !rustix::process::geteuid().is_root() {
            return None;
        }
        let (name, home) = passwd_entry(passwd, uid)
            .unwrap_or_else(|| (std::env::var("SUDO_USER").unwrap_or_default(), "/".into()));
        Some(Self {
            uid,
            gid,
            name,
            home,
        })
    }

    /// Makes `command` run as this user: supplementary groups dropped, then the group, then
    /// the user, in the child just before exec (after it joined the run's cgroup, which
    /// needs root).
    pub fn apply(&self, command: &mut tokio::process::Command) {
        command
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name);
        let (uid, gid) = (self.uid, self.gid);
        #[allow(unsafe_code)]
        // SAFETY: runs in the forked child before exec, after the cgroup closure; only
        // async-signal-safe system calls (setgroups, setgid, setuid), no allocation.
        unsafe {
            command.pre_exec(move || {
                let check = |rc: libc::c_int| {
                    if rc == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                };
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setgid(gid))?;
                check(libc::setuid(uid))
            });
        }
    }
}

impl InvokingUser {
    /// Gives the run's database, its SQLite companions and its key to this user, so the gate
    /// and later CI steps read them without root.
    pub fn give(&self, db: &std::path::Path) {
        for suffix in ["", "-wal", "-shm", ".key"] {
            let mut path = db.as_os_str().to_owned();
            path.push(suffix);
            let _ = std::os::unix::fs::chown(&path, Some(self.uid), Some(self.gid));
        }
    }
}

/// The name and home of `uid` in the text of /etc/passwd.
fn passwd_entry(passwd: &str, uid: u32) -> Option<(String, String)> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 7 && fields[2].parse::<u32>().ok() == Some(uid))
            .then(|| (fields[0].to_string(), fields[5].to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_users_name_and_home() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nci:x:1001:1001:CI,,,:/home/ci:/bin/sh\n";
        assert_eq!(
            passwd_entry(passwd, 1001),
            Some(("ci".to_string(), "/home/ci".to_string()))
        );
        assert_eq!(passwd_entry(passwd, 5), None);
        assert_eq!(passwd_entry("broken line\n", 0), None);
    }
}
