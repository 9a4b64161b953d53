//! Two network namespaces joined by a veth pair: two "hosts" whose calls cross a real network
//! stack. Removed when dropped.

use std::process::Command;

pub struct TwoHosts {
    pub a: String,
    pub b: String,
    /// The veth ends in A and in B.
    devices: (String, String),
    /// Host A's address.
    pub a_ip: String,
    /// Host B's addresses (the first is its main one).
    pub b_ips: Vec<String>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TwoHosts {
    /// Hosts A (10.201.N.1) and B (10.201.N.2 plus `extra_b` more addresses).
    pub fn create(extra_b: usize) -> TwoHosts {
        let id = std::process::id() % 100_000;
        TwoHosts::create_in(&format!("10.201.{}", id % 250), extra_b)
    }

    /// Hosts A (`subnet`.1) and B (`subnet`.2 plus `extra_b` more addresses) on the /24
    /// `subnet` (three octets).
    pub fn create_in(subnet: &str, extra_b: usize) -> TwoHosts {
        let id = std::process::id() % 100_000;
        let (va, vb) = (format!("sla{id}"), format!("slb{id}"));
        let hosts = TwoHosts {
            a: format!("sl-a-{id}"),
            b: format!("sl-b-{id}"),
            devices: (va.clone(), vb.clone()),
            a_ip: format!("{subnet}.1"),
            b_ips: (0..=extra_b)
                .map(|i| format!("{subnet}.{}", i + 2))
                .collect(),
        };
        ip(&["netns", "add", &hosts.a]);
        ip(&["netns", "add", &hosts.b]);
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb]);
        ip(&["link", "set", &va, "netns", &hosts.a]);
        ip(&["link", "set", &vb, "netns", &hosts.b]);
        ip(&[
            "-n",
            &hosts.a,
            "addr",
            "add",
            &format!("{}/24", hosts.a_ip),
            "dev",
            &va,
        ]);
        for address in &hosts.b_ips {
            ip(&[
                "-n",
                &hosts.b,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                &vb,
            ]);
        }
        for (ns, dev) in [(&hosts.a, &va), (&hosts.b, &vb)] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        hosts
    }

    /// A second subnet on the same link: `a` (CIDR) on host A, `b` on host B.
    pub fn add_subnet(&self, a: &str, b: &str) {
        ip(&["-n", &self.a, "addr", "add", a, "dev", &self.devices.0]);
        ip(&["-n", &self.b, "addr", "add", b, "dev", &self.devices.1]);
    }

    /// `program args...` run inside namespace `ns` (same pid: `ip netns exec` execs it).
    pub fn command(ns: &str, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, program]).args(args);
        cmd
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
