//! Token rules: JWTs that are unsigned (`alg: none`), expired yet accepted, without expiry,
//! or sent in the URL; and other credentials in the URL's query string (where proxies, logs
//! and browser histories keep them).

use serde_json::json;

use super::{Context, Hit, evidence};
use crate::{
    findings::{
        auth::Location,
        model::{Rule, Severity},
    },
    inventory::report::rfc3339,
};

pub fn check(ctx: &Context<'_>, leeway_s: i64, out: &mut Vec<Hit>) {
    for credential in &ctx.auth.credentials {
        // Built only for a hit: most credentials raise nothing.
        let base = || {
            [
                ("location", json!(credential.location)),
                ("credential_fingerprint", json!(&*credential.fingerprint)),
            ]
        };
        let Some(jwt) = &credential.jwt else {
            if matches!(credential.location, Location::Query(_)) {
                out.push(ctx.hit(Rule::CredentialInUrl, Severity::Medium, {
                    let mut e = evidence(base());
                    e.insert("scheme".into(), json!(credential.scheme.name()));
                    e
                }));
            }
            continue;
        };
        let with = |more: Vec<(&str, serde_json::Value)>| {
            let mut e = evidence(base());
            e.insert("jwt_alg".into(), json!(jwt.alg));
            if let Some(iss) = &jwt.iss {
                e.insert("jwt_iss".into(), json!(iss));
            }
            for (k, v) in more {
                e.insert(k.into(), v);
            }
            e
        };
        if jwt.unsigned() {
            let severity = if ctx.succeeded() {
                Severity::Critical
            } else {
                Severity::High
            };
            out.push(ctx.hit(
                Rule::JwtAlgNone,
                severity,
                with(vec![("accepted", json!(ctx.succeeded()))]),
            ));
        }
        match jwt.exp {
            Some(exp) if ctx.succeeded() && jwt.expired_at(ctx.now_unix_s(), leeway_s) => {
                out.push(ctx.hit(
                    Rule::JwtExpiredAccepted,
                    Severity::High,
                    with(vec![
                        ("jwt_exp", json!(rfc3339(exp.max(0) as u64 * 1_000_000_000))),
                        ("expired_seconds_before_call", json!(ctx.now_unix_s() - exp)),
                    ]),
                ))
            }
            Some(_) => {}
            None => out.push(ctx.hit(Rule::JwtWithoutExpiry, Severity::Low, with(vec![]))),
        }
        if credential.location.in_url() {
            out.push(ctx.hit(Rule::JwtInUrl, Severity::Medium, with(vec![])));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::{
        auth::{CallAuth, Credential, Scheme},
        jwt::JwtSummary,
        rules::tests::{call, hits},
    };

    fn jwt(alg: &str, exp: Option<i64>, location: Location) -> Credential {
        Credential {
            scheme: Scheme::BearerJwt,
            location,
            fingerprint: "fp".into(),
            jwt: Some(std::sync::Arc::new(JwtSummary {
                alg: alg.into(),
                exp,
                ..JwtSummary::default()
            })),
        }
    }

    fn rules(status: u16, credentials: Vec<Credential>) -> Vec<(Rule, Severity)> {
        let call = call("GET", "/o/1", "/o/{id}", "web", status);
        let auth = CallAuth {
            credentials,
            mtls: None,
        };
        hits(&call, &auth, |ctx, out| check(ctx, 60, out))
            .into_iter()
            .map(|h| (h.rule, h.severity))
            .collect()
    }

    #[test]
    fn each_token_rule_and_its_near_miss() {
        let now = (crate::call::tests::sample().start_unix_ns / 1_000_000_000) as i64;
        let header = || Location::Header("authorization".into());
        // A good token: nothing.
        assert_eq!(
            rules(200, vec![jwt("RS256", Some(now + 600), header())]),
            []
        );
        // Unsigned: critical when accepted, high when refused.
        assert_eq!(
            rules(200, vec![jwt("none", Some(now + 600), header())]),
            [(Rule::JwtAlgNone, Severity::Critical)]
        );
        assert_eq!(
            rules(401, vec![jwt("None", Some(now + 600), header())]),
            [(Rule::JwtAlgNone, Severity::High)]
        );
        // Expired and accepted; expired and refused; within the leeway.
        assert_eq!(
            rules(200, vec![jwt("HS256", Some(now - 3600), header())]),
            [(Rule::JwtExpiredAccepted, Severity::High)]
        );
        assert_eq!(
            rules(401, vec![jwt("HS256", Some(now - 3600), header())]),
            []
        );
        assert_eq!(rules(200, vec![jwt("HS256", Some(now - 30), header())]), []);
        // Without expiry.
        assert_eq!(
            rules(200, vec![jwt("HS256", None, header())]),
            [(Rule::JwtWithoutExpiry, Severity::Low)]
        );
        // In the URL.
        assert_eq!(
            rules(
                200,
                vec![jwt("HS256", Some(now + 60), Location::Query("t".into()))]
            ),
            [(Rule::JwtInUrl, Severity::Medium)]
        );
        // Other credentials in the query; an API key in a header is fine.
        let key = |location| Credential {
            scheme: Scheme::ApiKey,
            location,
            fingerprint: "fp".into(),
            jwt: None,
        };
        assert_eq!(
            rules(200, vec![key(Location::Query("api_key".into()))]),
            [(Rule::CredentialInUrl, Severity::Medium)]
        );
        assert_eq!(
            rules(200, vec![key(Location::Header("x-api-key".into()))]),
            []
        );
    }
}
