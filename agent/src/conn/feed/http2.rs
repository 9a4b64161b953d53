//! The HTTP/2 feed: frames of both directions to the connection's HTTP/2 state, which also
//! tells a connection joined mid-way which end is the client.

use super::Exchange;
use crate::{
    capture::event::{DataChunk, Direction},
    conn::table::{Connection, Protocol, Role},
    protocol::http2::{self, Http2Connection},
    stats::Stats,
};

/// Feeds `chunk` to the HTTP/2 state of `conn`.
pub fn feed(conn: &mut Connection, chunk: &DataChunk, stats: &Stats) -> Vec<Exchange> {
    let Protocol::Http2(h2) = &mut conn.protocol else {
        return Vec::new();
    };
    let egress = chunk.direction == Direction::Egress;
    let mut exchanges = Vec::new();
    h2.on_bytes(
        egress,
        &chunk.payload,
        chunk.missing_len(),
        chunk.task.ts_ns,
        stats,
        &mut exchanges,
    );
    if conn.role == Role::Unknown
        && let Some(client_egress) = h2.client_egress()
    {
        conn.role = if client_egress {
            Role::Client
        } else {
            Role::Server
        };
    }
    if egress == (conn.role == Role::Client) {
        conn.thread_id = chunk.task.pid;
    }
    exchanges.into_iter().map(exchange).collect()
}

/// What a closed connection's streams still held.
pub fn close(h2: &mut Http2Connection, ts: u64) -> Vec<Exchange> {
    let mut exchanges = Vec::new();
    h2.on_close(ts, &mut exchanges);
    exchanges.into_iter().map(exchange).collect()
}

/// An HTTP/2 stream. An unknown `:method` or `:path` (joined mid-way) stays empty.
pub fn exchange(stream: http2::Exchange) -> Exchange {
    let http2::Exchange {
        stream_id,
        method,
        authority,
        path,
        status,
        request_headers,
        response_headers,
        unknown_fields,
        request_body,
        response_body,
        request_wire_len,
        response_wire_len,
        start_ts,
        end_ts,
        error,
        grpc,
        ..
    } = stream;
    let (path, query) = match path {
        Some(target) => match target.split_once('?') {
            Some((path, query)) => (path.to_string(), Some(query.to_string())),
            None => (target, None),
        },
        None => (String::new(), None),
    };
    let user_agent = request_headers
        .iter()
        .find(|h| h.name == "user-agent")
        .map(|h| String::from_utf8_lossy(&h.value).into_owned());
    Exchange {
        method: method.unwrap_or_default(),
        path,
        query,
        host: authority,
        user_agent,
        protocol_version: "2",
        status,
        error,
        request_headers,
        response_headers,
        request: (request_body, request_wire_len),
        response: (response_body, response_wire_len),
        start_ts,
        end_ts,
        stream_id: Some(stream_id),
        unknown_fields,
        grpc,
    }
}
