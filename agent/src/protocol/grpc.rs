//! gRPC over HTTP/2: the service and method a path names, the status in the trailers, and the
//! messages in the DATA frames (each one a 5-byte prefix, compressed flag and length, then the
//! message).

/// What a gRPC call is, from its path `/{package.Service}/{Method}`.
pub fn service_and_method(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let valid = |s: &str| !s.is_empty() && !s.contains('/') && !s.contains('?');
    (valid(service) && valid(method)).then_some((service, method))
}

/// Whether a request's content type makes it a gRPC call (`application/grpc`, `+proto`, ...).
pub fn is_grpc_content_type(value: &[u8]) -> bool {
    value == b"application/grpc"
        || value.starts_with(b"application/grpc+")
        || value.starts_with(b"application/grpc;")
}

/// `grpc-status` as its code (0 OK .. 16 UNAUTHENTICATED); `None` when not a number.
pub fn status_code(value: &[u8]) -> Option<u32> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2 spec): decoded, invalid UTF-8 replaced.
pub fn decode_message(value: &[u8]) -> String {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            value[i],
            value.get(i + 1).copied(),
            value.get(i + 2).copied(),
        ) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Counts the length-prefixed messages of one direction of a call as its DATA arrives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageCounter {
    /// Messages whose prefix was read.
    pub messages: u64,
    /// False once a hole in the capture covered a prefix: `messages` is then a lower bound.
    pub exact: bool,
    prefix: [u8; 5],
    prefix_have: usize,
    /// Bytes of the current message still to come.
    body_left: u64,
    lost: bool,
}

impl MessageCounter {
    pub fn new() -> Self {
        Self {
            exact: true,
            ..Self::default()
        }
    }

    pub fn bytes(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.lost {
            if self.body_left > 0 {
                let n = (self.body_left as usize).min(data.len());
                self.body_left -= n as u64;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.prefix_have).min(data.len());
            self.prefix[self.prefix_have..self.prefix_have + n].copy_from_slice(&data[..n]);
            self.prefix_have += n;
            data = &data[n..];
            if self.prefix_have == 5 {
                self.messages += 1;
                self.prefix_have = 0;
                self.body_left = u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]) as u64;
            }
        }
    }

    /// Whether the data so far is whole messages, exactly: what a gRPC body is.
    pub fn at_message_boundary(&self) -> bool {
        !self.lost && self.prefix_have == 0 && self.body_left == 0
    }

    /// `len` bytes were not captured.
    pub fn gap(&mut self, len: usize) {
        if self.prefix_have == 0 && self.body_left >= len as u64 {
            self.body_left -= len as u64;
        } else {
            self.lost = true;
            self.exact = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_service_and_method() {
        assert_eq!(
            service_and_method("/helloworld.Greeter/SayHello"),
            Some(("helloworld.Greeter", "SayHello"))
        );
        assert_eq!(service_and_method("/Svc/M"), Some(("Svc", "M")));
        assert_eq!(service_and_method("/index.html"), None);
        assert_eq!(service_and_method("/a/b/c"), None);
        assert_eq!(service_and_method("//M"), None);
    }

    #[test]
    fn reads_status_and_message() {
        assert!(is_grpc_content_type(b"application/grpc"));
        assert!(is_grpc_content_type(b"application/grpc+proto"));
        assert!(!is_grpc_content_type(b"application/grpc-web"));
        assert_eq!(status_code(b"5"), Some(5));
        assert_eq!(status_code(b"x"), None);
        assert_eq!(
            decode_message(b"not%20found%3A%20%E2%9C%93"),
            "not found: ✓"
        );
        assert_eq!(decode_message(b"100%"), "100%");
    }

    #[test]
    fn counts_messages_across_pieces_and_holes() {
        let mut stream = Vec::new();
        for len in [3u32, 0, 10] {
            stream.push(0);
            stream.extend_from_slice(&len.to_be_bytes());
            stream.extend(std::iter::repeat_n(b'm', len as usize));
        }
        for split in 0..stream.len() {
            let mut counter = MessageCounter::new();
            counter.bytes(&stream[..split]);
            counter.bytes(&stream[split..]);
            assert_eq!(
                (counter.messages, counter.exact),
                (3, true),
                "split {split}"
            );
        }
        // A hole inside a message body keeps the count exact; one over a prefix does not.
        let mut counter = MessageCounter::new();
        counter.bytes(&stream[..7]);
        counter.gap(1);
        counter.bytes(&stream[8..]);
        assert_eq!((counter.messages, counter.exact), (3, true));
        let mut counter = MessageCounter::new();
        counter.bytes(&stream[..2]);
        counter.gap(5);
        assert_eq!((counter.messages, counter.exact), (0, false));
    }
}
