//! The gate's results: one per check and endpoint (or spec operation), made from what the
//! inventory database holds. A per-client finding seen from several clients is one result with
//! every client listed: a gate asks "is this endpoint wrong", not "how many callers saw it".

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::check::Check;
use crate::{
    findings::model::{Finding, Rule, Severity},
    inventory::{
        classify::Class,
        endpoint::{Direction, EndpointKey, EndpointStats},
        report::Unused,
    },
    store::SpecOperation,
};

/// What the database holds, as the gate reads it.
#[derive(Debug, Default)]
pub struct Inputs {
    pub endpoints: Vec<(EndpointKey, EndpointStats)>,
    pub findings: Vec<Finding>,
    pub operations: Vec<SpecOperation>,
    pub unused: Vec<Unused>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GateResult {
    pub check: Check,
    pub severity: Severity,
    pub endpoint: EndpointKey,
    pub calls: u64,
    pub clients: Vec<String>,
    pub message: String,
    /// Names, counts, paths, fingerprints: never a secret (the findings' evidence).
    pub evidence: serde_json::Map<String, Value>,
    /// The spec file that documents the endpoint's service, when one does.
    pub spec_file: Option<String>,
}

impl GateResult {
    /// What a baseline remembers: the check and the endpoint, never the clients or counts
    /// (they change from run to run; the endpoint being wrong does not).
    pub fn key(&self) -> String {
        let e = &self.endpoint;
        format!(
            "{} {} {} {} {} {}",
            self.check.id(),
            e.api,
            e.namespace,
            e.direction.name(),
            e.method,
            e.route
        )
    }

    /// `demo GET /items/{id}`.
    pub fn operation(&self) -> String {
        format!(
            "{} {} {}",
            self.endpoint.api, self.endpoint.method, self.endpoint.route
        )
    }
}

/// Every result, in a stable order: most severe first, then by check and endpoint.
pub fn collect(inputs: &Inputs) -> Vec<GateResult> {
    let specs = SpecFiles::new(&inputs.operations);
    let mut results: Vec<GateResult> = inventory_results(inputs, &specs);
    results.extend(finding_results(&inputs.findings, &specs));
    results.extend(inputs.unused.iter().map(unused_result));
    results.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.check.cmp(&b.check))
            .then(a.endpoint.cmp(&b.endpoint))
    });
    results
}

fn inventory_results(inputs: &Inputs, specs: &SpecFiles<'_>) -> Vec<GateResult> {
    let evidence_of = |rule: Rule, key: &EndpointKey| {
        inputs
            .findings
            .iter()
            .find(|f| f.key.rule == rule && &f.key.endpoint == key)
            .map(|f| f.evidence.clone())
            .unwrap_or_default()
    };
    inputs
        .endpoints
        .iter()
        .filter_map(|(key, stats)| {
            let (check, rule) = match stats.class? {
                Class::Shadow => (Check::Shadow, Rule::ShadowEndpoint),
                Class::SuspectedShadow => (Check::SuspectedShadow, Rule::ShadowEndpoint),
                Class::Zombie => (Check::Zombie, Rule::ZombieEndpoint),
                Class::Documented | Class::NoSpec => return None,
            };
            let spec_file = specs.of(key);
            let evidence = evidence_of(rule, key);
            let message = match check {
                Check::Shadow => format!(
                    "{} serves {} {}, which {} does not document ({})",
                    key.api,
                    key.method,
                    key.route,
                    spec_file.as_deref().unwrap_or("its spec"),
                    calls_text(stats.calls)
                ),
                Check::SuspectedShadow => format!(
                    "{} {} {} behaves as an endpoint of its own, not as a value of {} ({})",
                    key.api,
                    key.method,
                    key.route,
                    evidence
                        .get("documented_route")
                        .and_then(Value::as_str)
                        .unwrap_or("a documented route"),
                    calls_text(stats.calls)
                ),
                _ => format!(
                    "{} {} {} is deprecated or retired in {} but was called ({})",
                    key.api,
                    key.method,
                    key.route,
                    spec_file.as_deref().unwrap_or("its spec"),
                    calls_text(stats.calls)
                ),
            };
            Some(GateResult {
                check,
                severity: check.severity(),
                endpoint: key.clone(),
                calls: stats.calls,
                clients: stats.clients.iter().cloned().collect(),
                message,
                evidence,
                spec_file,
            })
        })
        .collect()
}

/// The findings of the non-inventory rules, one result per rule and endpoint.
fn finding_results(findings: &[Finding], specs: &SpecFiles<'_>) -> Vec<GateResult> {
    let mut grouped: BTreeMap<(Rule, &EndpointKey), Vec<&Finding>> = BTreeMap::new();
    for finding in findings {
        if matches!(
            finding.key.rule,
            Rule::ShadowEndpoint | Rule::ZombieEndpoint
        ) {
            continue; // The inventory's classes say it, once per endpoint.
        }
        grouped
            .entry((finding.key.rule, &finding.key.endpoint))
            .or_default()
            .push(finding);
    }
    grouped
        .into_iter()
        .map(|((rule, key), group)| {
            let worst = group
                .iter()
                .max_by_key(|f| (f.severity, f.count))
                .expect("a group holds a finding");
            let calls = group.iter().map(|f| f.count).sum();
            let mut clients: Vec<String> = group.iter().map(|f| f.client.clone()).collect();
            clients.sort();
            clients.dedup();
            let check = Check::of_rule(rule);
            GateResult {
                check,
                severity: worst.severity,
                endpoint: key.clone(),
                calls,
                message: format!(
                    "{} {} {}: {} ({} from {})",
                    key.api,
                    key.method,
                    key.route,
                    sentence_inside(check.description()),
                    calls_text(calls),
                    clients.join(", ")
                ),
                clients,
                evidence: worst.evidence.clone(),
                spec_file: specs.of(key),
            }
        })
        .collect()
}

/// `1 call`, `3 calls`.
fn calls_text(calls: u64) -> String {
    if calls == 1 {
        "1 call".to_string()
    } else {
        format!("{calls} calls")
    }
}

/// A sentence as a clause: first letter lowered, final period dropped.
fn sentence_inside(sentence: &str) -> String {
    let mut chars = sentence.trim_end_matches('.').chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_lowercase().collect::<String>() + chars.as_str()
    })
}

fn unused_result(unused: &Unused) -> GateResult {
    GateResult {
        check: Check::Unused,
        severity: Check::Unused.severity(),
        endpoint: EndpointKey {
            api: unused.api.clone(),
            namespace: String::new(),
            direction: Direction::Served,
            method: unused.method.clone(),
            route: unused.route.clone(),
        },
        calls: 0,
        clients: Vec::new(),
        message: format!(
            "{} {} {} is in {} but no call reached it",
            unused.api, unused.method, unused.route, unused.spec_file
        ),
        evidence: serde_json::Map::new(),
        spec_file: Some(unused.spec_file.clone()),
    }
}

/// Which spec file documents a service, and each of its operations.
struct SpecFiles<'a> {
    operations: &'a [SpecOperation],
}

impl<'a> SpecFiles<'a> {
    fn new(operations: &'a [SpecOperation]) -> Self {
        Self { operations }
    }

    /// The file of the endpoint's own operation, else the first spec of its service.
    fn of(&self, key: &EndpointKey) -> Option<String> {
        let of_api = || self.operations.iter().filter(|o| o.api == key.api);
        of_api()
            .find(|o| o.method == key.method && o.route == key.route)
            .or_else(|| of_api().next())
            .map(|o| o.spec_file.clone())
    }
}

/// The result as the gate's JSON lists it.
pub fn to_json(result: &GateResult) -> Value {
    let e = &result.endpoint;
    json!({
        "rule_id": result.check.id(),
        "check": result.check.name(),
        "severity": result.severity.name(),
        "owasp": result.check.owasp(),
        "service.name": e.api,
        "service.namespace": e.namespace,
        "direction": e.direction.name(),
        "http.request.method": e.method,
        "http.route": e.route,
        "calls": result.calls,
        "clients": result.clients,
        "message": result.message,
        "spec_file": result.spec_file,
        "evidence": result.evidence,
    })
}
