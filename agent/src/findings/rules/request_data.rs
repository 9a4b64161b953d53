//! `sensitive-data-in-request`: card numbers, national ids (US SSN), private keys, cloud keys
//! and passwords in a request body (its captured sample), with the same kinds, counts and JSON
//! paths as `sensitive-data-exposure` finds in responses, never a value.
//!
//! What a request normally carries is left out: e-mail addresses and phone numbers (sign-up
//! and profile forms send them all day), and passwords sent to a sign-in, sign-up, token or
//! password operation (recognised by a word of its route: `login`, `signin`, `password`, ...).
//! Severity is the worst kind's, one level higher when the request travelled without TLS.
//!
//! Known false positives: a payment API that takes card numbers itself (allowlist it, or turn
//! the rule off for that service), a password field of another meaning (a Wi-Fi password in a
//! device's config), an account-creation route named without one of those words (`POST /users`).

use serde_json::Value;

use super::{Context, Hit};
use crate::findings::{
    model::Rule,
    sensitive::{self, DataKind},
};

/// Words of a route that make it an operation where passwords are expected.
const CREDENTIAL_WORDS: &[&str] = &[
    "login",
    "logon",
    "signin",
    "signup",
    "register",
    "registration",
    "auth",
    "authenticate",
    "oauth",
    "token",
    "session",
    "sessions",
    "password",
    "passwords",
    "passwd",
    "credentials",
];

pub fn check(ctx: &Context<'_>, out: &mut Vec<Hit>) {
    let credential_operation = is_credential_operation(&ctx.endpoint.key.route);
    let found: sensitive::Detections = sensitive::scan(&ctx.call.request_body_sample)
        .into_iter()
        .filter(|(kind, _)| match kind {
            DataKind::Email | DataKind::Phone => false,
            DataKind::Password => !credential_operation,
            DataKind::PaymentCard
            | DataKind::UsSsn
            | DataKind::PrivateKey
            | DataKind::CloudAccessKey => true,
        })
        .collect();
    let Some(worst) = found.keys().map(|k| k.severity()).max() else {
        return;
    };
    let over_tls = ctx.call.tls.is_some();
    let severity = if over_tls { worst } else { worst.raised() };
    let mut evidence = super::exposure::kinds_evidence(&found);
    evidence.insert("over_tls".into(), Value::Bool(over_tls));
    out.push(ctx.hit(Rule::SensitiveDataInRequest, severity, evidence));
}

/// Whether one of the route's words (split at `/`, `-`, `_`, `.`, case aside) names a sign-in,
/// sign-up, token or password operation: `/v1/auth/login`, `/users/{id}/password`,
/// `/oauth2/token`, `/api/sign-in` (`sign` and `in` joined).
fn is_credential_operation(route: &str) -> bool {
    let lower = route.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(['/', '-', '_', '.'])
        .filter(|w| !w.is_empty())
        .collect();
    let joined = words.windows(2).map(|pair| pair.concat());
    words
        .iter()
        .map(|w| w.trim_end_matches(|c: char| c.is_ascii_digit()).to_string())
        .chain(joined)
        .any(|word| CREDENTIAL_WORDS.contains(&word.as_str()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::findings::{
        auth::CallAuth,
        model::Severity,
        rules::tests::{call, hits},
    };

    fn run(method: &str, route: &str, body: &str, tls: bool) -> Vec<(Severity, Value)> {
        let mut call = call(method, route, route, "web", 200);
        call.request_body_sample = body.as_bytes().to_vec();
        call.tls = tls.then_some(agent_common::event::TlsLibrary::OpenSsl);
        hits(&call, &CallAuth::default(), check)
            .into_iter()
            .map(|h| (h.severity, Value::Object(h.evidence)))
            .collect()
    }

    #[test]
    fn kinds_paths_and_severity_by_transport() {
        let body = r#"{"qty":1,"card":{"number":"4111 1111 1111 1111"},"email":"a@example.com"}"#;
        let found = run("POST", "/api/orders", body, true);
        assert_eq!(
            found,
            [(
                Severity::High,
                json!({"payment_card": {"count": 1, "paths": ["$.card.number"]}, "over_tls": true})
            )]
        );
        assert!(!format!("{found:?}").contains("4111"));
        let cleartext = run("POST", "/api/orders", body, false);
        assert_eq!(cleartext[0].0, Severity::Critical);
        let key = r#"{"note":"-----BEGIN RSA PRIVATE KEY-----\nMIIE"}"#;
        assert_eq!(
            run("PUT", "/api/notes/{id}", key, true)[0].0,
            Severity::Critical
        );
    }

    #[test]
    fn passwords_are_expected_in_sign_in_and_password_operations_only() {
        let body = r#"{"user":"ann","password":"correct horse battery"}"#;
        for route in [
            "/api/login",
            "/v1/auth/session",
            "/users/{id}/password",
            "/oauth2/token",
            "/api/sign-in",
            "/account/sign_up",
            "/register",
        ] {
            assert_eq!(run("POST", route, body, true), [], "{route}");
        }
        let found = run("POST", "/api/profile", body, true);
        assert_eq!(
            found,
            [(
                Severity::High,
                json!({"password": {"count": 1, "paths": ["$.password"]}, "over_tls": true})
            )]
        );
    }

    #[test]
    fn contact_details_and_plain_bodies_stay_quiet() {
        let body = r#"{"email":"ann@example.com","phone":"+14155550123","qty":2}"#;
        assert_eq!(run("POST", "/api/signup-form", body, false), []);
        assert_eq!(run("POST", "/api/orders", "qty=1", false), []);
        assert_eq!(run("GET", "/api/orders", "", false), []);
    }
}
