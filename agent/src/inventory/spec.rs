//! API specs the teams publish: OpenAPI 3.0 and 3.1 and Swagger 2.0, JSON or YAML, from files
//! or directories. What the inventory needs of a spec is its operations (method, path
//! template, deprecated or not), its base paths (3.x `servers`, 2.0 `basePath`) and the hosts
//! it names, so the spec is read as a plain document rather than through a full OpenAPI model:
//! the three formats agree on exactly these fields. A malformed spec is an error naming the
//! file and the place (line and column, or the JSON pointer of the bad value).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::source_error::{ConfigError, yaml_error};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Unreadable, or not JSON/YAML (with line and column): as for the config file.
    #[error(transparent)]
    File(#[from] ConfigError),
    #[error("{path}: at {pointer}: {message}")]
    Invalid {
        path: String,
        pointer: String,
        message: String,
    },
}

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// Upper case, as calls carry it.
    pub method: String,
    /// The path template as the spec writes it (`/users/{userId}`), without base path.
    pub path: String,
    pub deprecated: bool,
    /// Whether the operation requires authentication (its `security`, else the document's):
    /// `Some(false)` for `security: []` or an empty requirement `{}` (public), `None` when
    /// the spec does not say.
    pub secured: Option<bool>,
}

#[derive(Clone, Debug)]
pub struct ApiSpec {
    pub file: PathBuf,
    /// `openapi 3.0`, `openapi 3.1` or `swagger 2.0`.
    pub format: &'static str,
    /// Path prefixes the operations are served under (`/v1`); empty means none.
    pub base_paths: Vec<String>,
    /// Host names the spec's servers name.
    pub hosts: Vec<String>,
    pub operations: Vec<Operation>,
}

/// Every spec in `path` (a file, or the `.json`/`.yaml`/`.yml` files of a directory).
pub fn load(path: &Path) -> Result<Vec<ApiSpec>, SpecError> {
    let read_error = |source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    };
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(read_error)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("json" | "yaml" | "yml")
                )
            })
            .collect();
        files.sort();
        return files.iter().map(|f| load_file(f)).collect();
    }
    Ok(vec![load_file(path)?])
}

pub fn load_file(path: &Path) -> Result<ApiSpec, SpecError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    let document = parse_text(&text).map_err(|(line, column, message)| ConfigError::Invalid {
        path: shown.clone(),
        line,
        column,
        message,
    })?;
    from_document(&document, path).map_err(|(pointer, message)| SpecError::Invalid {
        path: shown,
        pointer,
        message,
    })
}

/// JSON when it looks like JSON, else YAML (a superset).
fn parse_text(text: &str) -> Result<Value, (usize, usize, String)> {
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| (e.line(), e.column(), e.to_string()))
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| yaml_error(&e))
    }
}

/// The spec in a parsed document; errors as (JSON pointer, message).
pub fn from_document(document: &Value, file: &Path) -> Result<ApiSpec, (String, String)> {
    let root = document
        .as_object()
        .ok_or(("".to_string(), "a spec is an object".to_string()))?;
    let format = match (root.get("openapi"), root.get("swagger")) {
        (Some(Value::String(v)), _) if v.starts_with("3.0") => "openapi 3.0",
        (Some(Value::String(v)), _) if v.starts_with("3.1") => "openapi 3.1",
        (_, Some(Value::String(v))) if v == "2.0" => "swagger 2.0",
        (Some(v), _) => return Err(("/openapi".into(), format!("unsupported version {v}"))),
        (_, Some(v)) => return Err(("/swagger".into(), format!("unsupported version {v}"))),
        _ => {
            return Err((
                "".into(),
                "neither an `openapi` (3.0, 3.1) nor a `swagger` (2.0) document".into(),
            ));
        }
    };
    let (base_paths, hosts) = if format == "swagger 2.0" {
        let base = match root.get("basePath") {
            None => String::new(),
            Some(Value::String(b)) => normalise_base(b),
            Some(_) => return Err(("/basePath".into(), "expected a string".into())),
        };
        let hosts = root
            .get("host")
            .and_then(Value::as_str)
            .map(|h| vec![host_only(h)])
            .unwrap_or_default();
        (vec![base], hosts)
    } else {
        servers(root.get("servers"))?
    };
    let root_security = security(root.get("security"), "/security")?;
    let mut operations = Vec::new();
    let paths = match root.get("paths") {
        None => return Err(("/paths".into(), "a spec needs `paths`".into())),
        Some(Value::Object(paths)) => paths,
        Some(_) => return Err(("/paths".into(), "expected an object".into())),
    };
    for (path, item) in paths {
        let pointer = format!("/paths/{}", path.replace('~', "~0").replace('/', "~1"));
        if !path.starts_with('/') {
            if path.starts_with("x-") {
                continue;
            }
            return Err((pointer, "a path must start with /".into()));
        }
        let item = item
            .as_object()
            .ok_or((pointer.clone(), "expected an object".to_string()))?;
        for (method, operation) in item {
            if !METHODS.contains(&method.as_str()) {
                continue; // parameters, summary, servers, $ref, x-...
            }
            let deprecated = match operation.get("deprecated") {
                None => false,
                Some(Value::Bool(d)) => *d,
                Some(_) => {
                    return Err((
                        format!("{pointer}/{method}/deprecated"),
                        "expected a boolean".into(),
                    ));
                }
            };
            let secured = security(
                operation.get("security"),
                &format!("{pointer}/{method}/security"),
            )?
            .or(root_security);
            operations.push(Operation {
                method: method.to_ascii_uppercase(),
                path: path.clone(),
                deprecated,
                secured,
            });
        }
    }
    Ok(ApiSpec {
        file: file.to_path_buf(),
        format,
        base_paths,
        hosts,
        operations,
    })
}

/// A `security` list: secured unless empty or holding an empty requirement (anonymous access
/// allowed).
fn security(value: Option<&Value>, pointer: &str) -> Result<Option<bool>, (String, String)> {
    let Some(value) = value else {
        return Ok(None);
    };
    let requirements = value.as_array().ok_or((
        pointer.to_string(),
        "expected a list of requirements".to_string(),
    ))?;
    let mut anonymous = requirements.is_empty();
    for (i, requirement) in requirements.iter().enumerate() {
        let map = requirement
            .as_object()
            .ok_or((format!("{pointer}/{i}"), "expected an object".to_string()))?;
        anonymous |= map.is_empty();
    }
    Ok(Some(!anonymous))
}

/// 3.x `servers`: each URL's path is a base path, its host a host. Variables take their
/// defaults. No servers: the base path is `/`.
fn servers(servers: Option<&Value>) -> Result<(Vec<String>, Vec<String>), (String, String)> {
    let Some(servers) = servers else {
        return Ok((vec![String::new()], Vec::new()));
    };
    let list = servers
        .as_array()
        .ok_or(("/servers".to_string(), "expected an array".to_string()))?;
    let mut bases = Vec::new();
    let mut hosts = Vec::new();
    for (i, server) in list.iter().enumerate() {
        let url = server
            .get("url")
            .and_then(Value::as_str)
            .ok_or((format!("/servers/{i}/url"), "expected a string".to_string()))?;
        let mut url = url.to_string();
        if let Some(variables) = server.get("variables").and_then(Value::as_object) {
            for (name, variable) in variables {
                if let Some(default) = variable.get("default").and_then(Value::as_str) {
                    url = url.replace(&format!("{{{name}}}"), default);
                }
            }
        }
        let (host, path) = match url.split_once("://") {
            Some((_, rest)) => match rest.find('/') {
                Some(at) => (Some(host_only(&rest[..at])), &rest[at..]),
                None => (Some(host_only(rest)), ""),
            },
            None => (None, url.as_str()),
        };
        if let Some(host) = host.filter(|h| !h.is_empty()) {
            hosts.push(host);
        }
        bases.push(normalise_base(path));
    }
    if bases.is_empty() {
        bases.push(String::new());
    }
    bases.dedup();
    Ok((bases, hosts))
}

fn host_only(authority: &str) -> String {
    crate::call::address::split_host(authority)
        .0
        .to_ascii_lowercase()
}

/// `/v1/` -> `/v1`, `/` -> ``.
fn normalise_base(base: &str) -> String {
    let trimmed = base.trim_end_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else if trimmed.starts_with('/') {
        trimmed.to_string()
    } else {
        format!("/{trimmed}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Result<ApiSpec, (String, String)> {
        let value = parse_text(text).map_err(|e| (String::new(), e.2))?;
        from_document(&value, Path::new("t.yaml"))
    }

    #[test]
    fn reads_each_format() {
        let v30 = spec(
            "openapi: 3.0.3\ninfo: {title: t, version: '1'}\nservers:\n  - url: https://api.shop.example:8443/v1/\npaths:\n  /users/{id}:\n    parameters: []\n    get: {responses: {}}\n    delete: {deprecated: true, responses: {}}\n  x-internal: {}\n",
        )
        .unwrap();
        assert_eq!(v30.format, "openapi 3.0");
        assert_eq!(v30.base_paths, ["/v1"]);
        assert_eq!(v30.hosts, ["api.shop.example"]);
        // Keys come sorted (serde_json's map), so DELETE before GET.
        assert_eq!(
            v30.operations,
            [
                Operation {
                    method: "DELETE".into(),
                    path: "/users/{id}".into(),
                    deprecated: true,
                    secured: None,
                },
                Operation {
                    method: "GET".into(),
                    path: "/users/{id}".into(),
                    deprecated: false,
                    secured: None,
                },
            ]
        );
        let v31 = spec(r#"{"openapi": "3.1.0", "info": {"title": "t", "version": "1"},
            "servers": [{"url": "{scheme}://pay.example/{base}", "variables": {"scheme": {"default": "https"}, "base": {"default": "api"}}}],
            "paths": {"/charges": {"post": {}}}}"#)
        .unwrap();
        assert_eq!(
            (v31.format, v31.base_paths.clone(), v31.hosts.clone()),
            (
                "openapi 3.1",
                vec!["/api".to_string()],
                vec!["pay.example".to_string()]
            )
        );
        let v2 = spec("swagger: '2.0'\nhost: legacy.example\nbasePath: /\npaths:\n  /items: {get: {deprecated: true}}\n").unwrap();
        assert_eq!(
            (v2.format, v2.base_paths.clone()),
            ("swagger 2.0", vec![String::new()])
        );
        assert!(v2.operations[0].deprecated);
    }

    #[test]
    fn security_is_read_per_operation_with_the_document_default() {
        let s = spec(
            "openapi: 3.0.3\nsecurity: [{bearer: []}]\npaths:\n  /a:\n    get: {}\n    post: {security: []}\n    put: {security: [{}, {key: []}]}\n",
        )
        .unwrap();
        let secured: Vec<(&str, Option<bool>)> = s
            .operations
            .iter()
            .map(|o| (o.method.as_str(), o.secured))
            .collect();
        assert_eq!(
            secured,
            [
                ("GET", Some(true)),
                ("POST", Some(false)),
                ("PUT", Some(false))
            ]
        );
        let silent = spec("openapi: 3.0.3\npaths:\n  /a: {get: {}}\n").unwrap();
        assert_eq!(silent.operations[0].secured, None);
        assert_eq!(
            spec("openapi: 3.0.3\npaths:\n  /a: {get: {security: {x: 1}}}\n")
                .unwrap_err()
                .0,
            "/paths/~1a/get/security"
        );
    }

    #[test]
    fn malformed_specs_name_the_place() {
        assert_eq!(spec("openapi: 3.0.0\npaths: []\n").unwrap_err().0, "/paths");
        assert_eq!(
            spec("openapi: 3.0.0\npaths:\n  /a/b:\n    get: {deprecated: maybe}\n")
                .unwrap_err()
                .0,
            "/paths/~1a~1b/get/deprecated"
        );
        assert_eq!(
            spec("openapi: 4.0.0\npaths: {}\n").unwrap_err().0,
            "/openapi"
        );
        assert!(spec("info: {}\n").unwrap_err().1.contains("neither"));
        let dir = std::env::temp_dir().join(format!("sightline-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.yaml");
        std::fs::write(&bad, "openapi: 3.0.0\npaths:\n  /a: {get: [}\n").unwrap();
        let error = load(&dir).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("{}:3:", bad.display())),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
