//! Who is at each end of a call. For now: local processes (pid, executable); containers and
//! Kubernetes come with the identity issue.

pub mod cgroup;
pub mod process;
