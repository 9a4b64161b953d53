//! `sightline gate`: judges an inventory database (a `sightline record` run's, or the agent's)
//! against the conditions a CI job gives (`--fail-on`), minus what a baseline accepted, and
//! writes the results for people (a summary), for code scanning (SARIF 2.1.0) and for test
//! reports (JUnit XML).

pub mod baseline;
pub mod check;
pub mod junit;
pub mod result;
pub mod sarif;

use check::Term;
use result::GateResult;

/// What the gate decided of one result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A `--fail-on` condition holds and no baseline accepted it.
    Fail,
    /// A condition holds, but the baseline accepted it.
    Accepted,
    /// No condition names it: reported only.
    Reported,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Self::Fail => "fail",
            Self::Accepted => "accepted",
            Self::Reported => "reported",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Judged {
    pub result: GateResult,
    pub verdict: Verdict,
    /// Whether a baseline was given, and this result is in it.
    pub in_baseline: Option<bool>,
}

/// The gate's decision over every result.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub terms: Vec<Term>,
    pub judged: Vec<Judged>,
}

impl Outcome {
    pub fn judge(
        results: Vec<GateResult>,
        terms: Vec<Term>,
        baseline: Option<&baseline::Baseline>,
    ) -> Self {
        let judged = results
            .into_iter()
            .map(|result| {
                let named = terms
                    .iter()
                    .any(|t| t.matches(result.check, result.severity));
                let in_baseline = baseline.map(|b| b.accepts(&result));
                let verdict = match (named, in_baseline) {
                    (false, _) => Verdict::Reported,
                    (true, Some(true)) => Verdict::Accepted,
                    (true, _) => Verdict::Fail,
                };
                Judged {
                    result,
                    verdict,
                    in_baseline,
                }
            })
            .collect();
        Self { terms, judged }
    }

    pub fn count(&self, verdict: Verdict) -> usize {
        self.judged.iter().filter(|j| j.verdict == verdict).count()
    }

    pub fn failed(&self) -> bool {
        self.count(Verdict::Fail) > 0
    }

    /// What a person reads in the CI log: each failing result on a line, then the counts.
    pub fn summary(&self) -> String {
        let mut text = String::new();
        for judged in &self.judged {
            let mark = match judged.verdict {
                Verdict::Fail => "FAIL",
                Verdict::Accepted => "ok (baseline)",
                Verdict::Reported => "note",
            };
            let r = &judged.result;
            text.push_str(&format!(
                "{mark:<13} {:<8} {:<24} {}\n",
                r.severity.name(),
                r.check.name(),
                r.message
            ));
        }
        let conditions: Vec<String> = self.terms.iter().map(|t| t.name()).collect();
        let conditions = if conditions.is_empty() {
            "no --fail-on condition".to_string()
        } else {
            format!("--fail-on {}", conditions.join(","))
        };
        text.push_str(&format!(
            "sightline gate: {} ({conditions}): {} failed, {} accepted by the baseline, {} reported only\n",
            if self.failed() { "FAILED" } else { "passed" },
            self.count(Verdict::Fail),
            self.count(Verdict::Accepted),
            self.count(Verdict::Reported),
        ));
        text
    }

    /// The gate's JSON: its decision and every result with its verdict.
    pub fn to_json(&self) -> serde_json::Value {
        let results: Vec<serde_json::Value> = self
            .judged
            .iter()
            .map(|j| {
                let mut value = result::to_json(&j.result);
                value["verdict"] = j.verdict.name().into();
                value
            })
            .collect();
        serde_json::json!({
            "passed": !self.failed(),
            "fail_on": self.terms.iter().map(|t| t.name()).collect::<Vec<_>>(),
            "failed": self.count(Verdict::Fail),
            "accepted": self.count(Verdict::Accepted),
            "reported": self.count(Verdict::Reported),
            "results": results,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::{check::Check, *};
    use crate::{findings::model::Severity, inventory::endpoint::EndpointKey};

    pub(crate) fn result(check: Check, route: &str) -> GateResult {
        GateResult {
            check,
            severity: check.severity(),
            endpoint: EndpointKey {
                api: "demo".into(),
                namespace: String::new(),
                direction: crate::inventory::endpoint::Direction::Served,
                method: "GET".into(),
                route: route.into(),
            },
            calls: 1,
            clients: vec![],
            message: format!("{} {route}", check.name()),
            evidence: Default::default(),
            spec_file: None,
        }
    }

    #[test]
    fn only_named_results_fail_and_the_baseline_accepts_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.json");
        baseline::Baseline::write(&path, &[result(Check::Shadow, "/old")]).unwrap();
        let baseline = baseline::Baseline::read(&path).unwrap();
        let outcome = Outcome::judge(
            vec![
                result(Check::Shadow, "/old"),
                result(Check::Shadow, "/new"),
                result(Check::Unused, "/never"),
            ],
            vec![Term::Check(Check::Shadow)],
            Some(&baseline),
        );
        let verdicts: Vec<(&str, Verdict)> = outcome
            .judged
            .iter()
            .map(|j| (j.result.endpoint.route.as_str(), j.verdict))
            .collect();
        assert_eq!(
            verdicts,
            [
                ("/old", Verdict::Accepted),
                ("/new", Verdict::Fail),
                ("/never", Verdict::Reported)
            ]
        );
        assert!(outcome.failed());
        let summary = outcome.summary();
        assert!(summary.ends_with(
            "sightline gate: FAILED (--fail-on shadow): 1 failed, 1 accepted by the baseline, 1 reported only\n"
        ), "{summary}");
        let passing = Outcome::judge(
            vec![result(Check::Unused, "/never")],
            vec![Term::SeverityAtLeast(Severity::Low)],
            None,
        );
        assert!(!passing.failed());
    }
}
