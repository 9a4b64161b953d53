//! Turns an HTTP exchange on a tracked connection into an [`ApiCall`], naming both ends.

use crate::{
    call::{ApiCall, Endpoint, MessageSize, SpanKind},
    capture::clock::Clock,
    identity::process::ProcessTable,
    protocol::http1::{Exchange, head::Headers as _},
};

use super::table::{ConnKey, ConnTable, Connection, Role};

/// Everything needed to name a call's ends.
pub struct Context<'a> {
    pub table: &'a ConnTable,
    pub processes: &'a mut ProcessTable,
    pub clock: &'a Clock,
}

pub fn api_call(
    exchange: Exchange,
    key: ConnKey,
    conn: &Connection,
    ctx: &mut Context<'_>,
) -> ApiCall {
    let kind = match conn.role {
        Role::Server => SpanKind::Server,
        Role::Client | Role::Unknown => SpanKind::Client,
    };
    let (local_process, _) = ctx.processes.info(key.tgid, &conn.comm, conn.cgroup_id);
    let peer_process = ctx.table.peer_owner(&conn.sockets).map(|owner| {
        ctx.processes
            .info(owner.tgid, &owner.comm, owner.cgroup_id)
            .0
    });
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
    ApiCall {
        kind,
        start_unix_ns: ctx.clock.to_unix_ns(start_ts),
        end_unix_ns: ctx.clock.to_unix_ns(end_ts.max(start_ts)),
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
        request_size: MessageSize {
            total: request_wire_len,
            body: request_body.len,
            body_complete: request_body.complete,
        },
        response_size: MessageSize {
            total: response_wire_len,
            body: response_body.len,
            body_complete: response_body.complete,
        },
        request_body_sample: request_body.sample,
        response_body_sample: response_body.sample,
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
