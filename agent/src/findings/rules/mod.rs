//! The rules: each looks at one call (with its authentication and its endpoint) and says what
//! it matched as [`Hit`]s. `settings` resolves the config (on/off, severity, thresholds,
//! allowlists); the stateful rules keep bounded per-endpoint or per-client state here.

pub mod abuse;
pub mod access;
pub mod exposure;
pub mod inventory;
pub mod object_access;
pub mod request_data;
pub mod settings;
pub mod tokens;

use serde_json::{Map, Value};

use super::{
    auth::CallAuth,
    model::{Rule, Severity},
};
use crate::{call::ApiCall, inventory::EndpointRef};

/// What a rule matched on a call.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    pub rule: Rule,
    pub severity: Severity,
    pub evidence: Map<String, Value>,
    /// The client; a rule may report a call seen earlier from another client.
    pub client: String,
    pub first_seen_unix_nano: u64,
    pub last_seen_unix_nano: u64,
    pub count: u64,
}

/// One call as the rules see it.
pub struct Context<'a> {
    pub call: &'a ApiCall,
    pub auth: &'a CallAuth,
    pub endpoint: &'a EndpointRef,
}

impl Context<'_> {
    /// A hit for this call's client at this call's time.
    pub fn hit(&self, rule: Rule, severity: Severity, evidence: Map<String, Value>) -> Hit {
        Hit {
            rule,
            severity,
            evidence,
            client: self.endpoint.client.clone(),
            first_seen_unix_nano: self.call.start_unix_ns,
            last_seen_unix_nano: self.call.start_unix_ns,
            count: 1,
        }
    }

    /// Answered with 2xx.
    pub fn succeeded(&self) -> bool {
        self.call.status.is_some_and(|s| (200..300).contains(&s))
    }

    pub fn now_unix_s(&self) -> i64 {
        (self.call.start_unix_ns / 1_000_000_000) as i64
    }
}

/// Evidence from pairs.
pub fn evidence<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[cfg(test)]
pub mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        call::tests::sample,
        inventory::{
            classify::Class,
            endpoint::{Direction, EndpointKey},
        },
    };

    /// An endpoint reference for a sample call.
    pub fn endpoint(method: &str, route: &str, client: &str) -> Arc<EndpointRef> {
        Arc::new(EndpointRef {
            key: EndpointKey {
                api: "api".into(),
                namespace: String::new(),
                direction: Direction::Served,
                method: method.into(),
                route: route.into(),
            },
            client: client.into(),
            class: Class::NoSpec,
            secured: None,
            spec_file: None,
            announce: None,
            suspected: None,
            calls: 1,
        })
    }

    /// What `rule` reports for `call` (which has an endpoint) with `auth`.
    pub fn hits(
        call: &ApiCall,
        auth: &CallAuth,
        rule: impl FnOnce(&Context<'_>, &mut Vec<Hit>),
    ) -> Vec<Hit> {
        let endpoint = call.endpoint.clone().unwrap();
        let mut out = Vec::new();
        rule(
            &Context {
                call,
                auth,
                endpoint: &endpoint,
            },
            &mut out,
        );
        out
    }

    /// A sample call to `method path` (route `route`) from `client`, answered `status`.
    pub fn call(method: &str, path: &str, route: &str, client: &str, status: u16) -> ApiCall {
        let mut call = sample();
        call.method = method.into();
        call.path = path.into();
        call.query = None;
        call.request_headers.clear();
        call.status = Some(status);
        call.endpoint = Some(endpoint(method, route, client));
        call
    }
}
