//! Derived values that several sinks print the same way.

use crate::{call::ApiCall, findings::redact};

/// `server.address` and `server.port`: the Host header when the request carries one (what the
/// client asked for), else the server's socket address.
pub fn server_address(call: &ApiCall) -> (String, u16) {
    let socket = call.server().address;
    match call.host.as_deref().filter(|h| !h.is_empty()) {
        Some(host) => split_host(host).map_or_else(
            || (socket.ip().to_string(), socket.port()),
            |(name, port)| (name, port.unwrap_or(socket.port())),
        ),
        None => (socket.ip().to_string(), socket.port()),
    }
}

/// Host header -> (host, port). Handles `[v6]:port`.
pub fn split_host(host: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = host.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return Some((addr.to_string(), port));
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => Some((name.to_string(), port.parse().ok())),
        _ => Some((host.to_string(), None)),
    }
}

/// The query with credential values removed.
pub fn safe_query(call: &ApiCall) -> Option<String> {
    call.query.as_deref().map(redact::query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_host_headers() {
        assert_eq!(
            split_host("api.local:8080"),
            Some(("api.local".into(), Some(8080)))
        );
        assert_eq!(split_host("api.local"), Some(("api.local".into(), None)));
        assert_eq!(split_host("[::1]:9000"), Some(("::1".into(), Some(9000))));
        assert_eq!(split_host("::1"), Some(("::1".into(), None)));
    }
}
