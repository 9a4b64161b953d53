//! Whether a TLS client presented a certificate (mTLS), read from the handshake records the
//! socket probes see before encryption starts. TLS 1.2 sends the client's Certificate message
//! in clear: a non-empty certificate list is mTLS, an empty one (or none before the client's
//! ChangeCipherSpec, in a full handshake where the server sent its own certificate) is not.
//! TLS 1.3 encrypts the client's certificate, and a resumed TLS 1.2 session repeats none: the
//! answer is then unknown, never a guess.
//!
//! Records are followed across reads per direction; a gap in the bytes (capture limit, lost
//! events) or a header split across reads ends the observation (unknown).

const CHANGE_CIPHER_SPEC: u8 = 20;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;
const SERVER_HELLO: u8 = 2;
const CERTIFICATE: u8 = 11;
const SUPPORTED_VERSIONS: u16 = 43;
const TLS13: u16 = 0x0304;

/// Where one direction's byte stream is.
#[derive(Clone, Debug, Default)]
struct Stream {
    /// Bytes of the current record still to come, and its type.
    record_left: usize,
    record_type: u8,
    /// Bytes of the current handshake message still to come (across records).
    message_left: usize,
}

#[derive(Clone, Debug, Default)]
pub struct HandshakeObserver {
    /// Whether the client's bytes are the ones this process sends, once known (from the
    /// connection's role, else from who sent the ClientHello).
    client_is_egress: Option<bool>,
    client: Stream,
    server: Stream,
    tls13: bool,
    server_certificate: bool,
    client_certificate: Option<bool>,
    done: bool,
}

impl HandshakeObserver {
    /// `Some(true)`: the client sent a certificate; `Some(false)`: it did not; `None`: unknown.
    pub fn client_certificate(&self) -> Option<bool> {
        self.client_certificate
    }

    /// Bytes of the connection, in order per direction (`egress`: sent by this process);
    /// `we_are_client` when the connection's role is known; `complete` is false when the
    /// capture cut the bytes.
    pub fn observe(
        &mut self,
        egress: bool,
        we_are_client: Option<bool>,
        bytes: &[u8],
        complete: bool,
    ) {
        if self.done {
            return;
        }
        if self.client_is_egress.is_none() {
            self.client_is_egress =
                we_are_client.or_else(|| is_client_hello(bytes).then_some(egress));
        }
        let Some(client_is_egress) = self.client_is_egress else {
            return;
        };
        self.feed(egress == client_is_egress, bytes);
        if !complete {
            self.done = true;
        }
    }

    fn stream(&mut self, from_client: bool) -> &mut Stream {
        if from_client {
            &mut self.client
        } else {
            &mut self.server
        }
    }

    fn feed(&mut self, from_client: bool, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.done {
            let stream = self.stream(from_client);
            if stream.record_left > 0 {
                let n = stream.record_left.min(bytes.len());
                stream.record_left -= n;
                let kind = stream.record_type;
                self.record_body(from_client, kind, &bytes[..n]);
                bytes = &bytes[n..];
                continue;
            }
            if bytes.len() < 5 {
                self.done = true;
                return;
            }
            stream.record_type = bytes[0];
            stream.record_left = usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
            bytes = &bytes[5..];
            if stream.record_left == 0 {
                let kind = stream.record_type;
                self.record_body(from_client, kind, &[]);
            }
        }
    }

    fn record_body(&mut self, from_client: bool, kind: u8, mut body: &[u8]) {
        match kind {
            APPLICATION_DATA => self.done = true,
            CHANGE_CIPHER_SPEC if from_client => {
                if !self.tls13 && self.server_certificate && self.client_certificate.is_none() {
                    self.client_certificate = Some(false);
                }
                self.done = true;
            }
            HANDSHAKE => {
                while !body.is_empty() && !self.done {
                    let stream = self.stream(from_client);
                    if stream.message_left > 0 {
                        let n = stream.message_left.min(body.len());
                        stream.message_left -= n;
                        body = &body[n..];
                        continue;
                    }
                    if body.len() < 4 {
                        self.done = true;
                        return;
                    }
                    let length = u32::from_be_bytes([0, body[1], body[2], body[3]]) as usize;
                    self.stream(from_client).message_left = length;
                    let available = &body[4..(4 + length).min(body.len())];
                    self.message(from_client, body[0], available);
                    body = &body[4..];
                }
            }
            _ => {}
        }
    }

    /// A handshake message (its first bytes, as far as this read holds them).
    fn message(&mut self, from_client: bool, kind: u8, body: &[u8]) {
        match (from_client, kind) {
            (false, SERVER_HELLO) => self.tls13 = selects_tls13(body).unwrap_or(false),
            (false, CERTIFICATE) => self.server_certificate = true,
            (true, CERTIFICATE) if body.len() >= 3 => {
                let list = u32::from_be_bytes([0, body[0], body[1], body[2]]);
                self.client_certificate = Some(list > 0);
                self.done = true;
            }
            _ => {}
        }
    }
}

/// A handshake record holding a ClientHello.
fn is_client_hello(bytes: &[u8]) -> bool {
    bytes.len() > 5 && bytes[0] == HANDSHAKE && bytes[1] == 3 && bytes[5] == 1
}

/// Whether a ServerHello selects TLS 1.3 (its `supported_versions` extension).
fn selects_tls13(body: &[u8]) -> Option<bool> {
    let mut at = 2 + 32; // legacy version, random
    let session_id = usize::from(*body.get(at)?);
    at += 1 + session_id + 2 + 1; // session id, cipher suite, compression
    let extensions_end =
        at + 2 + usize::from(u16::from_be_bytes([*body.get(at)?, *body.get(at + 1)?]));
    at += 2;
    while at + 4 <= extensions_end.min(body.len()) {
        let kind = u16::from_be_bytes([body[at], body[at + 1]]);
        let len = usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
        if kind == SUPPORTED_VERSIONS && len == 2 {
            return Some(u16::from_be_bytes([*body.get(at + 4)?, *body.get(at + 5)?]) == TLS13);
        }
        at += 4 + len;
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut r = vec![kind, 3, 3];
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        m.extend_from_slice(body);
        m
    }

    fn server_hello(tls13: bool) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[1; 32]);
        body.extend_from_slice(&[0, 0x13, 0x01, 0]); // no session id, suite, compression
        let ext: Vec<u8> = if tls13 {
            vec![0, 43, 0, 2, 3, 4]
        } else {
            vec![0, 11, 0, 2, 1, 0]
        };
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        message(SERVER_HELLO, &body)
    }

    /// The client certificate's list: `cert` bytes, or none.
    fn client_certificate(cert: usize) -> Vec<u8> {
        let mut body = (cert as u32 + if cert > 0 { 3 } else { 0 }).to_be_bytes()[1..].to_vec();
        if cert > 0 {
            body.extend_from_slice(&(cert as u32).to_be_bytes()[1..]);
            body.extend(std::iter::repeat_n(0x30, cert));
        }
        message(CERTIFICATE, &body)
    }

    /// A TLS 1.2 full handshake: the server's flight (one record), then the client's.
    fn handshake(client_cert: Option<usize>, tls13: bool) -> (Vec<u8>, Vec<u8>) {
        let mut server = server_hello(tls13);
        server.extend(message(CERTIFICATE, &[0, 0, 3, 0, 0, 0]));
        server.extend(message(14, &[])); // ServerHelloDone
        let mut flight = Vec::new();
        if let Some(n) = client_cert {
            flight.extend(client_certificate(n));
        }
        flight.extend(message(16, &[0; 70])); // ClientKeyExchange
        let mut client = record(HANDSHAKE, &flight);
        client.extend(record(CHANGE_CIPHER_SPEC, &[1]));
        client.extend(record(HANDSHAKE, &[9; 40])); // encrypted Finished
        (record(HANDSHAKE, &server), client)
    }

    fn observe_in_pieces(server: &[u8], client: &[u8], piece: usize) -> Option<bool> {
        let mut o = HandshakeObserver::default();
        o.observe(
            true,
            None,
            &record(HANDSHAKE, &message(1, &[3, 3, 0])),
            true,
        );
        for chunk in server.chunks(piece) {
            o.observe(false, None, chunk, true);
        }
        for chunk in client.chunks(piece) {
            o.observe(true, None, chunk, true);
        }
        o.client_certificate()
    }

    #[test]
    fn tls12_client_certificates_are_seen_across_any_reads() {
        for piece in [usize::MAX, 200, 64] {
            let (s, c) = handshake(Some(900), false);
            assert_eq!(
                observe_in_pieces(&s, &c, piece),
                Some(true),
                "piece {piece}"
            );
            let (s, c) = handshake(Some(0), false);
            assert_eq!(observe_in_pieces(&s, &c, piece), Some(false));
            let (s, c) = handshake(None, false);
            assert_eq!(observe_in_pieces(&s, &c, piece), Some(false));
        }
    }

    #[test]
    fn tls13_resumption_and_gaps_are_unknown() {
        let (s, c) = handshake(None, true);
        assert_eq!(observe_in_pieces(&s, &c, usize::MAX), None);
        // A resumed session: no server certificate.
        let s = record(HANDSHAKE, &server_hello(false));
        let c = record(CHANGE_CIPHER_SPEC, &[1]);
        assert_eq!(observe_in_pieces(&s, &c, usize::MAX), None);
        // Bytes cut by the capture limit.
        let (s, c) = handshake(Some(900), false);
        let mut o = HandshakeObserver::default();
        o.observe(false, Some(false), &s[..10], false);
        o.observe(false, Some(false), &s[10..], true);
        o.observe(true, Some(false), &c, true);
        assert_eq!(o.client_certificate(), None);
        // Garbage never panics.
        let mut o = HandshakeObserver::default();
        o.observe(false, Some(true), &[22, 3, 3, 0, 4, 2, 0, 0, 9], true);
        o.observe(true, Some(true), &[1, 2], true);
        // Neither role nor ClientHello: nothing is guessed.
        let mut o = HandshakeObserver::default();
        let (s, c) = handshake(Some(900), false);
        o.observe(false, None, &s, true);
        o.observe(true, None, &c, true);
        assert_eq!(o.client_certificate(), None);
    }
}
