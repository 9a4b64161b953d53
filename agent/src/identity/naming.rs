//! `service.name` and `service.namespace`, in the documented order (first that applies wins):
//!
//! 1. the first `[[service_rules]]` entry of the config file whose every condition matches;
//! 2. the pod annotation `resource.opentelemetry.io/service.name`;
//! 3. the pod label `app.kubernetes.io/name`;
//! 4. the Kubernetes workload (Deployment, StatefulSet, DaemonSet, CronJob, Job, ReplicaSet);
//! 5. the container name (Kubernetes container, else the runtime's name for it);
//! 6. the systemd unit, without `.service`;
//! 7. the executable name.
//!
//! `service.namespace`: the rule's, else the pod annotation
//! `resource.opentelemetry.io/service.namespace`, else the Kubernetes namespace.

use std::{collections::BTreeMap, sync::Arc};

use serde::Deserialize;

use super::model::{NameSource, PodMeta};

const ANNOTATION_NAME: &str = "resource.opentelemetry.io/service.name";
const ANNOTATION_NAMESPACE: &str = "resource.opentelemetry.io/service.namespace";
const LABEL_NAME: &str = "app.kubernetes.io/name";

/// A regular expression from the config file, checked when the file is read.
#[derive(Clone, Debug)]
pub struct Pattern(pub regex::Regex);

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        regex::Regex::new(&text)
            .map(Pattern)
            .map_err(|e| serde::de::Error::custom(format!("invalid regular expression: {e}")))
    }
}

/// One `[[service_rules]]` entry: a name for the processes that match every condition given.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "RawRule")]
pub struct ServiceRule {
    pub name: String,
    pub namespace: Option<String>,
    pub conditions: Conditions,
}

#[derive(Clone, Debug, Default)]
pub struct Conditions {
    /// The port the process serves the call on (server ends only).
    pub port: Option<u16>,
    /// Executable base name, or full path when it starts with `/`.
    pub executable: Option<String>,
    /// Regular expression searched in the command line (secrets already removed).
    pub command_line: Option<Pattern>,
    pub container_name: Option<String>,
    /// Regular expression searched in the cgroup v2 path.
    pub cgroup: Option<Pattern>,
    pub k8s_namespace: Option<String>,
    pub k8s_labels: BTreeMap<String, String>,
    pub k8s_annotations: BTreeMap<String, String>,
    /// Only the ends that serve the call (with any port): names a cgroup's servers without
    /// naming its clients too (`sightline record --service`).
    pub serving: bool,
}

impl Conditions {
    fn is_empty(&self) -> bool {
        self.port.is_none()
            && self.executable.is_none()
            && self.command_line.is_none()
            && self.container_name.is_none()
            && self.cgroup.is_none()
            && self.k8s_namespace.is_none()
            && self.k8s_labels.is_empty()
            && self.k8s_annotations.is_empty()
    }

    fn matches(&self, s: &Subject<'_>) -> bool {
        let pod = s.pod;
        self.port.is_none_or(|p| s.server_port == Some(p))
            && (!self.serving || s.server_port.is_some())
            && self.executable.as_deref().is_none_or(|e| {
                if e.starts_with('/') {
                    s.executable_path == Some(e)
                } else {
                    s.executable_name == Some(e)
                }
            })
            && self
                .command_line
                .as_ref()
                .is_none_or(|p| s.command_line.is_some_and(|c| p.0.is_match(c)))
            && self
                .container_name
                .as_deref()
                .is_none_or(|n| s.container_name == Some(n))
            && self
                .cgroup
                .as_ref()
                .is_none_or(|p| s.cgroup.is_some_and(|c| p.0.is_match(c)))
            && self
                .k8s_namespace
                .as_deref()
                .is_none_or(|n| pod.is_some_and(|p| &*p.namespace == n))
            && subset(&self.k8s_labels, pod.map(|p| &p.labels))
            && subset(&self.k8s_annotations, pod.map(|p| &p.annotations))
    }
}

fn subset(wanted: &BTreeMap<String, String>, have: Option<&BTreeMap<String, String>>) -> bool {
    wanted.is_empty() || have.is_some_and(|have| wanted.iter().all(|(k, v)| have.get(k) == Some(v)))
}

/// The rule as written: name, namespace and conditions side by side (no `flatten`: serde
/// cannot reject unknown keys through it).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    namespace: Option<String>,
    port: Option<u16>,
    executable: Option<String>,
    command_line: Option<Pattern>,
    container_name: Option<String>,
    cgroup: Option<Pattern>,
    k8s_namespace: Option<String>,
    #[serde(default)]
    k8s_labels: BTreeMap<String, String>,
    #[serde(default)]
    k8s_annotations: BTreeMap<String, String>,
    #[serde(default)]
    serving: bool,
}

impl TryFrom<RawRule> for ServiceRule {
    type Error = String;

    fn try_from(raw: RawRule) -> Result<Self, String> {
        if raw.name.trim().is_empty() {
            return Err("a service rule needs a non-empty name".to_string());
        }
        let conditions = Conditions {
            port: raw.port,
            executable: raw.executable,
            command_line: raw.command_line,
            container_name: raw.container_name,
            cgroup: raw.cgroup,
            k8s_namespace: raw.k8s_namespace,
            k8s_labels: raw.k8s_labels,
            k8s_annotations: raw.k8s_annotations,
            serving: raw.serving,
        };
        if conditions.is_empty() {
            return Err(format!(
                "service rule {:?} has no condition (port, executable, command_line, \
                 container_name, cgroup, k8s_namespace, k8s_labels, k8s_annotations)",
                raw.name
            ));
        }
        Ok(Self {
            name: raw.name,
            namespace: raw.namespace,
            conditions,
        })
    }
}

/// What naming looks at for one end.
#[derive(Clone, Copy, Debug, Default)]
pub struct Subject<'a> {
    /// The local port when this end serves the call.
    pub server_port: Option<u16>,
    pub executable_name: Option<&'a str>,
    pub executable_path: Option<&'a str>,
    pub command_line: Option<&'a str>,
    pub container_name: Option<&'a str>,
    pub cgroup: Option<&'a str>,
    pub systemd_unit: Option<&'a str>,
    pub pod: Option<&'a PodMeta>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceName {
    pub name: Option<Arc<str>>,
    pub namespace: Option<Arc<str>>,
    pub source: Option<NameSource>,
}

/// Names an end by the rules of the module doc.
pub fn name(rules: &[ServiceRule], s: &Subject<'_>) -> ServiceName {
    let pod_namespace = s.pod.map(|p| {
        p.annotations
            .get(ANNOTATION_NAMESPACE)
            .map_or_else(|| p.namespace.clone(), |n| Arc::from(n.as_str()))
    });
    if let Some(rule) = rules.iter().find(|r| r.conditions.matches(s)) {
        return ServiceName {
            name: Some(Arc::from(rule.name.as_str())),
            namespace: rule.namespace.as_deref().map(Arc::from).or(pod_namespace),
            source: Some(NameSource::ConfigRule),
        };
    }
    let from_pod = s.pod.and_then(|pod| {
        pod.annotations
            .get(ANNOTATION_NAME)
            .map(|n| (Arc::from(n.as_str()), NameSource::Annotation))
            .or_else(|| {
                pod.labels
                    .get(LABEL_NAME)
                    .map(|n| (Arc::from(n.as_str()), NameSource::Label))
            })
            .or_else(|| {
                pod.workload
                    .as_ref()
                    .map(|w| (w.name.clone(), NameSource::Workload))
            })
    });
    let (name, source) = match from_pod
        .or_else(|| {
            s.container_name
                .map(|n| (Arc::from(n), NameSource::Container))
        })
        .or_else(|| {
            s.systemd_unit.map(|u| {
                let unit = u.strip_suffix(".service").unwrap_or(u);
                (Arc::from(unit), NameSource::SystemdUnit)
            })
        })
        .or_else(|| {
            s.executable_name
                .map(|e| (Arc::from(e), NameSource::Executable))
        }) {
        Some((name, source)) => (Some(name), Some(source)),
        None => (None, None),
    };
    ServiceName {
        name,
        namespace: pod_namespace,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::model::{Workload, WorkloadKind};

    fn rules(toml_text: &str) -> Vec<ServiceRule> {
        #[derive(Deserialize)]
        struct File {
            service_rules: Vec<ServiceRule>,
        }
        toml::from_str::<File>(toml_text)
            .expect("rules parse")
            .service_rules
    }

    fn pod() -> PodMeta {
        PodMeta {
            namespace: "shop".into(),
            name: "web-abc".into(),
            uid: "u".into(),
            workload: Some(Workload {
                kind: WorkloadKind::Deployment,
                name: "web".into(),
            }),
            ..PodMeta::default()
        }
    }

    fn named(rules: &[ServiceRule], s: &Subject<'_>) -> (String, Option<String>, NameSource) {
        let n = name(rules, s);
        (
            n.name.unwrap().to_string(),
            n.namespace.map(|n| n.to_string()),
            n.source.unwrap(),
        )
    }

    #[test]
    fn a_serving_rule_names_the_servers_of_its_cgroup_and_not_their_clients() {
        let rules =
            rules("[[service_rules]]\nname = \"demo\"\ncgroup = \"^/run-1$\"\nserving = true\n");
        let server = Subject {
            executable_name: Some("python3"),
            cgroup: Some("/run-1"),
            server_port: Some(8080),
            ..Subject::default()
        };
        assert_eq!(named(&rules, &server).0, "demo");
        let client = Subject {
            server_port: None,
            ..server
        };
        assert_eq!(named(&rules, &client).0, "python3");
        let elsewhere = Subject {
            cgroup: Some("/other"),
            ..server
        };
        assert_eq!(named(&rules, &elsewhere).0, "python3");
    }

    #[test]
    fn follows_the_documented_order() {
        let process = Subject {
            executable_name: Some("python3"),
            executable_path: Some("/usr/bin/python3"),
            ..Subject::default()
        };
        assert_eq!(
            named(&[], &process),
            ("python3".into(), None, NameSource::Executable)
        );
        let unit = Subject {
            systemd_unit: Some("billing.service"),
            ..process
        };
        assert_eq!(named(&[], &unit).0, "billing");
        let container = Subject {
            container_name: Some("cart"),
            ..unit
        };
        assert_eq!(named(&[], &container).2, NameSource::Container);
        let mut meta = pod();
        let in_pod = Subject {
            pod: Some(&meta),
            ..container
        };
        assert_eq!(
            named(&[], &in_pod),
            ("web".into(), Some("shop".into()), NameSource::Workload)
        );
        let in_pod = |meta: &PodMeta| {
            named(
                &[],
                &Subject {
                    pod: Some(meta),
                    ..container
                },
            )
        };
        meta.labels.insert(LABEL_NAME.into(), "storefront".into());
        assert_eq!(in_pod(&meta).2, NameSource::Label);
        meta.annotations
            .insert(ANNOTATION_NAME.into(), "store".into());
        meta.annotations
            .insert(ANNOTATION_NAMESPACE.into(), "retail".into());
        assert_eq!(
            in_pod(&meta),
            (
                "store".into(),
                Some("retail".into()),
                NameSource::Annotation
            )
        );
    }

    #[test]
    fn rules_match_on_every_condition_given() {
        let rules = rules(
            r#"
            [[service_rules]]
            name = "orders"
            namespace = "shop"
            port = 8080
            executable = "python3"

            [[service_rules]]
            name = "checkout"
            command_line = "checkout\\.py"

            [[service_rules]]
            name = "labelled"
            k8s_labels = { tier = "front" }
            "#,
        );
        let server = Subject {
            server_port: Some(8080),
            executable_name: Some("python3"),
            command_line: Some("python3 -m http.server 8080"),
            ..Subject::default()
        };
        assert_eq!(
            named(&rules, &server),
            ("orders".into(), Some("shop".into()), NameSource::ConfigRule)
        );
        // Same process as a client (no server port): the port rule does not apply.
        let client = Subject {
            server_port: None,
            ..server
        };
        assert_eq!(named(&rules, &client).2, NameSource::Executable);
        let checkout = Subject {
            command_line: Some("python3 /srv/checkout.py --port 9000"),
            ..client
        };
        assert_eq!(named(&rules, &checkout).0, "checkout");
        let mut meta = pod();
        meta.labels.insert("tier".into(), "front".into());
        let labelled = Subject {
            pod: Some(&meta),
            ..client
        };
        assert_eq!(
            named(&rules, &labelled),
            (
                "labelled".into(),
                Some("shop".into()),
                NameSource::ConfigRule
            )
        );
    }
}
