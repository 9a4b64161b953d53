//! Cheap checks of whether bytes start an HTTP/1 request or response. Used to pick a
//! connection's protocol and the client/server direction when the agent did not see it open,
//! and to resynchronise a stream after an error.

/// The answer for a prefix of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Yes,
    No,
    /// Too few bytes to tell.
    NeedMore,
}

/// Methods are tokens; real ones are short and upper case (RFC 9110 registry, WebDAV, PRI).
const MAX_METHOD_LEN: usize = 20;

/// Does `bytes` start with a request line (`METHOD SP target`)?
pub fn request_start(bytes: &[u8]) -> Verdict {
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'A'..=b'Z' | b'-' | b'_' if i < MAX_METHOD_LEN => continue,
            b' ' if i > 0 => {
                return match bytes.get(i + 1) {
                    None => Verdict::NeedMore,
                    // origin-form, asterisk-form, absolute-form, authority-form (CONNECT).
                    Some(b'/' | b'*' | b'h' | b'H') => Verdict::Yes,
                    Some(c) if c.is_ascii_alphanumeric() && &bytes[..i] == b"CONNECT" => {
                        Verdict::Yes
                    }
                    Some(_) => Verdict::No,
                };
            }
            _ => return Verdict::No,
        }
    }
    if bytes.len() < MAX_METHOD_LEN {
        Verdict::NeedMore
    } else {
        Verdict::No
    }
}

/// Does `bytes` start with a TLS record header: content type 20-23 (change_cipher_spec, alert,
/// handshake, application_data), then version 3.0 to 3.4? Such bytes are never HTTP/1.
pub fn tls_record_start(bytes: &[u8]) -> bool {
    matches!(bytes, [0x14..=0x17, 0x03, 0x00..=0x04, ..])
}

/// Whether `bytes` are all there is and could still begin a TLS record (one or two bytes).
pub fn tls_record_prefix(bytes: &[u8]) -> bool {
    matches!(bytes, [0x14..=0x17] | [0x14..=0x17, 0x03])
}

/// Does `bytes` start with a status line (`HTTP/1.x NNN`)?
pub fn response_start(bytes: &[u8]) -> Verdict {
    const PREFIX: &[u8] = b"HTTP/1.";
    let n = bytes.len().min(PREFIX.len());
    if bytes[..n] != PREFIX[..n] {
        return Verdict::No;
    }
    // "HTTP/1.x NNN": a digit, a space, three digits; judge the bytes that are there.
    let expected = [
        u8::is_ascii_digit as fn(&u8) -> bool,
        |b: &u8| *b == b' ',
        u8::is_ascii_digit,
        u8::is_ascii_digit,
        u8::is_ascii_digit,
    ];
    for (i, check) in expected.iter().enumerate() {
        match bytes.get(PREFIX.len() + i) {
            None => return Verdict::NeedMore,
            Some(b) if !check(b) => return Verdict::No,
            Some(_) => {}
        }
    }
    Verdict::Yes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_tls_records() {
        // A ClientHello's record header, an application-data record, and things that are not.
        assert!(tls_record_start(&[0x16, 0x03, 0x01, 0x02, 0x00]));
        assert!(tls_record_start(&[0x17, 0x03, 0x03]));
        assert!(!tls_record_start(&[0x16, 0x03]));
        assert!(!tls_record_start(b"GET / HTTP/1.1"));
        assert!(!tls_record_start(&[0x16, 0x02, 0x00]));
        // nginx's one-byte peek, and two bytes, are not enough to tell.
        assert!(tls_record_prefix(&[0x16]) && tls_record_prefix(&[0x16, 0x03]));
        assert!(!tls_record_prefix(&[0x16, 0x03, 0x01]) && !tls_record_prefix(b"G"));
    }

    #[test]
    fn recognises_request_lines() {
        assert_eq!(request_start(b"GET / HTTP/1.1\r\n"), Verdict::Yes);
        assert_eq!(request_start(b"POST /api/v1/users HTTP/1.1"), Verdict::Yes);
        assert_eq!(request_start(b"OPTIONS * HTTP/1.1"), Verdict::Yes);
        assert_eq!(
            request_start(b"GET http://example.com/ HTTP/1.1"),
            Verdict::Yes
        );
        assert_eq!(
            request_start(b"CONNECT example.com:443 HTTP/1.1"),
            Verdict::Yes
        );
        assert_eq!(request_start(b"M-SEARCH * HTTP/1.1"), Verdict::Yes);
        assert_eq!(request_start(b"GE"), Verdict::NeedMore);
        assert_eq!(request_start(b"GET "), Verdict::NeedMore);
        assert_eq!(request_start(b""), Verdict::NeedMore);
    }

    #[test]
    fn rejects_other_protocols() {
        assert_eq!(request_start(b"\x16\x03\x01\x02\x00"), Verdict::No); // TLS ClientHello
        assert_eq!(request_start(b"get / HTTP/1.1"), Verdict::No);
        assert_eq!(request_start(b"HTTP/1.1 200 OK"), Verdict::No);
        assert_eq!(request_start(b"PRI * HTTP/2.0"), Verdict::Yes); // h2 preface is a request line
        assert_eq!(request_start(b"AAAAAAAAAAAAAAAAAAAAAAAAAAAA"), Verdict::No);
        assert_eq!(request_start(b"GET x"), Verdict::No);
    }

    #[test]
    fn recognises_status_lines() {
        assert_eq!(response_start(b"HTTP/1.1 200 OK\r\n"), Verdict::Yes);
        assert_eq!(response_start(b"HTTP/1.0 404 Not Found"), Verdict::Yes);
        assert_eq!(response_start(b"HTTP/1.1 20"), Verdict::NeedMore);
        assert_eq!(response_start(b"HTT"), Verdict::NeedMore);
        assert_eq!(response_start(b"HTTP/2 200"), Verdict::No);
        assert_eq!(response_start(b"HTTP/1.1 abc"), Verdict::No);
        assert_eq!(response_start(b"GET / HTTP/1.1"), Verdict::No);
    }
}
