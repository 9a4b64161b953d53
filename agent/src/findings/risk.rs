//! Each endpoint's risk, 0 to 10, and the reasons for it: which endpoints to fix first. The
//! formula adds points for what the agent knows of the endpoint, and caps the sum at 10:
//!
//! | what | points |
//! |---|---|
//! | callers from the internet (directly or through a local proxy) | 3 |
//! | else from private networks | 1.5 |
//! | else from other pods, nodes or services of the cluster | 1 |
//! | calls without a credential answered 2xx where one is expected (`unauthenticated-success`: the spec secures the operation, other clients authenticate, or it writes; public routes such as health checks allowlisted) | 2 |
//! | sensitive data returned (`sensitive-data-exposure`): a high or critical kind | 2 |
//! | ... only low kinds (e-mail, phone) | 1 |
//! | shadow or suspected shadow (undocumented), or zombie (deprecated, still called) | 1.5 |
//! | the most severe other finding: critical / high / medium / low | 2 / 1.5 / 1 / 0.5 |
//! | a write method (POST, PUT, PATCH, DELETE) | 1 |
//! | a response body of 1 MiB or more | 0.5 |
//!
//! The findings counted under "other" leave out the three that have their own line
//! (`unauthenticated-success`, `sensitive-data-exposure`, `shadow-endpoint`/`zombie-endpoint`),
//! so nothing counts twice. Pure: the agent computes it for the metrics, `sightline
//! inventory` for its report, from the same statistics and findings.

use super::{
    model::{Finding, Rule, Severity},
    sensitive::DataKind,
};
pub use crate::inventory::posture::{Reason, Risk};
use crate::inventory::{
    classify::Class,
    endpoint::{EndpointKey, EndpointStats},
    reach::Reach,
};

/// A response this large counts as large.
const LARGE_RESPONSE: u64 = 1 << 20;

/// The risk of `key` with `stats` and the findings raised on it (others are ignored).
pub fn score<'a>(
    key: &EndpointKey,
    stats: &EndpointStats,
    findings: impl IntoIterator<Item = &'a Finding>,
) -> Risk {
    let mut reasons = Vec::new();
    let mut add = |points: f64, reason: String| reasons.push(Reason { points, reason });
    let posture = &stats.posture;
    let via = if posture.via.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = posture.via.iter().map(String::as_str).collect();
        format!(" (through {})", names.join(", "))
    };
    match posture.farthest() {
        Some(Reach::Internet) => add(3.0, format!("called from the internet{via}")),
        Some(Reach::Private) => add(1.5, format!("called from private networks{via}")),
        Some(Reach::Cluster) => add(1.0, "called from other pods of the cluster".into()),
        Some(Reach::Host) | None => {}
    }
    let mut worst_other: Option<(Severity, Rule)> = None;
    let mut kinds = std::collections::BTreeSet::new();
    let mut unauthenticated = 0;
    for finding in findings {
        if finding.key.endpoint != *key {
            continue;
        }
        match finding.key.rule {
            Rule::SensitiveData => kinds.extend(
                finding
                    .evidence
                    .keys()
                    .filter_map(|name| DataKind::parse(name)),
            ),
            Rule::UnauthenticatedSuccess => unauthenticated += finding.count,
            Rule::ShadowEndpoint | Rule::ZombieEndpoint => {}
            rule => {
                if worst_other.is_none_or(|(s, _)| finding.severity > s) {
                    worst_other = Some((finding.severity, rule));
                }
            }
        }
    }
    if unauthenticated > 0 {
        add(
            2.0,
            format!("{unauthenticated} calls without credentials succeeded where expected"),
        );
    }
    if let Some(worst) = kinds.iter().map(|k| k.severity()).max() {
        let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
        let points = if worst >= Severity::High { 2.0 } else { 1.0 };
        add(points, format!("returns {}", names.join(", ")));
    }
    match stats.class {
        Some(Class::Shadow | Class::SuspectedShadow) => {
            add(1.5, "not in its API's spec (shadow)".into())
        }
        Some(Class::Zombie) => add(1.5, "deprecated in its spec, still called (zombie)".into()),
        _ => {}
    }
    if let Some((severity, rule)) = worst_other {
        let points = match severity {
            Severity::Critical => 2.0,
            Severity::High => 1.5,
            Severity::Medium => 1.0,
            Severity::Low => 0.5,
            Severity::Info => 0.0,
        };
        if points > 0.0 {
            add(
                points,
                format!("{} finding {} {}", severity.name(), rule.id(), rule.name()),
            );
        }
    }
    if matches!(key.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE") {
        add(1.0, format!("writes ({})", key.method));
    }
    if posture.response_body_max >= LARGE_RESPONSE {
        add(
            0.5,
            format!(
                "responses up to {:.1} MiB",
                posture.response_body_max as f64 / f64::from(1 << 20)
            ),
        );
    }
    reasons.sort_by(|a, b| b.points.total_cmp(&a.points));
    // A fold from +0.0: `sum` of no floats is -0.0, which prints as "-0.0".
    let total = reasons.iter().fold(0.0, |sum, r| sum + r.points);
    Risk {
        score: (total.min(10.0) * 10.0).round() / 10.0,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{findings::model::FindingKey, inventory::endpoint::Direction};

    fn key(method: &str) -> EndpointKey {
        EndpointKey {
            api: "shop".into(),
            namespace: String::new(),
            direction: Direction::Served,
            method: method.into(),
            route: "/users/{id}".into(),
        }
    }

    fn finding(key: &EndpointKey, rule: Rule, severity: Severity, evidence: &str) -> Finding {
        Finding {
            key: FindingKey {
                rule,
                endpoint: key.clone(),
                client: String::new(),
            },
            severity,
            client: "web".into(),
            first_seen_unix_nano: 1,
            last_seen_unix_nano: 1,
            count: 1,
            evidence: serde_json::from_str(evidence).unwrap(),
        }
    }

    #[test]
    fn a_quiet_internal_read_scores_zero() {
        let mut stats = EndpointStats::default();
        stats.posture.reach.insert(Reach::Host);
        let risk = score(&key("GET"), &stats, []);
        assert!(risk.score.is_sign_positive());
        assert_eq!((risk.score, risk.reasons), (0.0, vec![]));
    }

    #[test]
    fn every_reason_adds_its_points_and_the_sum_is_capped() {
        let k = key("DELETE");
        let mut stats = EndpointStats {
            class: Some(Class::Shadow),
            ..EndpointStats::default()
        };
        stats.posture.reach.extend([Reach::Host, Reach::Internet]);
        stats.posture.via.insert("nginx".into());
        stats.posture.response_body_max = 3 << 20;
        let findings = [
            finding(
                &k,
                Rule::SensitiveData,
                Severity::High,
                r#"{"email":{},"us_ssn":{},"caller_authenticated":false}"#,
            ),
            finding(&k, Rule::JwtInUrl, Severity::Medium, "{}"),
            finding(&k, Rule::CleartextCredentials, Severity::High, "{}"),
            Finding {
                count: 3,
                ..finding(&k, Rule::UnauthenticatedSuccess, Severity::Critical, "{}")
            },
            // Another endpoint's finding is not this one's.
            finding(&key("GET"), Rule::JwtAlgNone, Severity::Critical, "{}"),
        ];
        let risk = score(&k, &stats, &findings);
        let reasons: Vec<(f64, &str)> = risk
            .reasons
            .iter()
            .map(|r| (r.points, r.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                (3.0, "called from the internet (through nginx)"),
                (2.0, "3 calls without credentials succeeded where expected"),
                (2.0, "returns email, us_ssn"),
                (1.5, "not in its API's spec (shadow)"),
                (1.5, "high finding SL-AUTH-002 cleartext-credentials"),
                (1.0, "writes (DELETE)"),
                (0.5, "responses up to 3.0 MiB"),
            ]
        );
        assert_eq!(risk.score, 10.0);
        // From private networks, documented, without the medium finding and the
        // unauthenticated successes: 1.5 + 2 + 1.5 (high) + 1 + 0.5.
        stats.posture.reach = [Reach::Private].into();
        stats.class = Some(Class::Documented);
        let risk = score(&k, &stats, [&findings[0], &findings[2]]);
        assert_eq!(risk.score, 6.5, "{risk:?}");
    }
}
