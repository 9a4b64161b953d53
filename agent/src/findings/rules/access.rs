//! Access rules: an unauthenticated call answered with success where authentication was
//! expected, and credentials sent in cleartext between hosts.
//!
//! "Expected" is one of: the spec marks the operation secured; other clients of the endpoint
//! authenticate; the method changes state. The second can only be known once another client
//! has been seen, so unauthenticated successes are held per endpoint (bounded) and reported
//! when an authenticated caller shows up later.
//!
//! Over TLS where the handshake did not show whether the client sent a certificate (TLS 1.3),
//! an mTLS-only client looks unauthenticated: such findings say `client_certificate: unknown`.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::{Context, Hit, evidence};
use crate::findings::model::{Rule, Severity};

/// Clients remembered per endpoint (authenticated ones, and ones waiting with
/// unauthenticated successes).
const MAX_CLIENTS: usize = 16;

/// Unauthenticated successes not reported yet, from one client.
#[derive(Clone, Debug)]
struct Pending {
    first_seen: u64,
    last_seen: u64,
    count: u64,
    /// Some of the calls were over TLS with the client certificate not visible.
    certificate_unknown: bool,
}

/// What the access rules remember of one endpoint.
#[derive(Clone, Debug, Default)]
pub struct EndpointAccess {
    authenticated_clients: Vec<String>,
    pending: HashMap<String, Pending>,
}

const STATE_CHANGING: &[&str] = &["POST", "PUT", "PATCH", "DELETE"];

/// `unauthenticated-success`.
pub fn unauthenticated_success(ctx: &Context<'_>, state: &mut EndpointAccess, out: &mut Vec<Hit>) {
    let client = &ctx.endpoint.client;
    if ctx.auth.authenticated() {
        if !state.authenticated_clients.contains(client)
            && state.authenticated_clients.len() < MAX_CLIENTS
        {
            state.authenticated_clients.push(client.clone());
        }
        // Clients that succeeded without credentials now have an authenticating peer.
        let waiting: Vec<String> = state
            .pending
            .keys()
            .filter(|c| *c != client)
            .cloned()
            .collect();
        for other in waiting {
            if let Some(p) = state.pending.remove(&other) {
                out.push(Hit {
                    rule: Rule::UnauthenticatedSuccess,
                    severity: Severity::High,
                    evidence: reasons(&["other-callers-authenticate"], p.certificate_unknown),
                    client: other,
                    first_seen_unix_nano: p.first_seen,
                    last_seen_unix_nano: p.last_seen,
                    count: p.count,
                });
            }
        }
        return;
    }
    // The spec says the operation is public.
    if !ctx.succeeded() || ctx.endpoint.secured == Some(false) {
        return;
    }
    let mut why = Vec::new();
    if ctx.endpoint.secured == Some(true) {
        why.push("spec-secured");
    }
    if state.authenticated_clients.iter().any(|c| c != client) {
        why.push("other-callers-authenticate");
    }
    let changes_state = STATE_CHANGING.contains(&ctx.call.method.as_str());
    if changes_state {
        why.push("state-changing-method");
    }
    let certificate_unknown = ctx.call.tls.is_some() && ctx.auth.mtls.is_none();
    if why.is_empty() {
        let at = ctx.call.start_unix_ns;
        if let Some(p) = state.pending.get_mut(client) {
            p.last_seen = at;
            p.count += 1;
            p.certificate_unknown |= certificate_unknown;
        } else if state.pending.len() < MAX_CLIENTS {
            state.pending.insert(
                client.clone(),
                Pending {
                    first_seen: at,
                    last_seen: at,
                    count: 1,
                    certificate_unknown,
                },
            );
        }
        return;
    }
    // Only a state-changing method, nothing else says authentication is expected.
    let severity = if why == ["state-changing-method"] {
        Severity::Medium
    } else {
        Severity::High
    };
    out.push(ctx.hit(
        Rule::UnauthenticatedSuccess,
        severity,
        reasons(&why, certificate_unknown),
    ));
}

fn reasons(why: &[&str], certificate_unknown: bool) -> serde_json::Map<String, Value> {
    let mut e = evidence([("reasons", json!(why))]);
    if certificate_unknown {
        e.insert("client_certificate".into(), json!("unknown"));
    }
    e
}

/// `cleartext-credentials`: a credential on a connection without TLS whose other end is not
/// this host's loopback.
pub fn cleartext_credentials(ctx: &Context<'_>, out: &mut Vec<Hit>) {
    let Some(credential) = ctx.auth.primary() else {
        return;
    };
    if ctx.call.tls.is_some() || ctx.call.peer.address.ip().to_canonical().is_loopback() {
        return;
    }
    out.push(ctx.hit(
        Rule::CleartextCredentials,
        Severity::High,
        evidence([
            ("scheme", json!(credential.scheme.name())),
            ("location", json!(credential.location)),
            ("credential_fingerprint", json!(&*credential.fingerprint)),
            (
                "peer_address",
                json!(ctx.call.peer.address.ip().to_string()),
            ),
        ]),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::{
        auth::{CallAuth, Credential, Location, Scheme},
        rules::tests::{call, hits},
    };

    fn bearer() -> CallAuth {
        CallAuth {
            credentials: vec![Credential {
                scheme: Scheme::BearerOpaque,
                location: Location::Header("authorization".into()),
                fingerprint: "00aa".into(),
                jwt: None,
            }],
            mtls: None,
        }
    }

    fn run(
        call: &crate::call::ApiCall,
        auth: &CallAuth,
        state: &mut EndpointAccess,
    ) -> Vec<(String, Value)> {
        hits(call, auth, |ctx, out| {
            unauthenticated_success(ctx, state, out)
        })
        .into_iter()
        .map(|h| (h.client, h.evidence["reasons"].clone()))
        .collect()
    }

    #[test]
    fn unauthenticated_successes_where_others_authenticate() {
        let mut state = EndpointAccess::default();
        let none = CallAuth::default();
        // Alone, an unauthenticated GET is not a finding (yet).
        assert_eq!(
            run(
                &call("GET", "/o/1", "/o/{id}", "anon", 200),
                &none,
                &mut state
            ),
            []
        );
        assert_eq!(
            run(
                &call("GET", "/o/2", "/o/{id}", "anon", 200),
                &none,
                &mut state
            ),
            []
        );
        // An authenticated caller arrives: the waiting client is reported, twice counted.
        let found = run(
            &call("GET", "/o/3", "/o/{id}", "web", 200),
            &bearer(),
            &mut state,
        );
        assert_eq!(
            found,
            [("anon".to_string(), json!(["other-callers-authenticate"]))]
        );
        // Later unauthenticated successes are reported at once; failures never are.
        assert_eq!(
            run(
                &call("GET", "/o/4", "/o/{id}", "anon", 200),
                &none,
                &mut state
            ),
            [("anon".to_string(), json!(["other-callers-authenticate"]))]
        );
        assert_eq!(
            run(
                &call("GET", "/o/5", "/o/{id}", "anon", 401),
                &none,
                &mut state
            ),
            []
        );
        // The authenticated client itself, without credentials, has no *other* caller.
        let mut own = EndpointAccess::default();
        run(
            &call("GET", "/o/1", "/o/{id}", "web", 200),
            &bearer(),
            &mut own,
        );
        assert_eq!(
            run(&call("GET", "/o/1", "/o/{id}", "web", 200), &none, &mut own),
            []
        );
    }

    #[test]
    fn spec_security_and_state_changing_methods() {
        let none = CallAuth::default();
        let mut secured = call("GET", "/o/1", "/o/{id}", "anon", 200);
        let mut endpoint = (*secured.endpoint.clone().unwrap()).clone();
        endpoint.secured = Some(true);
        secured.endpoint = Some(std::sync::Arc::new(endpoint.clone()));
        assert_eq!(
            run(&secured, &none, &mut EndpointAccess::default()),
            [("anon".to_string(), json!(["spec-secured"]))]
        );
        let post = call("POST", "/o", "/o", "anon", 201);
        assert_eq!(
            run(&post, &none, &mut EndpointAccess::default()),
            [("anon".to_string(), json!(["state-changing-method"]))]
        );
        // The spec says public (`security: []`): quiet even for a POST.
        let mut public = post.clone();
        endpoint.secured = Some(false);
        public.endpoint = Some(std::sync::Arc::new(endpoint));
        assert_eq!(run(&public, &none, &mut EndpointAccess::default()), []);
        // Authenticated POSTs are fine.
        assert_eq!(run(&post, &bearer(), &mut EndpointAccess::default()), []);
    }

    #[test]
    fn tls_calls_whose_client_certificate_is_not_visible_say_so() {
        let mut post = call("POST", "/o", "/o", "anon", 201);
        post.tls = Some(crate::call::TlsLibrary::OpenSsl);
        let evidence = |mtls: Option<bool>| {
            let auth = CallAuth {
                credentials: Vec::new(),
                mtls,
            };
            let mut state = EndpointAccess::default();
            hits(&post, &auth, |ctx, out| {
                unauthenticated_success(ctx, &mut state, out)
            })
            .pop()
            .map(|h| h.evidence)
        };
        let unknown = evidence(None).unwrap();
        assert_eq!(unknown["client_certificate"], "unknown");
        assert!(
            evidence(Some(false))
                .unwrap()
                .get("client_certificate")
                .is_none()
        );
        assert_eq!(
            evidence(Some(true)),
            None,
            "a client certificate authenticates"
        );
    }

    #[test]
    fn cleartext_credentials_off_loopback_only() {
        let check = |call: &crate::call::ApiCall, auth: &CallAuth| {
            hits(call, auth, cleartext_credentials).len()
        };
        let remote = call("GET", "/o/1", "/o/{id}", "web", 200); // peer 10.0.0.9
        assert_eq!(check(&remote, &bearer()), 1);
        assert_eq!(check(&remote, &CallAuth::default()), 0);
        let mut tls = remote.clone();
        tls.tls = Some(crate::call::TlsLibrary::OpenSsl);
        assert_eq!(check(&tls, &bearer()), 0);
        let mut local = remote.clone();
        local.peer.address = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(check(&local, &bearer()), 0);
    }
}
