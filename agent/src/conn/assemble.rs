//! Turns an HTTP/1 exchange or an HTTP/2 stream on a tracked connection into an [`ApiCall`],
//! naming both ends.

use crate::{
    call::{ApiCall, Endpoint, MessageSize, SpanKind},
    capture::clock::Clock,
    identity::process::ProcessTable,
    protocol::{
        http1::{Exchange, head::Headers as _, message::Body},
        http2,
    },
};

use super::table::{ConnKey, ConnTable, Connection, Role};

/// Everything needed to name a call's ends.
pub struct Context<'a> {
    pub table: &'a ConnTable,
    pub processes: &'a mut ProcessTable,
    pub clock: &'a Clock,
}

/// What a call is, whatever the HTTP version: the protocol-specific part of an [`ApiCall`].
struct Message {
    method: String,
    path: String,
    query: Option<String>,
    host: Option<String>,
    user_agent: Option<String>,
    protocol_version: &'static str,
    status: Option<u16>,
    error: Option<String>,
    request_headers: Vec<crate::protocol::http1::Header>,
    response_headers: Vec<crate::protocol::http1::Header>,
    request: (Body, u64),
    response: (Body, u64),
    start_ts: u64,
    end_ts: u64,
}

pub fn api_call(
    exchange: Exchange,
    key: ConnKey,
    conn: &Connection,
    ctx: &mut Context<'_>,
) -> ApiCall {
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
    let Exchange {
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
    let message = Message {
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
    };
    build(message, key, conn, ctx)
}

/// An HTTP/2 stream. An unknown `:method` or `:path` (joined mid-way) stays empty.
pub fn api_call_h2(
    exchange: http2::Exchange,
    key: ConnKey,
    conn: &Connection,
    ctx: &mut Context<'_>,
) -> ApiCall {
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
    } = exchange;
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
    let message = Message {
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
    };
    let mut call = build(message, key, conn, ctx);
    call.unknown_fields = unknown_fields;
    call.stream_id = Some(stream_id);
    call.grpc = grpc;
    call
}

fn build(message: Message, key: ConnKey, conn: &Connection, ctx: &mut Context<'_>) -> ApiCall {
    let kind = match conn.role {
        Role::Server => SpanKind::Server,
        Role::Client | Role::Unknown => SpanKind::Client,
    };
    let active = message.start_ts;
    let (local_process, _) = ctx
        .processes
        .info(key.tgid, &conn.comm, conn.cgroup_id, active);
    let peer_process = ctx.table.peer_owner(&conn.sockets).map(|owner| {
        ctx.processes
            .info(owner.tgid, &owner.comm, owner.cgroup_id, active)
            .0
    });
    let size = |(body, wire_len): &(Body, u64)| MessageSize {
        total: *wire_len,
        body: body.len,
        body_complete: body.complete,
    };
    ApiCall {
        kind,
        start_unix_ns: ctx.clock.to_unix_ns(message.start_ts),
        end_unix_ns: ctx.clock.to_unix_ns(message.end_ts.max(message.start_ts)),
        request_size: size(&message.request),
        response_size: size(&message.response),
        method: message.method,
        path: message.path,
        query: message.query,
        host: message.host,
        user_agent: message.user_agent,
        protocol_version: message.protocol_version,
        status: message.status,
        error: message.error,
        request_headers: message.request_headers,
        response_headers: message.response_headers,
        request_body_sample: message.request.0.sample,
        response_body_sample: message.response.0.sample,
        unknown_fields: 0,
        stream_id: None,
        grpc: None,
        local: Endpoint {
            address: conn.sockets.local,
            process: Some(local_process),
            identity: None,
        },
        peer: Endpoint {
            address: conn.sockets.remote,
            process: peer_process,
            identity: None,
        },
        thread_id: conn.thread_id,
        joined_midstream: !conn.seen_open,
        tls: conn.tls,
        tls_server_name: conn.tls_server_name.clone(),
        tls_client_certificate: conn.handshake.as_ref().and_then(|h| h.client_certificate()),
        auth: None,
        endpoint: None,
        findings: Vec::new(),
    }
}
