//! Which endpoint a call was counted in: the inventory sets it on the call, the rules and the
//! sinks read it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Whose API an endpoint is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// A local service serves it.
    Served,
    /// A local service calls it on a server this host does not run (another host, an
    /// external API).
    Called,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Self::Served => "served",
            Self::Called => "called",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "served" => Some(Self::Served),
            "called" => Some(Self::Called),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EndpointKey {
    /// The service that serves the API (`service.name`), or for called APIs without a known
    /// service, the host the client asked for.
    pub api: String,
    /// Its `service.namespace`, empty when none.
    pub namespace: String,
    pub direction: Direction,
    pub method: String,
    pub route: String,
}

#[cfg(test)]
impl EndpointKey {
    /// `GET route` served by `api`, without a namespace: the endpoint tests build.
    pub fn served_get(api: &str, route: &str) -> EndpointKey {
        EndpointKey {
            api: api.into(),
            namespace: String::new(),
            direction: Direction::Served,
            method: "GET".into(),
            route: route.into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    Documented,
    Shadow,
    Zombie,
    /// No spec covers the API.
    NoSpec,
    /// A path a spec's parameter matches, which the traffic shows to be an endpoint of its own
    /// (`inventory::hidden`).
    SuspectedShadow,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Self::Documented => "documented",
            Self::Shadow => "shadow",
            Self::Zombie => "zombie",
            Self::NoSpec => "no-spec",
            Self::SuspectedShadow => "suspected-shadow",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Documented,
            Self::Shadow,
            Self::Zombie,
            Self::NoSpec,
            Self::SuspectedShadow,
        ]
        .into_iter()
        .find(|c| c.name() == text)
    }
}

/// The endpoint a call was counted in, for the rules that follow (set on the call).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointRef {
    pub key: EndpointKey,
    /// Who called: the client's service name, else its address or executable.
    pub client: String,
    pub class: Class,
    /// What the spec says of authentication (see [`classify::Verdict::secured`]).
    pub secured: Option<bool>,
    pub spec_file: Option<Arc<str>>,
    /// The endpoint's calls so far, this one included.
    pub calls: u64,
    /// For a suspected shadow endpoint: the documented route it hides behind and why.
    pub suspected: Option<Suspicion>,
    /// Set on the call that makes the endpoint an inventory change for the exports.
    pub announce: Option<Announce>,
}

/// Why a call's concrete route was taken for a hidden endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suspicion {
    pub documented_route: String,
    /// `word-among-ids` or `other-response-shape`.
    pub reason: &'static str,
}

/// Why a call announces its endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Announce {
    /// Never seen before, in this run or a stored one.
    Discovered,
    /// Known from a previous run, seen for the first time in this one.
    Seen,
    /// Its class changed (a spec was added or changed).
    Reclassified { from: Class },
}

impl Announce {
    pub fn name(self) -> &'static str {
        match self {
            Self::Discovered => "discovered",
            Self::Seen => "seen",
            Self::Reclassified { .. } => "reclassified",
        }
    }
}
