//! `sensitive-data-exposure`: personal data, card numbers, keys and passwords in a response
//! body (its captured sample). Evidence is kinds, counts and JSON paths. Severity is the worst
//! kind's, one level higher when the caller did not authenticate.
//!
//! Bodies are scanned for an endpoint's first calls, then one in [`SAMPLE_EVERY`]; compressed
//! bodies are not read (counted by the caller).

use serde_json::{Map, Value, json};

use super::{Context, Hit};
use crate::findings::{model::Rule, sensitive};

/// Every body of an endpoint's first calls is scanned.
const SCAN_FIRST: u64 = 100;
/// Then one in this many.
const SAMPLE_EVERY: u64 = 16;

/// Whether the endpoint's `nth` call (from 1) is scanned.
pub fn sampled(nth: u64) -> bool {
    nth <= SCAN_FIRST || nth.is_multiple_of(SAMPLE_EVERY)
}

/// Whether the response body was sent compressed (and so cannot be read).
pub fn compressed(call: &crate::call::ApiCall) -> bool {
    encoded(&call.response_headers)
}

/// Whether the request body was sent compressed.
pub fn request_compressed(call: &crate::call::ApiCall) -> bool {
    encoded(&call.request_headers)
}

fn encoded(headers: &[crate::protocol::http1::Header]) -> bool {
    headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("content-encoding")
            && !h.value.eq_ignore_ascii_case(b"identity")
    })
}

pub fn check(ctx: &Context<'_>, out: &mut Vec<Hit>) {
    let found = sensitive::scan(&ctx.call.response_body_sample);
    let Some(worst) = found.keys().map(|k| k.severity()).max() else {
        return;
    };
    let authenticated = ctx.auth.authenticated();
    let severity = if authenticated { worst } else { worst.raised() };
    let mut evidence = kinds_evidence(&found);
    evidence.insert("caller_authenticated".into(), Value::Bool(authenticated));
    out.push(ctx.hit(Rule::SensitiveData, severity, evidence));
}

/// Each kind found, with how many values and where: `{"email": {"count", "paths"}}`.
pub fn kinds_evidence(found: &sensitive::Detections) -> Map<String, Value> {
    found
        .iter()
        .map(|(kind, (count, paths))| {
            let entry = json!({"count": count, "paths": paths});
            (kind.name().to_string(), entry)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::{
        auth::{CallAuth, Credential, Location, Scheme},
        model::Severity,
        rules::tests::{call, hits},
    };

    fn run(body: &str, auth: CallAuth) -> Vec<(Severity, Map<String, Value>)> {
        let mut call = call("GET", "/u/1", "/u/{id}", "web", 200);
        call.response_body_sample = body.as_bytes().to_vec();
        hits(&call, &auth, check)
            .into_iter()
            .map(|h| (h.severity, h.evidence))
            .collect()
    }

    #[test]
    fn kinds_counts_paths_and_caller_severity() {
        let body = r#"{"email":"ann@example.com","ssn":"123-45-6789"}"#;
        let found = run(body, CallAuth::default());
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].0,
            Severity::Critical,
            "ssn is high, raised for no auth"
        );
        assert_eq!(
            found[0].1["us_ssn"],
            json!({"count": 1, "paths": ["$.ssn"]})
        );
        assert_eq!(
            found[0].1["email"],
            json!({"count": 1, "paths": ["$.email"]})
        );
        assert_eq!(found[0].1["caller_authenticated"], false);
        assert!(
            !serde_json::to_string(&found)
                .unwrap()
                .contains("ann@example.com")
        );
        let authed = CallAuth {
            credentials: vec![Credential {
                scheme: Scheme::Basic,
                location: Location::Header("authorization".into()),
                fingerprint: "f".into(),
                jwt: None,
            }],
            mtls: None,
        };
        assert_eq!(
            run(r#"{"email":"ann@example.com"}"#, authed)[0].0,
            Severity::Low
        );
        assert_eq!(run(r#"{"id":1,"name":"ann"}"#, CallAuth::default()), []);
    }

    #[test]
    fn sampling() {
        assert!(sampled(1) && sampled(100) && !sampled(101) && sampled(112));
    }
}
