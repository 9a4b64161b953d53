//! Endpoints against the specs: documented, shadow (seen, not in the spec), zombie (seen, but
//! deprecated in the spec or only in a spec configured as retired) and unused (in a spec, never
//! seen; listed by the report). A spec applies to the service its config entry names, and to
//! the hosts its servers name (APIs this host calls). A call matched to a spec operation takes
//! the spec's template (with its base path) as its route.

use std::sync::Arc;

use super::spec::{ApiSpec, Operation};

pub use crate::call::endpoint::Class;

/// A spec and what the config says of it.
#[derive(Clone, Debug)]
pub struct BoundSpec {
    pub spec: ApiSpec,
    /// The `service.name` it documents.
    pub service: Option<String>,
    /// Every operation in it is retired (zombie when called).
    pub retired: bool,
}

impl BoundSpec {
    pub fn applies_to(&self, api: &str) -> bool {
        self.service.as_deref() == Some(api) || self.spec.hosts.iter().any(|h| h == api)
    }

    /// Every operation as (method, route with base path, deprecated or retired).
    pub fn routes(&self) -> Vec<(String, String, bool)> {
        let mut out = Vec::new();
        for base in &self.spec.base_paths {
            for op in &self.spec.operations {
                out.push((
                    op.method.clone(),
                    format!("{base}{}", op.path),
                    op.deprecated || self.retired,
                ));
            }
        }
        out
    }
}

/// What the specs say of one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub class: Class,
    /// The spec's route (base path + template) when the path matched one.
    pub route: Option<String>,
    pub spec_file: Option<Arc<str>>,
    /// Whether the spec's operation requires authentication (`None`: no operation matched,
    /// or the spec does not say).
    pub secured: Option<bool>,
}

#[derive(Clone, Debug, Default)]
pub struct Specs {
    bound: Vec<BoundSpec>,
    /// Per spec (same order), what matching needs, made once rather than per call.
    prepared: Vec<Prepared>,
}

/// A spec made ready for matching.
#[derive(Clone, Debug)]
struct Prepared {
    /// Each base path and each operation's path template, split into segments.
    bases: Vec<Vec<String>>,
    templates: Vec<Vec<String>>,
    /// The spec's file as findings show it (shared by every call).
    file: Arc<str>,
}

impl Specs {
    pub fn new(bound: Vec<BoundSpec>) -> Self {
        let prepared = bound
            .iter()
            .map(|b| Prepared {
                bases: b.spec.base_paths.iter().map(|p| split(p)).collect(),
                templates: b.spec.operations.iter().map(|op| split(&op.path)).collect(),
                file: Arc::from(b.spec.file.display().to_string()),
            })
            .collect();
        Self { bound, prepared }
    }

    pub fn bound(&self) -> &[BoundSpec] {
        &self.bound
    }

    /// The class of `method path` on `api`.
    pub fn classify(&self, api: &str, method: &str, path: &str) -> Verdict {
        let specs: Vec<(&BoundSpec, &Prepared)> = self
            .bound
            .iter()
            .zip(&self.prepared)
            .filter(|(b, _)| b.applies_to(api))
            .collect();
        if specs.is_empty() {
            return Verdict {
                class: Class::NoSpec,
                route: None,
                spec_file: None,
                secured: None,
            };
        }
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        // The most specific matching path template (most literal segments) over every spec and
        // base path.
        let mut best: Option<(usize, &BoundSpec, &Prepared, &str, &Operation)> = None;
        for (bound, prepared) in &specs {
            for (base, base_segments) in bound.spec.base_paths.iter().zip(&prepared.bases) {
                let Some(rest) = strip_segments(&segments, base_segments) else {
                    continue;
                };
                for (op, template) in bound.spec.operations.iter().zip(&prepared.templates) {
                    if let Some(score) = matches(template, rest)
                        && best.is_none_or(|(s, ..)| score > s)
                    {
                        best = Some((score, *bound, *prepared, base.as_str(), op));
                    }
                }
            }
        }
        let Some((_, bound, prepared, base, op)) = best else {
            return Verdict {
                class: Class::Shadow,
                route: None,
                spec_file: None,
                secured: None,
            };
        };
        let operation = bound
            .spec
            .operations
            .iter()
            .find(|o| o.path == op.path && o.method == method);
        let class = match operation {
            Some(o) if o.deprecated || bound.retired => Class::Zombie,
            Some(_) => Class::Documented,
            None => Class::Shadow,
        };
        Verdict {
            class,
            route: Some(format!("{base}{}", op.path)),
            spec_file: Some(prepared.file.clone()),
            secured: operation.and_then(|o| o.secured),
        }
    }
}

/// `segments` after the `base` segments, when they start with them.
fn strip_segments<'a, 'b>(segments: &'a [&'b str], base: &[String]) -> Option<&'a [&'b str]> {
    let prefix = segments.get(..base.len())?;
    prefix
        .iter()
        .zip(base)
        .all(|(s, b)| *s == b)
        .then(|| &segments[base.len()..])
}

fn split(template: &str) -> Vec<String> {
    template
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether a spec path template matches the segments; the score is its literal segments + 1.
fn matches(parts: &[String], segments: &[&str]) -> Option<usize> {
    if parts.len() != segments.len() {
        return None;
    }
    let mut literals = 0;
    for (part, segment) in parts.iter().zip(segments) {
        if part.starts_with('{') && part.ends_with('}') {
            continue;
        }
        if part != segment {
            return None;
        }
        literals += 1;
    }
    Some(literals + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::spec::from_document;

    fn specs() -> Specs {
        let doc: serde_json::Value = serde_yaml_ng::from_str(
            "openapi: 3.0.3\nservers: [{url: 'https://shop.example/api'}]\npaths:\n  /users/{id}:\n    get: {}\n    delete: {deprecated: true}\n  /users/me: {get: {}}\n  /health: {get: {}}\n",
        )
        .unwrap();
        let old: serde_json::Value = serde_yaml_ng::from_str(
            "swagger: '2.0'\nbasePath: /v0\npaths:\n  /orders: {get: {}}\n",
        )
        .unwrap();
        Specs::new(vec![
            BoundSpec {
                spec: from_document(&doc, std::path::Path::new("shop.yaml")).unwrap(),
                service: Some("shop".into()),
                retired: false,
            },
            BoundSpec {
                spec: from_document(&old, std::path::Path::new("old.yaml")).unwrap(),
                service: Some("shop".into()),
                retired: true,
            },
        ])
    }

    fn verdict(api: &str, method: &str, path: &str) -> (Class, Option<String>) {
        let v = specs().classify(api, method, path);
        (v.class, v.route)
    }

    #[test]
    fn classifies_with_parameters_and_base_paths() {
        let route = |r: &str| Some(r.to_string());
        assert_eq!(
            verdict("shop", "GET", "/api/users/42"),
            (Class::Documented, route("/api/users/{id}"))
        );
        // A literal template wins over a parameter.
        assert_eq!(
            verdict("shop", "GET", "/api/users/me"),
            (Class::Documented, route("/api/users/me"))
        );
        assert_eq!(
            verdict("shop", "DELETE", "/api/users/42"),
            (Class::Zombie, route("/api/users/{id}"))
        );
        // A method the path does not document.
        assert_eq!(
            verdict("shop", "PUT", "/api/users/42"),
            (Class::Shadow, route("/api/users/{id}"))
        );
        assert_eq!(verdict("shop", "GET", "/api/admin"), (Class::Shadow, None));
        // Without the base path it is not the documented API.
        assert_eq!(verdict("shop", "GET", "/users/42"), (Class::Shadow, None));
        // Only in a retired spec.
        assert_eq!(
            verdict("shop", "GET", "/v0/orders"),
            (Class::Zombie, route("/v0/orders"))
        );
        // By the servers' host, for an API this host calls.
        assert_eq!(
            verdict("shop.example", "GET", "/api/health").0,
            Class::Documented
        );
        assert_eq!(
            verdict("other", "GET", "/api/health"),
            (Class::NoSpec, None)
        );
    }
}
