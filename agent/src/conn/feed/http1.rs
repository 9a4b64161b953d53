//! The HTTP/1 feed: requests one way, responses the other, and the h2c upgrade (RFC 7540 3.2)
//! that hands the connection over to HTTP/2 with the upgrading request as its stream 1.

use super::Exchange;
use crate::{
    capture::event::{DataChunk, Direction},
    conn::{
        detect::is_h2c_upgrade,
        table::{Connection, Protocol, Role},
    },
    protocol::{
        http1::{self, Limits, exchange::Issue, head::Headers as _},
        http2::Http2Connection,
    },
    stats::Stats,
};

/// Feeds `chunk` to the HTTP/1 state of `conn`; parse problems go to `issues`.
pub fn feed(
    conn: &mut Connection,
    chunk: &DataChunk,
    limits: Limits,
    stats: &Stats,
    issues: &mut Vec<Issue>,
) -> Vec<Exchange> {
    let requests_are_egress = conn.role == Role::Client;
    let Protocol::Http1(http) = &mut conn.protocol else {
        return Vec::new();
    };
    let is_request = (chunk.direction == Direction::Egress) == requests_are_egress;
    let ts = chunk.task.ts_ns;
    let mut exchanges = Vec::new();
    if is_request {
        conn.thread_id = chunk.task.pid;
        http.on_request_bytes(&chunk.payload, chunk.missing_len(), ts, issues);
    } else {
        http.on_response_bytes(
            &chunk.payload,
            chunk.missing_len(),
            ts,
            &mut exchanges,
            issues,
        );
    }
    let mut upgraded = Vec::new();
    if http.is_upgraded() {
        let switched = http.take_switched_bytes();
        conn.protocol = Protocol::Other;
        if let Some(at) = exchanges.iter().position(is_h2c_upgrade) {
            let upgrade = exchanges.remove(at);
            let mut h2 = Http2Connection::upgraded(
                requests_are_egress,
                &upgrade.request,
                upgrade.start_ts,
                limits,
            );
            Stats::inc(&stats.connections_http2);
            // The server's first frames may share the syscall of its 101.
            let mut streams = Vec::new();
            if !switched.is_empty() {
                h2.on_bytes(
                    !requests_are_egress,
                    &switched,
                    chunk.missing_len(),
                    ts,
                    stats,
                    &mut streams,
                );
            }
            conn.protocol = Protocol::Http2(Box::new(h2));
            upgraded.extend(streams.into_iter().map(super::http2::exchange));
        }
    }
    // What the switched bytes finished in HTTP/2 first, then the HTTP/1 exchanges.
    upgraded.extend(exchanges.into_iter().map(exchange));
    upgraded
}

/// What a closed connection's parser still held (a request never answered, a response
/// ended by the close).
pub fn close(http: &mut http1::Http1Connection, ts: u64, issues: &mut Vec<Issue>) -> Vec<Exchange> {
    let mut exchanges = Vec::new();
    http.on_close(ts, &mut exchanges, issues);
    exchanges.into_iter().map(exchange).collect()
}

/// An HTTP/1 request and its response, if any.
pub fn exchange(exchange: http1::Exchange) -> Exchange {
    let request = &exchange.request;
    let response = exchange.response.as_ref();
    let path = request.path().to_string();
    let query = request.query().map(str::to_string);
    let host = request.header("host");
    let user_agent = request.header("user-agent");
    // The version both ends speak: an HTTP/1.0 answer to an HTTP/1.1 request is HTTP/1.0.
    let protocol_version = match response.map_or(request.minor_version, |r| {
        r.minor_version.min(request.minor_version)
    }) {
        0 => "1.0",
        _ => "1.1",
    };
    let status = response.map(|r| r.status);
    // Move, not copy, what the exchange owns.
    let http1::Exchange {
        request,
        response,
        request_body,
        response_body,
        request_wire_len,
        response_wire_len,
        start_ts,
        end_ts,
        error,
    } = exchange;
    Exchange {
        method: request.method,
        path,
        query,
        host,
        user_agent,
        protocol_version,
        status,
        error: error.map(str::to_string),
        request_headers: request.headers,
        response_headers: response.map(|r| r.headers).unwrap_or_default(),
        request: (request_body, request_wire_len),
        response: (response_body, response_wire_len),
        start_ts,
        end_ts,
        stream_id: None,
        unknown_fields: 0,
        grpc: None,
    }
}
