//! `sightline findings`: the stored findings, filtered, as a table for people (JSON is
//! [`Finding::to_json`] per finding).

use super::model::{Finding, Rule, Severity};
use crate::inventory::report::rfc3339;

#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub service: Option<String>,
    pub min_severity: Option<Severity>,
    pub rule: Option<Rule>,
}

/// The findings the filter keeps, in the order stored (most severe, most recent first).
pub fn selected(findings: Vec<Finding>, filter: &Filter) -> Vec<Finding> {
    findings
        .into_iter()
        .filter(|f| {
            filter
                .service
                .as_ref()
                .is_none_or(|s| *s == f.key.endpoint.api)
                && filter.min_severity.is_none_or(|m| f.severity >= m)
                && filter.rule.is_none_or(|r| f.key.rule == r)
        })
        .collect()
}

pub fn render_table(findings: &[Finding]) -> String {
    let mut out = format!(
        "{:<9} {:<12} {:<25} {:<24} {:<7} {:<32} {:<20} {:>6}  {:<24} {}\n",
        "SEVERITY",
        "RULE",
        "NAME",
        "SERVICE",
        "METHOD",
        "ROUTE",
        "CLIENT",
        "COUNT",
        "LAST SEEN",
        "EVIDENCE"
    );
    for f in findings {
        let e = &f.key.endpoint;
        let service = if e.namespace.is_empty() {
            e.api.clone()
        } else {
            format!("{}/{}", e.namespace, e.api)
        };
        out.push_str(&format!(
            "{:<9} {:<12} {:<25} {service:<24} {:<7} {:<32} {:<20} {:>6}  {:<24} {}\n",
            f.severity.name(),
            f.key.rule.id(),
            f.key.rule.name(),
            e.method,
            e.route,
            f.client,
            f.count,
            rfc3339(f.last_seen_unix_nano),
            f.summary(),
        ));
    }
    if findings.is_empty() {
        out.push_str("(no findings)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::{model::FindingKey, rules::tests::endpoint};

    fn finding(rule: Rule, severity: Severity, api: &str) -> Finding {
        let mut key = endpoint("GET", "/u/{id}", "web").key.clone();
        key.api = api.into();
        Finding {
            key: FindingKey {
                rule,
                endpoint: key,
                client: "web".into(),
            },
            severity,
            client: "web".into(),
            first_seen_unix_nano: 1,
            last_seen_unix_nano: 2,
            count: 3,
            evidence: serde_json::Map::new(),
        }
    }

    #[test]
    fn filters_and_table() {
        let all = vec![
            finding(Rule::JwtAlgNone, Severity::Critical, "shop"),
            finding(Rule::ShadowEndpoint, Severity::Low, "shop"),
            finding(Rule::JwtInUrl, Severity::Medium, "pay"),
        ];
        let high = Filter {
            min_severity: Some(Severity::Medium),
            ..Filter::default()
        };
        assert_eq!(selected(all.clone(), &high).len(), 2);
        let shop_shadow = Filter {
            service: Some("shop".into()),
            rule: Some(Rule::ShadowEndpoint),
            ..Filter::default()
        };
        assert_eq!(
            selected(all.clone(), &shop_shadow)[0].key.rule,
            Rule::ShadowEndpoint
        );
        let table = render_table(&all);
        assert_eq!(table.lines().count(), 4);
        assert!(table.contains("critical  SL-JWT-001"), "{table}");
        assert!(render_table(&[]).contains("(no findings)"));
    }
}
