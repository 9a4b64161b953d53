//! JUnit XML, which CI systems show as a test report: one test suite per `--fail-on`
//! condition, one test case per endpoint (and spec operation) it was checked against. A case
//! fails when a result the gate failed is at that endpoint, is skipped when the baseline
//! accepted it, and passes otherwise, so the report also shows what was checked and held.

use std::fmt::Write as _;

use super::{Judged, Outcome, Verdict};
use crate::inventory::endpoint::EndpointKey;

/// The report; `subjects` are every endpoint and spec operation the database knows.
pub fn document(outcome: &Outcome, subjects: &[EndpointKey]) -> String {
    let mut suites = Vec::new();
    for term in &outcome.terms {
        let cases: Vec<Case<'_>> = subjects
            .iter()
            .map(|subject| Case {
                subject,
                results: outcome
                    .judged
                    .iter()
                    .filter(|j| {
                        &j.result.endpoint == subject
                            && term.matches(j.result.check, j.result.severity)
                            && j.verdict != Verdict::Reported
                    })
                    .collect(),
            })
            .collect();
        suites.push(suite(&format!("sightline gate: {}", term.name()), &cases));
    }
    let (tests, failures, skipped) = suites.iter().fold((0, 0, 0), |(t, f, s), suite| {
        (t + suite.tests, f + suite.failures, s + suite.skipped)
    });
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"sightline gate\" tests=\"{tests}\" failures=\"{failures}\" skipped=\"{skipped}\">"
    );
    for suite in suites {
        xml.push_str(&suite.xml);
    }
    xml.push_str("</testsuites>\n");
    xml
}

struct Case<'a> {
    subject: &'a EndpointKey,
    /// The results of the condition at this endpoint (failed or accepted).
    results: Vec<&'a Judged>,
}

struct Suite {
    tests: usize,
    failures: usize,
    skipped: usize,
    xml: String,
}

fn suite(name: &str, cases: &[Case<'_>]) -> Suite {
    let mut body = String::new();
    let (mut failures, mut skipped) = (0, 0);
    for case in cases {
        let s = case.subject;
        let _ = write!(
            body,
            "    <testcase classname=\"{}\" name=\"{}\">",
            escape(&format!("{}.{}", s.api, s.direction.name())),
            escape(&format!("{} {}", s.method, s.route))
        );
        let failed: Vec<&&Judged> = case
            .results
            .iter()
            .filter(|j| j.verdict == Verdict::Fail)
            .collect();
        if let Some(first) = failed.first() {
            failures += 1;
            let details: Vec<String> = failed
                .iter()
                .map(|j| {
                    format!(
                        "{} {} {}: {}",
                        j.result.check.id(),
                        j.result.severity.name(),
                        j.result.check.name(),
                        j.result.message
                    )
                })
                .collect();
            let _ = write!(
                body,
                "\n      <failure type=\"{}\" message=\"{}\">{}</failure>\n    ",
                escape(first.result.check.id()),
                escape(&first.result.message),
                escape(&details.join("\n"))
            );
        } else if !case.results.is_empty() {
            skipped += 1;
            body.push_str("\n      <skipped message=\"accepted by the baseline\"/>\n    ");
        }
        body.push_str("</testcase>\n");
    }
    let xml = format!(
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">\n{body}  </testsuite>\n",
        escape(name),
        cases.len()
    );
    Suite {
        tests: cases.len(),
        failures,
        skipped,
        xml,
    }
}

/// Text as XML 1.0 attribute or element content: the five markup characters escaped, and the
/// control characters XML 1.0 cannot hold at all replaced (a route is attacker-chosen text).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{
        check::{Check, Term},
        tests::result,
    };

    #[test]
    fn each_condition_is_a_suite_with_a_case_per_endpoint() {
        let outcome = Outcome::judge(
            vec![result(Check::Shadow, "/debug<1>")],
            vec![Term::Check(Check::Shadow), Term::Check(Check::Zombie)],
            None,
        );
        let subjects = [
            result(Check::Shadow, "/debug<1>").endpoint,
            result(Check::Shadow, "/items").endpoint,
        ];
        let xml = document(&outcome, &subjects);
        assert!(xml.contains(
            "<testsuites name=\"sightline gate\" tests=\"4\" failures=\"1\" skipped=\"0\">"
        ));
        assert!(xml.contains(
            "<testsuite name=\"sightline gate: shadow\" tests=\"2\" failures=\"1\" errors=\"0\" skipped=\"0\">"
        ));
        assert!(xml.contains("<testcase classname=\"demo.served\" name=\"GET /debug&lt;1&gt;\">\n      <failure type=\"SL-INV-001\" message=\"shadow /debug&lt;1&gt;\">SL-INV-001 low shadow: shadow /debug&lt;1&gt;</failure>"), "{xml}");
        assert!(
            xml.contains("<testcase classname=\"demo.served\" name=\"GET /items\"></testcase>")
        );
    }

    #[test]
    fn text_that_xml_cannot_hold_is_replaced() {
        assert_eq!(
            escape("a\u{1}b&\"'<>\n"),
            "a\u{FFFD}b&amp;&quot;&apos;&lt;&gt;\n"
        );
    }
}
