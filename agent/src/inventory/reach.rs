//! Exposure: where a served endpoint's callers come from. Each call's caller is placed in one
//! of four rings, nearest first: this host, this cluster, a private network, the internet.
//!
//! The caller is the socket's peer, except behind a proxy on this host: when the peer is a
//! local process (nginx, envoy, a sidecar) and the request carries `X-Forwarded-For` (or
//! `Forwarded: for=`), the caller is the address that proxy appended, the right-most one.
//! Entries further left were written by whoever sent the request and can be forged, so they
//! are not read. The proxy is named (`via`). A proxy on another host is not trusted this way:
//! its own endpoint, on its own host's agent, shows where its callers come from.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::call::{ApiCall, identity::EndKind};

/// How far away a caller is, nearest first (ordered: the farthest of several is `max`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reach {
    /// A process of this host, or a loopback or local address.
    Host,
    /// A pod, node or service of the Kubernetes cluster (named by the API server).
    Cluster,
    /// A private, shared (CGNAT), link-local or unique-local address.
    Private,
    /// Any other address: reached from outside.
    Internet,
}

impl Reach {
    pub fn name(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Cluster => "cluster",
            Self::Private => "private",
            Self::Internet => "internet",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Host, Self::Cluster, Self::Private, Self::Internet]
            .into_iter()
            .find(|r| r.name() == text)
    }
}

/// Where one call's caller came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    pub reach: Reach,
    /// The caller was read from the `X-Forwarded-For` of the peer, a proxy on this host.
    pub proxied: bool,
}

/// The origin of a served call (its peer names the proxy when `proxied`).
pub fn origin(call: &ApiCall) -> Origin {
    let direct = peer_reach(call);
    if direct == Reach::Host
        && call.peer.process.is_some()
        && let Some(forwarded) = forwarded_for(&call.request_headers)
    {
        return Origin {
            reach: address_reach(forwarded, call),
            proxied: true,
        };
    }
    Origin {
        reach: direct,
        proxied: false,
    }
}

fn peer_reach(call: &ApiCall) -> Reach {
    if call.peer.process.is_some() {
        return Reach::Host;
    }
    match call.peer.identity.as_deref().map(|i| i.kind) {
        Some(EndKind::Process | EndKind::Host) => Reach::Host,
        Some(EndKind::Pod | EndKind::Service | EndKind::Node) => Reach::Cluster,
        Some(EndKind::External) | None => address_reach(call.peer.address.ip(), call),
    }
}

/// The ring of an address seen from `call`'s host.
fn address_reach(ip: IpAddr, call: &ApiCall) -> Reach {
    let ip = ip.to_canonical();
    if ip.is_loopback() || ip.is_unspecified() || ip == call.local.address.ip().to_canonical() {
        return Reach::Host;
    }
    if is_private(ip) {
        Reach::Private
    } else {
        Reach::Internet
    }
}

/// RFC 1918, shared address space (RFC 6598), link-local, unique-local (RFC 4193).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private() || v4.is_link_local() || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// The right-most address of `X-Forwarded-For`, else of `Forwarded`'s `for=` (the one the
/// proxy next to us wrote). `None` when neither is there or the entry is not an address
/// (`unknown`, an obfuscated name).
fn forwarded_for(headers: &[crate::protocol::http1::Header]) -> Option<IpAddr> {
    let last_value = |name: &str| {
        headers
            .iter()
            .rev()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(&h.value).ok())
    };
    if let Some(value) = last_value("x-forwarded-for") {
        return parse_node(value.rsplit(',').next()?.trim());
    }
    let value = last_value("forwarded")?;
    let element = value.rsplit(',').next()?;
    let node = element.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        key.eq_ignore_ascii_case("for").then_some(value)
    })?;
    parse_node(node.trim().trim_matches('"'))
}

/// `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:443`, `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    node.rsplit_once(':')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{call::tests::sample, protocol::http1::Header};

    fn from(peer: &str) -> ApiCall {
        let mut call = sample();
        call.peer.address = format!("{peer}:40000").parse().unwrap();
        call.peer.process = None;
        call.peer.identity = None;
        call.request_headers.clear();
        call
    }

    #[test]
    fn addresses_fall_in_their_ring() {
        for (peer, reach) in [
            ("127.0.0.1", Reach::Host),
            ("10.1.2.3", Reach::Private),
            ("172.20.0.9", Reach::Private),
            ("192.168.1.1", Reach::Private),
            ("100.100.1.1", Reach::Private),
            ("169.254.169.254", Reach::Private),
            ("203.0.113.7", Reach::Internet),
            ("8.8.8.8", Reach::Internet),
            ("100.128.0.1", Reach::Internet),
            ("172.32.0.1", Reach::Internet),
            ("[::1]", Reach::Host),
            ("[fd00::1]", Reach::Private),
            ("[fe80::1]", Reach::Private),
            ("[2001:4860::8888]", Reach::Internet),
            ("[::ffff:10.0.0.1]", Reach::Private),
        ] {
            let call = from(peer);
            assert_eq!(origin(&call).reach, reach, "{peer}");
        }
        // The host's own address.
        let mut call = from("203.0.113.7");
        call.local.address = "203.0.113.7:8080".parse().unwrap();
        assert_eq!(origin(&call).reach, Reach::Host);
    }

    #[test]
    fn a_local_proxys_forwarded_for_names_the_caller_and_the_proxy() {
        let header = |name: &str, value: &str| Header {
            name: name.into(),
            value: value.as_bytes().to_vec(),
        };
        let mut call = from("127.0.0.1");
        call.peer.process = sample().local.process;
        call.request_headers = vec![header("X-Forwarded-For", "10.0.0.1, 203.0.113.7")];
        assert_eq!(
            origin(&call),
            Origin {
                reach: Reach::Internet,
                proxied: true
            }
        );
        // Forged entries on the left are not read.
        call.request_headers = vec![header("x-forwarded-for", "203.0.113.7, 10.0.0.1")];
        assert_eq!(origin(&call).reach, Reach::Private);
        call.request_headers = vec![header(
            "Forwarded",
            "for=192.0.2.1, for=\"[2001:db8::1]:4711\";proto=https",
        )];
        assert_eq!(origin(&call).reach, Reach::Internet);
        // Not an address: the proxy stays the caller.
        call.request_headers = vec![header("X-Forwarded-For", "unknown")];
        assert_eq!(
            origin(&call),
            Origin {
                reach: Reach::Host,
                proxied: false
            }
        );
        // From a remote peer the header is the caller's word: not read.
        let mut remote = from("10.9.9.9");
        remote.request_headers = vec![header("X-Forwarded-For", "203.0.113.7")];
        assert_eq!(origin(&remote).reach, Reach::Private);
        // No header: the proxy is the caller.
        call.request_headers.clear();
        assert_eq!(origin(&call).reach, Reach::Host);
    }
}
