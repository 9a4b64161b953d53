//! Message heads: the request or status line and the headers, parsed with httparse.

/// Most headers accepted in one message head; more is treated as a malformed stream.
const MAX_HEADERS: usize = 128;

/// A header as received. The name is lower-cased; the value keeps its bytes, because it may be
/// a secret that later stages must fingerprint, never print.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// The request target as sent (origin-form path and query, or absolute-form).
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: Vec<Header>,
    /// Bytes of the head, request line to the blank line included.
    pub len: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    pub minor_version: u8,
    pub headers: Vec<Header>,
    pub len: usize,
}

/// Either kind of head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Head {
    Request(RequestHead),
    Response(ResponseHead),
}

/// Outcome of parsing a buffer that ends at a blank line.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Complete(Head),
    Partial,
    Invalid(String),
}

pub fn parse_request(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => Parsed::Complete(Head::Request(RequestHead {
            method: req.method.unwrap_or_default().to_string(),
            target: req.path.unwrap_or_default().to_string(),
            minor_version: req.version.unwrap_or(1),
            headers: collect(req.headers),
            len,
        })),
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(e) => Parsed::Invalid(e.to_string()),
    }
}

pub fn parse_response(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    match res.parse(buf) {
        Ok(httparse::Status::Complete(len)) => Parsed::Complete(Head::Response(ResponseHead {
            status: res.code.unwrap_or_default(),
            reason: res.reason.unwrap_or_default().to_string(),
            minor_version: res.version.unwrap_or(1),
            headers: collect(res.headers),
            len,
        })),
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(e) => Parsed::Invalid(e.to_string()),
    }
}

fn collect(headers: &[httparse::Header<'_>]) -> Vec<Header> {
    headers
        .iter()
        .filter(|h| !h.name.is_empty())
        .map(|h| Header {
            name: h.name.to_ascii_lowercase(),
            value: h.value.to_vec(),
        })
        .collect()
}

/// Header lookups shared by both kinds of head.
pub trait Headers {
    fn headers(&self) -> &[Header];

    /// The first value of a header, as text.
    fn header(&self, name: &str) -> Option<String> {
        self.headers()
            .iter()
            .find(|h| h.name == name)
            .map(|h| String::from_utf8_lossy(&h.value).trim().to_string())
    }

    /// Whether the last transfer coding is chunked (RFC 9112 6.1).
    fn is_chunked(&self) -> bool {
        self.headers()
            .iter()
            .filter(|h| h.name == "transfer-encoding")
            .flat_map(|h| h.value.split(|b| *b == b','))
            .next_back()
            .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"))
    }

    /// Content-Length: `Ok(None)` when absent, an error when invalid or contradictory.
    fn content_length(&self) -> Result<Option<u64>, String> {
        let mut found: Option<u64> = None;
        for h in self.headers().iter().filter(|h| h.name == "content-length") {
            for part in h.value.split(|b| *b == b',') {
                let text = std::str::from_utf8(part.trim_ascii())
                    .map_err(|_| "non-ASCII Content-Length")?;
                let value: u64 = text
                    .parse()
                    .map_err(|_| format!("invalid Content-Length {text:?}"))?;
                match found {
                    Some(previous) if previous != value => {
                        return Err(format!("conflicting Content-Length {previous} and {value}"));
                    }
                    _ => found = Some(value),
                }
            }
        }
        Ok(found)
    }
}

impl Headers for RequestHead {
    fn headers(&self) -> &[Header] {
        &self.headers
    }
}

impl Headers for ResponseHead {
    fn headers(&self) -> &[Header] {
        &self.headers
    }
}

impl RequestHead {
    /// The path part of the target (without the query), for origin-form and absolute-form.
    pub fn path(&self) -> &str {
        let target = self.origin_form();
        target.split_once('?').map(|(p, _)| p).unwrap_or(target)
    }

    /// The query string without its `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.origin_form()
            .split_once('?')
            .map(|(_, q)| q.split_once('#').map(|(q, _)| q).unwrap_or(q))
    }

    /// The target without scheme and authority (absolute-form as sent to proxies).
    fn origin_form(&self) -> &str {
        let t = self.target.as_str();
        for scheme in ["http://", "https://"] {
            if t.len() >= scheme.len() && t[..scheme.len()].eq_ignore_ascii_case(scheme) {
                let rest = &t[scheme.len()..];
                return rest.find('/').map(|i| &rest[i..]).unwrap_or("/");
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(bytes: &[u8]) -> RequestHead {
        match parse_request(bytes) {
            Parsed::Complete(Head::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_a_request_head() {
        let r = request(b"GET /users/42?expand=1&x=2 HTTP/1.1\r\nHost: api.local:8080\r\nUser-Agent: curl/7.88\r\n\r\nBODY");
        assert_eq!(r.method, "GET");
        assert_eq!(r.path(), "/users/42");
        assert_eq!(r.query(), Some("expand=1&x=2"));
        assert_eq!(r.minor_version, 1);
        assert_eq!(r.header("host").as_deref(), Some("api.local:8080"));
        assert_eq!(r.len, b"GET /users/42?expand=1&x=2 HTTP/1.1\r\nHost: api.local:8080\r\nUser-Agent: curl/7.88\r\n\r\n".len());
    }

    #[test]
    fn absolute_form_targets_give_paths() {
        let r = request(b"GET http://example.com/a/b?c=d HTTP/1.1\r\n\r\n");
        assert_eq!(r.path(), "/a/b");
        assert_eq!(r.query(), Some("c=d"));
        let bare = request(b"GET http://example.com HTTP/1.1\r\n\r\n");
        assert_eq!(bare.path(), "/");
    }

    #[test]
    fn framing_headers() {
        let r = request(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert!(r.is_chunked());
        let r = request(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
        assert!(!r.is_chunked());
        let r = request(b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n");
        assert_eq!(r.content_length(), Ok(Some(12)));
        let r = request(b"POST / HTTP/1.1\r\nContent-Length: 12, 12\r\n\r\n");
        assert_eq!(r.content_length(), Ok(Some(12)));
        let r = request(b"POST / HTTP/1.1\r\nContent-Length: 12\r\nContent-Length: 13\r\n\r\n");
        assert!(r.content_length().is_err());
        let r = request(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n");
        assert!(r.content_length().is_err());
    }

    #[test]
    fn partial_and_invalid_heads() {
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\nHost: a"), Parsed::Partial);
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"),
            Parsed::Invalid(_)
        ));
        assert!(matches!(
            parse_response(b"HTTP/1.1 2x0 OK\r\n\r\n"),
            Parsed::Invalid(_)
        ));
        match parse_response(b"HTTP/1.0 204 No Content\r\nServer: x\r\n\r\n") {
            Parsed::Complete(Head::Response(r)) => {
                assert_eq!(
                    (r.status, r.minor_version, r.reason.as_str()),
                    (204, 0, "No Content")
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
