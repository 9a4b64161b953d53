//! The config file, TOML or YAML (by its extension), documented in the README. Every key is
//! checked: an unknown or misspelt key, a wrong type or a bad regular expression is an error
//! that names the file, line and column. Later stages add their own sections here.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{
    findings::{config::FindingsSection, rules::settings::RuleSettings},
    identity::{kubernetes::Mode, naming::ServiceRule},
    sink::otlp::settings::OtlpSection,
    source_error::{line_column, parser_message},
};
pub use crate::{
    inventory::spec_source::ApiSpecEntry,
    source_error::{ConfigError, yaml_error},
};

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub identity: IdentitySection,
    pub kubernetes: KubernetesSection,
    /// `service.name` rules, tried in order before the built-in naming.
    pub service_rules: Vec<ServiceRule>,
    /// API specs (OpenAPI 3.0/3.1, Swagger 2.0) to compare the inventory with.
    pub api_specs: Vec<ApiSpecEntry>,
    /// Authentication names, rules, thresholds and allowlists of the findings.
    pub findings: FindingsSection,
    /// Export to an OpenTelemetry collector.
    pub otlp: OtlpSection,
    /// Change tracking of the inventory.
    pub inventory: InventorySection,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventorySection {
    /// An endpoint not called for this many seconds has gone quiet (a change); default one
    /// day.
    pub quiet_after_seconds: u64,
    /// Remote proxies and load balancers (addresses or CIDR blocks) whose X-Forwarded-For
    /// names the caller, as a proxy on this host's does.
    pub trusted_proxies: Vec<crate::inventory::reach::Cidr>,
}

impl Default for InventorySection {
    fn default() -> Self {
        Self {
            quiet_after_seconds: 86_400,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentitySection {
    /// `host.name`; default: the kernel's host name.
    pub host_name: Option<String>,
    /// Docker's state directory, where container names are read.
    pub docker_root: PathBuf,
    /// Podman's (root) storage directory, where container names are read.
    pub podman_root: PathBuf,
    /// containerd's state directory: a Kubernetes container's OCI bundle there names it, its
    /// pod and namespace (without the API server).
    pub containerd_state: PathBuf,
    /// CRI-O's run root, the same for CRI-O.
    pub crio_state: PathBuf,
}

impl Default for IdentitySection {
    fn default() -> Self {
        Self {
            host_name: None,
            docker_root: PathBuf::from("/var/lib/docker"),
            podman_root: PathBuf::from("/var/lib/containers/storage"),
            containerd_state: PathBuf::from("/run/containerd"),
            crio_state: PathBuf::from("/run/containers/storage"),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesSection {
    pub mode: Mode,
    /// A kubeconfig file (relative paths are relative to the config file).
    pub kubeconfig: Option<PathBuf>,
    /// This node's name; default: $NODE_NAME, else the host name.
    pub node_name: Option<String>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let mut config = match extension {
            "toml" => Self::from_toml(&text),
            "yaml" | "yml" => Self::from_yaml(&text),
            _ => return Err(ConfigError::Format { path: shown }),
        }
        .map_err(|(line, column, message)| ConfigError::Invalid {
            path: shown,
            line,
            column,
            message,
        })?;
        if let Err(e) = RuleSettings::new(&config.findings) {
            return Err(ConfigError::Setting {
                path: path.display().to_string(),
                message: e.to_string(),
            });
        }
        if let Some(dir) = path.parent() {
            if let Some(key) = &config.findings.fingerprint_key_file
                && key.is_relative()
            {
                config.findings.fingerprint_key_file = Some(dir.join(key));
            }
            if let Some(kubeconfig) = &config.kubernetes.kubeconfig
                && kubeconfig.is_relative()
            {
                config.kubernetes.kubeconfig = Some(dir.join(kubeconfig));
            }
            let otlp = &mut config.otlp;
            for file in [
                &mut otlp.certificate,
                &mut otlp.client_certificate,
                &mut otlp.client_key,
            ]
            .into_iter()
            .flatten()
            {
                if file.is_relative() {
                    *file = dir.join(&*file);
                }
            }
            for spec in &mut config.api_specs {
                if spec.path.is_relative() {
                    spec.path = dir.join(&spec.path);
                }
            }
        }
        Ok(config)
    }

    /// Parses TOML; errors as (line, column, message), 1-based.
    pub fn from_toml(text: &str) -> Result<Self, (usize, usize, String)> {
        toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map_or((1, 1), |span| line_column(text, span.start));
            (line, column, parser_message(e.message().trim()))
        })
    }

    /// Parses YAML; errors as (line, column, message), 1-based.
    pub fn from_yaml(text: &str) -> Result<Self, (usize, usize, String)> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml_ng::from_str(text).map_err(|e| yaml_error(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = r#"
[identity]
host_name = "edge-1"

[kubernetes]
mode = "off"

[[service_rules]]
name = "orders"
port = 8080
"#;

    const YAML: &str = "
identity:
  host_name: edge-1
kubernetes:
  mode: \"off\"
service_rules:
  - name: orders
    port: 8080
";

    #[test]
    fn reads_toml_and_yaml_alike() {
        for config in [FileConfig::from_toml(TOML), FileConfig::from_yaml(YAML)] {
            let config = config.expect("valid");
            assert_eq!(config.identity.host_name.as_deref(), Some("edge-1"));
            assert_eq!(config.kubernetes.mode, Mode::Off);
            assert_eq!(config.service_rules.len(), 1);
            assert_eq!(config.service_rules[0].conditions.port, Some(8080));
            assert_eq!(config.identity.docker_root, Path::new("/var/lib/docker"));
        }
        assert!(FileConfig::from_yaml("").is_ok());
    }

    #[test]
    fn unknown_keys_name_their_line() {
        let (line, column, message) =
            FileConfig::from_toml("[identity]\nhost_name = \"a\"\nhostname = \"b\"\n").unwrap_err();
        assert_eq!((line, column), (3, 1), "{message}");
        assert!(message.contains("unknown field `hostname`"), "{message}");

        let (line, _, message) =
            FileConfig::from_toml("[[service_rules]]\nname = \"x\"\nprot = 80\n").unwrap_err();
        assert_eq!(line, 3, "{message}");
        assert!(message.contains("prot"), "{message}");

        let (line, _, message) =
            FileConfig::from_yaml("identity:\n  host_name: a\nkubernetes:\n  moed: on\n")
                .unwrap_err();
        assert_eq!(line, 4, "{message}");
        assert!(message.contains("unknown field `moed`"), "{message}");

        let (line, _, message) = FileConfig::from_yaml(
            "service_rules:\n  - name: x\n    port: 1\n  - name: y\n    executible: z\n",
        )
        .unwrap_err();
        assert_eq!(line, 5, "{message}");
    }

    #[test]
    fn bad_values_name_their_line() {
        let (line, _, message) = FileConfig::from_toml(
            "[[service_rules]]\nname = \"x\"\ncommand_line = \"(unclosed\"\n",
        )
        .unwrap_err();
        assert!(message.contains("invalid regular expression"), "{message}");
        assert!(line <= 3, "{line}");
        let (_, _, message) =
            FileConfig::from_toml("[[service_rules]]\nname = \"x\"\n").unwrap_err();
        assert!(message.contains("has no condition"), "{message}");
        let (line, _, _) = FileConfig::from_toml("[kubernetes]\nmode = \"maybe\"\n").unwrap_err();
        assert_eq!(line, 2);
        let (line, _, message) = FileConfig::from_toml(
            "[inventory]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.1.0.0/40\"]\n",
        )
        .unwrap_err();
        assert_eq!(line, 2, "{message}");
        assert!(message.contains("prefix length is 0 to 32"), "{message}");
    }

    /// A value quoted in a parser's message never carries a credential to the log.
    #[test]
    fn errors_quoting_a_credential_do_not_repeat_it() {
        let toml_error =
            FileConfig::from_toml("[otlp]\nheaders = \"authorization: Bearer s3cr3t-otlp-key\"\n")
                .unwrap_err();
        let yaml_error =
            FileConfig::from_yaml("otlp:\n  headers: \"api_key=s3cr3t-otlp-key\"\n").unwrap_err();
        for (line, _, message) in [toml_error, yaml_error] {
            assert_eq!(line, 2);
            assert!(message.contains("REDACTED"), "{message}");
            assert!(!message.contains("s3cr3t"), "{message}");
        }
    }

    /// The README's examples are valid configs (the README stays true).
    #[test]
    fn the_readme_examples_parse() {
        let readme = include_str!("../../../README.md");
        let block = |fence: &str| {
            let start = readme.find(fence).expect("example in the README") + fence.len();
            let end = start + readme[start..].find("```").expect("closing fence");
            readme[start..end].to_string()
        };
        let toml = FileConfig::from_toml(&block("```toml\n")).expect("README TOML example");
        assert_eq!(toml.service_rules.len(), 2);
        assert_eq!(toml.identity.host_name.as_deref(), Some("edge-1"));
        let yaml = FileConfig::from_yaml(&block("```yaml\n")).expect("README YAML example");
        assert_eq!(yaml.service_rules[0].name, "orders");
    }

    #[test]
    fn load_names_the_file_and_resolves_the_kubeconfig() {
        let dir = std::env::temp_dir().join(format!("sightline-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("agent.toml");
        std::fs::write(&good, "[kubernetes]\nkubeconfig = \"kube.yaml\"\n").unwrap();
        let config = FileConfig::load(&good).unwrap();
        assert_eq!(config.kubernetes.kubeconfig, Some(dir.join("kube.yaml")));
        let bad = dir.join("agent.yaml");
        std::fs::write(&bad, "identity:\n  nope: 1\n").unwrap();
        let error = FileConfig::load(&bad).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("{}:2:", bad.display())),
            "{error}"
        );
        let error = FileConfig::load(&dir.join("agent.ini"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("reading") || error.contains(".toml"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
