//! Turns the command line's process, cgroup and port filters into the kernel's filter maps and
//! flag bits. Filtering in the kernel means an excluded process costs one map lookup, not a copy.

use agent_common::config::{
    FILTER_CGROUPS_ANY, FILTER_CGROUPS_INCLUDE_ONLY, FILTER_EXCLUDE, FILTER_INCLUDE,
    FILTER_PIDS_ANY, FILTER_PIDS_INCLUDE_ONLY, FILTER_PORTS_ANY, FILTER_PORTS_INCLUDE_ONLY,
};
use aya::{Ebpf, maps::HashMap};

use super::ProbeError;

/// What to capture. Each include list, when not empty, restricts capture to its members; the
/// lists combine with AND. Excludes always win.
#[derive(Clone, Debug, Default)]
pub struct Filters {
    pub pids: Vec<u32>,
    pub exclude_pids: Vec<u32>,
    /// cgroup v2 directories (absolute, or relative to /sys/fs/cgroup).
    pub cgroups: Vec<String>,
    pub exclude_cgroups: Vec<String>,
    pub ports: Vec<u16>,
    pub exclude_ports: Vec<u16>,
}

impl Filters {
    /// The `FILTER_*` bits for the kernel settings.
    pub fn flags(&self) -> u32 {
        let mut flags = 0;
        if !self.pids.is_empty() {
            flags |= FILTER_PIDS_INCLUDE_ONLY | FILTER_PIDS_ANY;
        }
        if !self.exclude_pids.is_empty() {
            flags |= FILTER_PIDS_ANY;
        }
        if !self.cgroups.is_empty() {
            flags |= FILTER_CGROUPS_INCLUDE_ONLY | FILTER_CGROUPS_ANY;
        }
        if !self.exclude_cgroups.is_empty() {
            flags |= FILTER_CGROUPS_ANY;
        }
        if !self.ports.is_empty() {
            flags |= FILTER_PORTS_INCLUDE_ONLY | FILTER_PORTS_ANY;
        }
        if !self.exclude_ports.is_empty() {
            flags |= FILTER_PORTS_ANY;
        }
        flags
    }

    /// Fills the kernel's filter maps. Excludes are written last so they win over includes.
    pub fn apply(&self, ebpf: &mut Ebpf) -> Result<(), ProbeError> {
        fill(ebpf, "PID_FILTER", &self.pids, &self.exclude_pids)?;
        let cgroups = |paths: &[String]| {
            paths
                .iter()
                .map(|p| cgroup_id(p))
                .collect::<Result<Vec<_>, _>>()
        };
        fill(
            ebpf,
            "CGROUP_FILTER",
            &cgroups(&self.cgroups)?,
            &cgroups(&self.exclude_cgroups)?,
        )?;
        fill(ebpf, "PORT_FILTER", &self.ports, &self.exclude_ports)
    }
}

/// Writes FILTER_INCLUDE for `include`, then FILTER_EXCLUDE for `exclude`, into a filter map.
fn fill<K: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &str,
    include: &[K],
    exclude: &[K],
) -> Result<(), ProbeError> {
    let mut filter: HashMap<_, K, u8> = map(ebpf, name)?;
    for (keys, verdict) in [(include, FILTER_INCLUDE), (exclude, FILTER_EXCLUDE)] {
        for key in keys {
            filter
                .insert(key, verdict, 0)
                .map_err(|source| map_error(name, source))?;
        }
    }
    Ok(())
}

/// The cgroup v2 id of a cgroup directory (absolute, or relative to the cgroup2 mount).
pub fn cgroup_id(path: &str) -> Result<u64, ProbeError> {
    let dir = crate::identity::cgroup::cgroup_dir(path).ok_or_else(|| ProbeError::Cgroup {
        path: path.to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no cgroup2 hierarchy is mounted",
        ),
    })?;
    crate::identity::cgroup::cgroup_id(&dir).map_err(|source| ProbeError::Cgroup {
        path: dir.display().to_string(),
        source,
    })
}

fn map<'a, K: aya::Pod, V: aya::Pod>(
    ebpf: &'a mut Ebpf,
    name: &str,
) -> Result<HashMap<&'a mut aya::maps::MapData, K, V>, ProbeError> {
    let raw = ebpf.map_mut(name).ok_or_else(|| ProbeError::MissingMap {
        name: name.to_string(),
    })?;
    HashMap::try_from(raw).map_err(|source| map_error(name, source))
}

fn map_error(name: &str, source: aya::maps::MapError) -> ProbeError {
    ProbeError::Map {
        name: name.to_string(),
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_the_lists() {
        assert_eq!(Filters::default().flags(), 0);
        let only_pid = Filters {
            pids: vec![1],
            ..Filters::default()
        };
        assert_eq!(only_pid.flags(), FILTER_PIDS_INCLUDE_ONLY | FILTER_PIDS_ANY);
        let exclude_port = Filters {
            exclude_ports: vec![22],
            ..Filters::default()
        };
        assert_eq!(exclude_port.flags(), FILTER_PORTS_ANY);
    }
}
