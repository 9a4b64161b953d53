//! What a cgroup path says about the process in it: its container (id and runtime), its
//! Kubernetes pod (the kubelet names pod cgroups after the pod UID) and its systemd unit.
//!
//! Paths follow the layouts the runtimes write, with the systemd cgroup driver
//! (`kubepods-burstable-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope`) or the
//! cgroupfs driver (`/kubepods/burstable/pod<uid>/<id>`). A runtime's own monitor (conmon)
//! lives in a cgroup of its own and is not a container.

use std::sync::Arc;

pub use crate::call::identity::Runtime;

/// Everything a cgroup path tells.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupFacts {
    pub container_id: Option<Arc<str>>,
    pub runtime: Option<Runtime>,
    /// UID of the Kubernetes pod, with dashes.
    pub pod_uid: Option<Arc<str>>,
    /// The deepest `.service` unit.
    pub systemd_unit: Option<Arc<str>>,
}

/// Scope prefixes of the runtimes that use the systemd driver, longest first where one is a
/// prefix of another.
const SCOPE_PREFIXES: &[(&str, Runtime)] = &[
    ("cri-containerd-", Runtime::Containerd),
    ("containerd-", Runtime::Containerd),
    ("docker-", Runtime::Docker),
    ("crio-", Runtime::CriO),
    ("libpod-", Runtime::Podman),
];

/// Reads a cgroup v2 path such as `/kubepods.slice/.../cri-containerd-<id>.scope`.
pub fn parse(path: &str) -> CgroupFacts {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let under_kubepods = parts
        .first()
        .is_some_and(|p| *p == "kubepods" || p.starts_with("kubepods"));
    let mut facts = CgroupFacts::default();
    for (index, part) in parts.iter().enumerate() {
        if under_kubepods && let Some(uid) = pod_uid(part) {
            facts.pod_uid = Some(Arc::from(uid));
            continue;
        }
        if let Some((id, runtime)) = scope_container(part).or_else(|| podman_cgroupfs(part)) {
            facts.container_id = Some(Arc::from(id));
            facts.runtime = Some(runtime);
            continue;
        }
        let parent = index.checked_sub(1).map(|i| parts[i]);
        if is_container_id(part) {
            // cgroupfs driver: /docker/<id>, /kubepods/.../pod<uid>/<id>.
            let runtime = match parent {
                Some("docker") => Some(Runtime::Docker),
                _ if facts.pod_uid.is_some() => Some(Runtime::Unknown),
                _ => None,
            };
            if let Some(runtime) = runtime {
                facts.container_id = Some(Arc::from(*part));
                facts.runtime = Some(runtime);
            }
            continue;
        }
        if part.ends_with(".service") && !is_user_manager(part) {
            facts.systemd_unit = Some(Arc::from(*part));
        }
    }
    facts
}

/// `kubepods-burstable-pod<uid_with_underscores>.slice` or `pod<uid>` -> the pod UID.
fn pod_uid(part: &str) -> Option<String> {
    let name = part.strip_suffix(".slice").unwrap_or(part);
    let at = name.rfind("pod")?;
    if at > 0 && !name[..at].ends_with('-') {
        return None;
    }
    let uid = name[at + 3..].replace('_', "-");
    let is_uid = uid.len() == 36
        && uid.chars().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    is_uid.then_some(uid)
}

/// `cri-containerd-<id>.scope` -> (id, runtime). Monitors (`crio-conmon-`, `libpod-conmon-`)
/// are not containers.
fn scope_container(part: &str) -> Option<(&str, Runtime)> {
    let name = part.strip_suffix(".scope")?;
    SCOPE_PREFIXES.iter().find_map(|(prefix, runtime)| {
        let id = name.strip_prefix(prefix)?;
        is_container_id(id).then_some((id, *runtime))
    })
}

/// Podman with the cgroupfs manager (cgroup v1 hosts): `/libpod_parent/libpod-<id>`.
fn podman_cgroupfs(part: &str) -> Option<(&str, Runtime)> {
    let id = part.strip_prefix("libpod-")?;
    is_container_id(id).then_some((id, Runtime::Podman))
}

fn is_container_id(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `user@1000.service` is a user's service manager, not the unit a process runs as.
fn is_user_manager(part: &str) -> bool {
    part.starts_with("user@")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4c1c5d4a1f0e3b2a9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e";
    const UID: &str = "0d6b2f4e-1a2b-4c3d-8e9f-0a1b2c3d4e5f";

    fn facts(path: &str) -> (Option<&'static str>, Option<Runtime>, Option<String>) {
        let f = parse(path);
        (
            f.container_id
                .map(|id| if &*id == ID { "ID" } else { "other" }),
            f.runtime,
            f.pod_uid.map(|u| u.to_string()),
        )
    }

    #[test]
    fn kubelet_systemd_driver_paths() {
        let uid = UID.replace('-', "_");
        for (scope, runtime) in [
            (format!("cri-containerd-{ID}.scope"), Runtime::Containerd),
            (format!("crio-{ID}.scope"), Runtime::CriO),
            (format!("docker-{ID}.scope"), Runtime::Docker),
        ] {
            let path = format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/{scope}"
            );
            assert_eq!(
                facts(&path),
                (Some("ID"), Some(runtime), Some(UID.into())),
                "{path}"
            );
        }
        let guaranteed = format!("/kubepods.slice/kubepods-pod{uid}.slice/crio-{ID}.scope");
        assert_eq!(
            facts(&guaranteed),
            (Some("ID"), Some(Runtime::CriO), Some(UID.into()))
        );
    }

    #[test]
    fn kubelet_cgroupfs_driver_paths() {
        let path = format!("/kubepods/besteffort/pod{UID}/{ID}");
        assert_eq!(
            facts(&path),
            (Some("ID"), Some(Runtime::Unknown), Some(UID.into()))
        );
        // The pod's own cgroup (pause sandbox processes live below it).
        assert_eq!(
            facts(&format!("/kubepods/burstable/pod{UID}")),
            (None, None, Some(UID.into()))
        );
    }

    #[test]
    fn docker_podman_and_containerd_outside_kubernetes() {
        assert_eq!(
            facts(&format!("/system.slice/docker-{ID}.scope")),
            (Some("ID"), Some(Runtime::Docker), None)
        );
        assert_eq!(
            facts(&format!("/docker/{ID}")),
            (Some("ID"), Some(Runtime::Docker), None)
        );
        assert_eq!(
            facts(&format!("/machine.slice/libpod-{ID}.scope/container")),
            (Some("ID"), Some(Runtime::Podman), None)
        );
        assert_eq!(
            facts(&format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"
            )),
            (Some("ID"), Some(Runtime::Podman), None)
        );
        assert_eq!(
            facts(&format!("/system.slice/containerd-{ID}.scope")),
            (Some("ID"), Some(Runtime::Containerd), None)
        );
        // Podman's cgroupfs manager (seen with Debian's podman 4.3 on a hybrid host).
        assert_eq!(
            facts(&format!("/libpod_parent/libpod-{ID}")),
            (Some("ID"), Some(Runtime::Podman), None)
        );
    }

    #[test]
    fn monitors_and_ordinary_paths_are_not_containers() {
        assert_eq!(
            facts(&format!("/machine.slice/libpod-conmon-{ID}.scope")),
            (None, None, None)
        );
        assert_eq!(
            facts(&format!("/system.slice/crio-conmon-{ID}.scope")),
            (None, None, None)
        );
        // A 64-hex directory outside /docker and outside a pod is not a container.
        assert_eq!(facts(&format!("/app/{ID}")), (None, None, None));
        // "pod" in a name outside the kubelet's tree is not a pod.
        assert_eq!(facts(&format!("/system.slice/pod{UID}.service")).2, None);
    }

    #[test]
    fn systemd_units() {
        let unit = |p: &str| parse(p).systemd_unit.map(|u| u.to_string());
        assert_eq!(
            unit("/system.slice/nginx.service").as_deref(),
            Some("nginx.service")
        );
        assert_eq!(
            unit("/user.slice/user-1000.slice/user@1000.service/app.slice/api.service").as_deref(),
            Some("api.service")
        );
        assert_eq!(
            unit("/user.slice/user-1000.slice/user@1000.service/init.scope"),
            None
        );
        assert_eq!(unit("/user.slice/user-1000.slice/session-3.scope"), None);
        assert_eq!(unit("/"), None);
    }
}
