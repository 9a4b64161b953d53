//! SARIF 2.1.0, the format GitHub code scanning and GitLab read: one rule per check, one result
//! per gate result, located in the spec file of the endpoint's service (the line of the route's
//! path item where the spec has it, else its `paths` line) and named logically as the
//! operation. Results in a baseline carry `baselineState` "unchanged", new ones "new".

use std::path::Path;

use serde_json::{Value, json};

use super::{Judged, Outcome, Verdict, check::Check};
use crate::findings::model::Severity;

/// Where relative spec paths are resolved from: the directory the gate runs in (the checkout).
const SOURCE_ROOT: &str = "%SRCROOT%";

/// The SARIF log of an outcome; `working_dir` is where relative spec paths start.
pub fn log(outcome: &Outcome, working_dir: &Path) -> Value {
    let checks = Check::all();
    let rules: Vec<Value> = checks.iter().map(|c| rule(*c)).collect();
    let results: Vec<Value> = outcome
        .judged
        .iter()
        .map(|j| {
            let index = checks
                .iter()
                .position(|c| *c == j.result.check)
                .expect("every check is a rule");
            result(j, index, working_dir)
        })
        .collect();
    let mut root_uri = format!("file://{}", working_dir.display());
    if !root_uri.ends_with('/') {
        root_uri.push('/');
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "Sightline",
                "version": env!("CARGO_PKG_VERSION"),
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "originalUriBaseIds": {SOURCE_ROOT: {"uri": root_uri}},
            "invocations": [{"executionSuccessful": true}],
            "results": results,
        }]
    })
}

fn rule(check: Check) -> Value {
    let mut properties = json!({
        "tags": ["security", "api", check.owasp()],
        "severity": check.severity().name(),
    });
    if check.severity() > Severity::Info {
        properties["security-severity"] = security_severity(check.severity()).into();
    }
    json!({
        "id": check.id(),
        "name": pascal_case(check.name()),
        "shortDescription": {"text": check.description()},
        "fullDescription": {"text": format!("{} OWASP {}.", check.description(), check.owasp())},
        "help": {
            "text": check.remedy(),
            "markdown": format!("**{}** {}\n\n{}", check.id(), check.description(), check.remedy()),
        },
        "defaultConfiguration": {"level": level(check.severity())},
        "properties": properties,
    })
}

fn result(judged: &Judged, rule_index: usize, working_dir: &Path) -> Value {
    let r = &judged.result;
    let mut message = r.message.clone();
    if !message.ends_with('.') {
        message.push('.');
    }
    let logical = json!({
        "name": format!("{} {}", r.endpoint.method, r.endpoint.route),
        "fullyQualifiedName": r.operation(),
        "kind": "function",
    });
    let mut location = json!({"logicalLocations": [logical]});
    if let Some(spec) = &r.spec_file {
        location["physicalLocation"] = physical(spec, &r.endpoint.route, working_dir);
    }
    let mut value = json!({
        "ruleId": r.check.id(),
        "ruleIndex": rule_index,
        // A result that fails the build is an error whatever its severity (kept in properties).
        "level": if judged.verdict == Verdict::Fail { "error" } else { level(r.severity) },
        "message": {"text": message},
        "locations": [location],
        "partialFingerprints": {"sightlineResult/v1": r.key()},
        "properties": {
            "verdict": judged.verdict.name(),
            "severity": r.severity.name(),
            "service": r.endpoint.api,
            "namespace": r.endpoint.namespace,
            "direction": r.endpoint.direction.name(),
            "method": r.endpoint.method,
            "route": r.endpoint.route,
            "calls": r.calls,
            "clients": r.clients,
            "evidence": r.evidence,
        },
    });
    if let Some(in_baseline) = judged.in_baseline {
        value["baselineState"] = if in_baseline { "unchanged" } else { "new" }.into();
    }
    if judged.verdict == Verdict::Accepted {
        value["suppressions"] =
            json!([{"kind": "external", "justification": "accepted by the baseline"}]);
    }
    value
}

/// The spec file (relative to the checkout when it is inside it) and the route's line.
fn physical(spec: &str, route: &str, working_dir: &Path) -> Value {
    let path = Path::new(spec);
    let relative = if path.is_relative() {
        Some(path)
    } else {
        path.strip_prefix(working_dir).ok()
    };
    let artifact = match relative {
        Some(relative) => json!({"uri": uri_path(relative), "uriBaseId": SOURCE_ROOT}),
        None => json!({"uri": format!("file://{}", uri_path(path))}),
    };
    let text = std::fs::read_to_string(working_dir.join(path)).unwrap_or_default();
    let line = route_line(&text, route).unwrap_or(1);
    json!({"artifactLocation": artifact, "region": {"startLine": line}})
}

/// The 1-based line of the path item whose path the route ends with (the longest such, so a
/// base path in `servers` still finds it), else the `paths` line.
pub fn route_line(spec_text: &str, route: &str) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    let mut paths_line = None;
    for (index, line) in spec_text.lines().enumerate() {
        let key = line.trim_start();
        let key = key
            .split_once(':')
            .map(|(k, _)| k.trim().trim_matches(|c| c == '"' || c == '\''));
        let Some(key) = key else { continue };
        if key == "paths" && paths_line.is_none() {
            paths_line = Some(index + 1);
        }
        if key.starts_with('/')
            && route.ends_with(key)
            && best.is_none_or(|(len, _)| key.len() > len)
        {
            best = Some((key.len(), index + 1));
        }
    }
    best.map(|(_, line)| line).or(paths_line)
}

/// A path as a URI reference: percent-encodes what a URI cannot hold as is.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for byte in path.to_string_lossy().bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// GitHub's `security-severity`: a CVSS-like score it sorts alerts by.
fn security_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "9.5",
        Severity::High => "7.5",
        Severity::Medium => "5.0",
        Severity::Low | Severity::Info => "2.0",
    }
}

/// `unauthenticated-success` -> `UnauthenticatedSuccess` (SARIF rule names are identifiers).
fn pascal_case(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_is_found_in_yaml_and_json_specs_through_a_base_path() {
        let yaml = "openapi: 3.0.0\npaths:\n  /items:\n    get: {}\n  /items/{id}:\n    get: {}\n";
        assert_eq!(route_line(yaml, "/items/{id}"), Some(5));
        assert_eq!(route_line(yaml, "/v1/items"), Some(3));
        assert_eq!(route_line(yaml, "/admin/debug"), Some(2));
        let json = "{\n \"paths\": {\n  \"/items\": {\n   \"get\": {}\n  }\n }\n}\n";
        assert_eq!(route_line(json, "/items"), Some(3));
        assert_eq!(route_line("", "/items"), None);
    }

    #[test]
    fn uris_and_names_are_well_formed() {
        assert_eq!(
            uri_path(Path::new("specs/my api.yaml")),
            "specs/my%20api.yaml"
        );
        assert_eq!(
            pascal_case("unauthenticated-success"),
            "UnauthenticatedSuccess"
        );
        assert_eq!(pascal_case("shadow"), "Shadow");
    }
}
