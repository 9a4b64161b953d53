//! Which protocol a connection carries, decided from its first data (or again after a loss):
//! TLS records, HTTP/1 request or status lines, the HTTP/2 preface or frames, and the h2c
//! upgrade of an HTTP/1.1 connection. Fixes the connection's role when the agent did not see
//! it open.

use crate::{
    capture::event::{DataChunk, Direction},
    protocol::{
        detect::{self, Verdict},
        http1::{Http1Connection, Limits},
        http2::{Http2Connection, Start, frame},
    },
};

use super::table::{Connection, Protocol, Role};

/// Data syscalls a connection joined mid-way may carry before its protocol is recognised.
const DETECT_CHUNKS: u32 = 16;

/// Whether an exchange is an HTTP/1.1 request upgraded to h2c by a 101 answer.
pub fn is_h2c_upgrade(exchange: &crate::protocol::http1::Exchange) -> bool {
    use crate::protocol::http1::head::Headers as _;
    let h2c = |value: Option<String>| value.is_some_and(|v| v.trim().eq_ignore_ascii_case("h2c"));
    exchange
        .response
        .as_ref()
        .is_some_and(|r| r.status == 101 && h2c(r.header("upgrade")))
        && h2c(exchange.request.header("upgrade"))
}

/// Decides a connection's protocol from a data chunk, fixing its role when unknown. `None`
/// means "not yet": keep looking at the next chunks.
pub fn detect_protocol(
    conn: &mut Connection,
    chunk: &DataChunk,
    chunks_seen: u32,
    limits: Limits,
) -> Option<Protocol> {
    let egress = chunk.direction == Direction::Egress;
    let data = &chunk.payload;
    if chunk.tls.is_none() && detect::tls_record_start(data) {
        return Some(Protocol::Tls { directions: 0 });
    }
    // Too short to tell (nginx peeks at one byte before its TLS handshake): wait for more.
    if chunk.tls.is_none() && detect::tls_record_prefix(data) {
        return None;
    }
    if let Some(protocol) = detect_http2(conn, egress, data, limits) {
        return protocol;
    }
    if conn.role == Role::Unknown {
        if detect::request_start(data) == Verdict::Yes {
            conn.role = if egress { Role::Client } else { Role::Server };
        } else if detect::response_start(data) == Verdict::Yes {
            conn.role = if egress { Role::Server } else { Role::Client };
        }
    }
    let http = || Some(Protocol::Http1(Box::new(Http1Connection::new(limits))));
    let give_up = || {
        if conn.seen_open || chunks_seen + 1 >= DETECT_CHUNKS {
            Some(Protocol::Other)
        } else {
            None
        }
    };
    if conn.role == Role::Unknown {
        return give_up();
    }
    let carries_requests = egress == (conn.role == Role::Client);
    let verdict = if carries_requests {
        detect::request_start(data)
    } else {
        detect::response_start(data)
    };
    match verdict {
        Verdict::Yes | Verdict::NeedMore => http(),
        Verdict::No => give_up(),
    }
}

/// HTTP/2 from its preface (the sender is the client), from a server's first SETTINGS on a
/// connection seen opening, or from a run of frames on one joined mid-way. `Some(None)`: too
/// few bytes of a possible preface to tell.
fn detect_http2(
    conn: &mut Connection,
    egress: bool,
    data: &[u8],
    limits: Limits,
) -> Option<Option<Protocol>> {
    let h2 = |client_egress: Option<bool>, start: Start| {
        Some(Some(Protocol::Http2(Box::new(Http2Connection::new(
            client_egress,
            start,
            limits,
        )))))
    };
    let preface = frame::PREFACE;
    if data.len() < preface.len() && preface.starts_with(data) && data.len() >= 4 {
        return Some(None);
    }
    if data.starts_with(preface) {
        if conn.role == Role::Unknown {
            conn.role = if egress { Role::Client } else { Role::Server };
        }
        return h2(Some(conn.role == Role::Client), Start::Beginning);
    }
    if !frame::plausible_frames(data) {
        return None;
    }
    let first = frame::FrameHeader::parse(data[..frame::HEADER_LEN].try_into().ok()?);
    let from_server = match conn.role {
        Role::Server => egress,
        Role::Client => !egress,
        Role::Unknown => false,
    };
    if conn.seen_open {
        // A server that speaks first (prior knowledge): its SETTINGS open the connection.
        return (from_server && first.kind == frame::SETTINGS && !first.has(frame::END_STREAM))
            .then(|| h2(Some(conn.role == Role::Client), Start::Beginning))
            .flatten();
    }
    let client_egress = match conn.role {
        Role::Unknown => None,
        role => Some(role == Role::Client),
    };
    h2(client_egress, Start::Joined)
}
