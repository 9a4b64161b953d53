//! Who is at each end of a call: the process (`process`, `cmdline`, `users`), its cgroup
//! (`cgroup`) and what the path says of containers, pods and systemd units (`container`,
//! `runtime_names`), Kubernetes metadata from watches (`kubernetes`), the service name
//! (`naming`), and the stage that puts it all on each call (`resolver`).

pub mod cgroup;
pub mod cmdline;
pub mod container;
pub mod kubernetes;
pub mod model;
pub mod naming;
pub mod process;
pub mod resolver;
pub mod runtime_names;
pub mod users;

pub use model::Identity;

/// This host's name (`host.name`), as the kernel knows it.
pub fn kernel_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
