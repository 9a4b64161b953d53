//! What an endpoint's risk is judged on, beyond its counts: where its callers come from
//! ([`super::reach`]), the local proxies they came through, how many calls without a
//! credential it answered with success, and its largest response. Kept with the endpoint's
//! statistics (one JSON column of the database); bounded like them.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::reach::{self, Cidr, Reach};
use crate::call::ApiCall;

/// Proxies kept per endpoint.
const MAX_VIA: usize = 8;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posture {
    /// Where the callers of a served endpoint came from (empty for an API this host calls).
    #[serde(default)]
    pub reach: BTreeSet<Reach>,
    /// Local proxies that forwarded calls (`X-Forwarded-For`), by service name.
    #[serde(default)]
    pub via: BTreeSet<String>,
    /// Calls answered 2xx that carried no credential (nor a client certificate).
    #[serde(default)]
    pub unauthenticated_successes: u64,
    /// The largest response body, in bytes (as its length said, or as counted).
    #[serde(default)]
    pub response_body_max: u64,
}

impl Posture {
    /// Adds one call; `served` when it is counted at its server's end, `client` names the
    /// peer, `trusted` are the remote proxies whose forwarding headers are read.
    pub fn record(&mut self, call: &ApiCall, client: &str, served: bool, trusted: &[Cidr]) {
        if served {
            let origin = reach::origin(call, trusted);
            self.reach.insert(origin.reach);
            if origin.proxied && !self.via.contains(client) && self.via.len() < MAX_VIA {
                self.via.insert(client.to_string());
            }
        }
        let succeeded = call.status.is_some_and(|s| (200..300).contains(&s));
        let authenticated = call.auth.as_ref().is_some_and(|a| a.authenticated());
        if succeeded && !authenticated {
            self.unauthenticated_successes += 1;
        }
        self.response_body_max = self.response_body_max.max(call.response_size.body);
    }

    /// Reached from outside: a caller from the internet, directly or through a local proxy.
    pub fn external(&self) -> bool {
        self.reach.contains(&Reach::Internet)
    }

    /// The farthest ring callers came from.
    pub fn farthest(&self) -> Option<Reach> {
        self.reach.iter().max().copied()
    }

    pub fn merge(&mut self, other: &Posture) {
        self.reach.extend(other.reach.iter().copied());
        for via in &other.via {
            if self.via.len() < MAX_VIA || self.via.contains(via) {
                self.via.insert(via.clone());
            }
        }
        self.unauthenticated_successes += other.unauthenticated_successes;
        self.response_body_max = self.response_body_max.max(other.response_body_max);
    }

    /// The rings as names, nearest first (`host,internet`), `-` when none.
    pub fn reach_names(&self) -> String {
        if self.reach.is_empty() {
            return "-".to_string();
        }
        let names: Vec<&str> = self.reach.iter().map(|r| r.name()).collect();
        names.join(",")
    }
}

/// One reason of a risk score and the points it adds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reason {
    pub points: f64,
    pub reason: String,
}

/// An endpoint's risk (scored by `crate::findings::risk`, which knows the findings).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Risk {
    /// 0 to 10, one decimal.
    pub score: f64,
    /// Largest first.
    pub reasons: Vec<Reason>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::tests::sample;

    #[test]
    fn records_reach_successes_without_credentials_and_the_largest_body() {
        let mut posture = Posture::default();
        let mut call = sample();
        call.peer.process = None;
        call.peer.identity = None;
        call.peer.address = "203.0.113.9:5000".parse().unwrap();
        call.status = Some(200);
        call.auth = None;
        call.response_size.body = 2_000_000;
        posture.record(&call, "203.0.113.9", true, &[]);
        call.peer.address = "10.0.0.2:5000".parse().unwrap();
        call.status = Some(401);
        call.response_size.body = 10;
        posture.record(&call, "10.0.0.2", true, &[]);
        assert_eq!(
            posture.reach.iter().copied().collect::<Vec<_>>(),
            [Reach::Private, Reach::Internet]
        );
        assert!(posture.external());
        assert_eq!(posture.unauthenticated_successes, 1);
        assert_eq!(posture.response_body_max, 2_000_000);
        // A called API's callers are this host: no reach.
        let mut called = Posture::default();
        called.record(&call, "web", false, &[]);
        assert!(called.reach.is_empty());
        let mut merged = called.clone();
        merged.merge(&posture);
        assert_eq!(merged.reach_names(), "private,internet");
        assert_eq!(merged.unauthenticated_successes, 1);
    }
}
