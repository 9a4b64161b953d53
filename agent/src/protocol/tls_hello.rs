//! The server name (SNI) a TLS client asks for, read from its ClientHello: the one TLS message
//! that always crosses the socket in clear, so it names the server even when the plaintext
//! that follows is out of reach. Only the first record is read; anything malformed is `None`.

/// Record type handshake, then a ClientHello.
const HANDSHAKE: u8 = 0x16;
const CLIENT_HELLO: u8 = 0x01;
/// Extension `server_name` and its `host_name` entry type (RFC 6066).
const SERVER_NAME: u16 = 0;
const HOST_NAME: u8 = 0;

/// The host name in a ClientHello at the start of `bytes`.
pub fn server_name(bytes: &[u8]) -> Option<String> {
    let mut r = Reader(bytes);
    if r.u8()? != HANDSHAKE || r.u8()? != 3 {
        return None;
    }
    r.skip(1)?; // minor version
    let record_len = r.u16()? as usize;
    let mut r = Reader(r.0.get(..record_len.min(r.0.len()))?);
    if r.u8()? != CLIENT_HELLO {
        return None;
    }
    r.skip(3)?; // handshake length
    r.skip(2 + 32)?; // client_version, random
    let session_id = r.u8()? as usize;
    r.skip(session_id)?;
    let suites = r.u16()? as usize;
    r.skip(suites)?;
    let compressions = r.u8()? as usize;
    r.skip(compressions)?;
    let extensions_len = r.u16()? as usize;
    let mut extensions = Reader(r.0.get(..extensions_len)?);
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let len = extensions.u16()? as usize;
        let mut body = Reader(extensions.take(len)?);
        if kind != SERVER_NAME {
            continue;
        }
        let list_len = body.u16()? as usize;
        let mut list = Reader(body.take(list_len)?);
        while !list.0.is_empty() {
            let name_type = list.u8()?;
            let name_len = list.u16()? as usize;
            let name = list.take(name_len)?;
            if name_type == HOST_NAME {
                return host_name(name);
            }
        }
        return None;
    }
    None
}

/// A DNS name: letters, digits, `-`, `.`, `_`, at most 253 bytes.
fn host_name(bytes: &[u8]) -> Option<String> {
    let valid = !bytes.is_empty()
        && bytes.len() <= 253
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    valid.then(|| String::from_utf8_lossy(bytes).to_ascii_lowercase())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello with a session id, two suites, and the extensions given.
    fn client_hello(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut ext = Vec::new();
        for (kind, body) in extensions {
            ext.extend_from_slice(&kind.to_be_bytes());
            ext.extend_from_slice(&(body.len() as u16).to_be_bytes());
            ext.extend_from_slice(body);
        }
        let mut hello = vec![0x03, 0x03];
        hello.extend_from_slice(&[7; 32]);
        hello.extend_from_slice(&[4, 1, 2, 3, 4]); // session id
        hello.extend_from_slice(&[0, 4, 0x13, 0x01, 0xc0, 0x2f]); // suites
        hello.extend_from_slice(&[1, 0]); // compression
        hello.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        hello.extend_from_slice(&ext);
        let mut handshake = vec![CLIENT_HELLO];
        handshake.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
        handshake.extend_from_slice(&hello);
        let mut record = vec![HANDSHAKE, 3, 1];
        record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
        record.extend_from_slice(&handshake);
        record
    }

    fn sni(name: &[u8]) -> (u16, Vec<u8>) {
        let mut entry = vec![HOST_NAME];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name);
        let mut body = (entry.len() as u16).to_be_bytes().to_vec();
        body.extend_from_slice(&entry);
        (SERVER_NAME, body)
    }

    #[test]
    fn finds_the_server_name_among_extensions() {
        let hello = client_hello(&[
            (10, vec![0, 2, 0, 29]),
            sni(b"API.Example.com"),
            (43, vec![2, 3, 4]),
        ]);
        assert_eq!(server_name(&hello).as_deref(), Some("api.example.com"));
        // Followed by more records in the same read.
        let mut more = hello.clone();
        more.extend_from_slice(&[0x14, 3, 3, 0, 1, 1]);
        assert_eq!(server_name(&more).as_deref(), Some("api.example.com"));
    }

    #[test]
    fn no_name_and_bad_input_give_none() {
        assert_eq!(server_name(&client_hello(&[(10, vec![0, 2, 0, 29])])), None);
        assert_eq!(server_name(&client_hello(&[sni(b"bad name\n")])), None);
        let hello = client_hello(&[sni(b"api.example.com")]);
        for cut in 0..hello.len() {
            assert_eq!(server_name(&hello[..cut]), None, "cut at {cut}");
        }
        assert_eq!(server_name(b"GET / HTTP/1.1\r\n"), None);
        let mut server_hello = hello.clone();
        server_hello[5] = 2;
        assert_eq!(server_name(&server_hello), None);
    }
}
