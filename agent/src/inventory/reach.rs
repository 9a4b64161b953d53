//! Exposure: where a served endpoint's callers come from. Each call's caller is placed in one
//! of four rings, nearest first: this host, this cluster, a private network, the internet.
//!
//! The caller is the socket's peer, except behind a proxy on this host: when the peer is a
//! local process (nginx, envoy, a sidecar) and the request carries `X-Forwarded-For` (or
//! `Forwarded: for=`), the caller is the address that proxy appended, the right-most one.
//! Entries further left were written by whoever sent the request and can be forged, so they
//! are not read. The proxy is named (`via`). A proxy on another host is trusted this way only
//! when its address is in the configured `trusted_proxies` (a cloud load balancer's subnet):
//! otherwise its own endpoint, on its own host's agent, shows where its callers come from.

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
}

/// Where one call's caller came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    pub reach: Reach,
    /// The caller was read from the `X-Forwarded-For` of the peer, a proxy on this host.
    pub proxied: bool,
}

/// The origin of a served call (its peer names the proxy when `proxied`); `trusted`: remote
/// proxies whose forwarding headers are read too.
pub fn origin(call: &ApiCall, trusted: &[Cidr]) -> Origin {
    let direct = peer_reach(call);
    let local_proxy = direct == Reach::Host && call.peer.process.is_some();
    let peer = call.peer.address.ip().to_canonical();
    let trusted_proxy = !trusted.is_empty() && trusted.iter().any(|c| c.contains(peer));
    if (local_proxy || trusted_proxy)
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

/// An address block (`10.0.0.0/8`, `2001:db8::/32`, or one address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not an address or CIDR block"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: the prefix length is 0 to {max}"))?,
        };
        Ok(Cidr { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Cidr::parse(&text).map_err(serde::de::Error::custom)
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
            assert_eq!(origin(&call, &[]).reach, reach, "{peer}");
        }
        // Named by the cluster: a pod, a Service's cluster IP, a node.
        for kind in [EndKind::Pod, EndKind::Service, EndKind::Node] {
            let mut call = from("10.244.1.7");
            let identity = crate::call::identity::Identity::new(kind);
            call.peer.identity = Some(std::sync::Arc::new(identity));
            assert_eq!(origin(&call, &[]).reach, Reach::Cluster, "{kind:?}");
        }
        // The host's own address.
        let mut call = from("203.0.113.7");
        call.local.address = "203.0.113.7:8080".parse().unwrap();
        assert_eq!(origin(&call, &[]).reach, Reach::Host);
    }

    #[test]
    fn address_blocks_parse_and_hold_their_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let block = Cidr::parse("10.9.0.0/16").unwrap();
        assert!(block.contains(ip("10.9.255.1")) && !block.contains(ip("10.10.0.1")));
        assert!(block.contains(ip("::ffff:10.9.0.7")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("192.0.2.7").unwrap().contains(ip("192.0.2.7")));
        assert!(!Cidr::parse("192.0.2.7").unwrap().contains(ip("192.0.2.8")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::1")) && !v6.contains(ip("10.9.0.1")));
        assert_eq!(
            Cidr::parse("10.0.0.0/33"),
            Err("`10.0.0.0/33`: the prefix length is 0 to 32".into())
        );
        assert!(Cidr::parse("lb.internal").is_err());
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
            origin(&call, &[]),
            Origin {
                reach: Reach::Internet,
                proxied: true
            }
        );
        // Forged entries on the left are not read.
        call.request_headers = vec![header("x-forwarded-for", "203.0.113.7, 10.0.0.1")];
        assert_eq!(origin(&call, &[]).reach, Reach::Private);
        call.request_headers = vec![header(
            "Forwarded",
            "for=192.0.2.1, for=\"[2001:db8::1]:4711\";proto=https",
        )];
        assert_eq!(origin(&call, &[]).reach, Reach::Internet);
        // Not an address: the proxy stays the caller.
        call.request_headers = vec![header("X-Forwarded-For", "unknown")];
        assert_eq!(
            origin(&call, &[]),
            Origin {
                reach: Reach::Host,
                proxied: false
            }
        );
        // From a remote peer the header is the caller's word: not read.
        let mut remote = from("10.9.9.9");
        remote.request_headers = vec![header("X-Forwarded-For", "203.0.113.7")];
        assert_eq!(origin(&remote, &[]).reach, Reach::Private);
        // Unless the peer is a trusted proxy (a load balancer's subnet).
        let trusted = [Cidr::parse("10.9.0.0/16").unwrap()];
        assert_eq!(
            origin(&remote, &trusted),
            Origin {
                reach: Reach::Internet,
                proxied: true
            }
        );
        // No header: the proxy is the caller.
        call.request_headers.clear();
        assert_eq!(origin(&call, &[]).reach, Reach::Host);
    }
}
