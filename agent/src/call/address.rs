//! Where the call went, as every stage names it: `server.address` and `server.port`, and
//! Host header parsing (the inventory names called APIs by it, the sinks print it).

use super::ApiCall;

/// `server.address` and `server.port`: the Host header when the request carries one (what the
/// client asked for), else the TLS server name (SNI), else the server's socket address.
pub fn server_address(call: &ApiCall) -> (String, u16) {
    let socket = call.server().address;
    match call.host.as_deref().filter(|h| !h.is_empty()) {
        Some(host) => {
            let (name, port) = split_host(host);
            (name.to_string(), port.unwrap_or(socket.port()))
        }
        None => match &call.tls_server_name {
            Some(name) => (name.to_string(), socket.port()),
            None => (socket.ip().to_string(), socket.port()),
        },
    }
}

/// Host header -> (host, port). Handles `[v6]:port` and a bare IPv6 address.
pub fn split_host(host: &str) -> (&str, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[')
        && let Some((addr, after)) = rest.split_once(']')
    {
        return (addr, after.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, port.parse().ok()),
        _ => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_host_headers() {
        assert_eq!(split_host("api.local:8080"), ("api.local", Some(8080)));
        assert_eq!(split_host("api.local"), ("api.local", None));
        assert_eq!(split_host("[::1]:9000"), ("::1", Some(9000)));
        assert_eq!(split_host("::1"), ("::1", None));
    }
}
