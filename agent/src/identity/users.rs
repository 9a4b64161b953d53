//! User names for `process.owner`: the host's /etc/passwd, read through the host's init
//! process (`<proc root>/1/root/etc/passwd`) so that an agent running in a container names
//! the host's users, not its image's. Read once; unknown uids are shown as numbers.

use std::{collections::HashMap, sync::Arc};

pub struct Users {
    names: HashMap<u32, Arc<str>>,
}

impl Users {
    pub fn load(proc_root: &str) -> Self {
        let text = std::fs::read_to_string(format!("{proc_root}/1/root/etc/passwd"))
            .or_else(|_| std::fs::read_to_string("/etc/passwd"))
            .unwrap_or_default();
        Self::parse(&text)
    }

    pub fn parse(passwd: &str) -> Self {
        let names = passwd
            .lines()
            .filter_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let uid = fields.nth(1)?.parse().ok()?;
                (!name.is_empty()).then(|| (uid, Arc::from(name)))
            })
            .collect();
        Self { names }
    }

    pub fn name(&self, uid: u32) -> Arc<str> {
        self.names
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| Arc::from(uid.to_string()))
    }
}

/// The real uid in the text of /proc/PID/status.
pub fn real_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_users_and_falls_back_to_numbers() {
        let users = Users::parse(
            "root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\nbroken\n",
        );
        assert_eq!(&*users.name(0), "root");
        assert_eq!(&*users.name(33), "www-data");
        assert_eq!(&*users.name(1234), "1234");
        assert_eq!(
            real_uid("Name:\tcurl\nUid:\t1000\t1000\t1000\t1000\n"),
            Some(1000)
        );
    }
}
