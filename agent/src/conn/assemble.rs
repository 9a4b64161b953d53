//! Turns a finished exchange (`conn::feed`, any protocol) on a tracked connection into an
//! [`ApiCall`], naming both ends.

use crate::{
    call::{ApiCall, Endpoint, MessageSize, SpanKind},
    capture::clock::Clock,
    identity::process::ProcessTable,
    protocol::http1::message::Body,
};

use super::{
    feed::Exchange,
    table::{ConnTable, Connection, Role},
};

/// Everything needed to name a call's ends.
pub struct Context<'a> {
    pub table: &'a ConnTable,
    pub processes: &'a mut ProcessTable,
    pub clock: &'a Clock,
}

/// The one way an exchange of any protocol becomes a call: the exchange says what was asked
/// and answered, the connection and the process table name both ends.
pub fn api_call(message: Exchange, conn: &Connection, ctx: &mut Context<'_>) -> ApiCall {
    let kind = match conn.role {
        Role::Server => SpanKind::Server,
        Role::Client | Role::Unknown => SpanKind::Client,
    };
    let active = message.start_ts;
    let (local_process, _) = ctx
        .processes
        .info(conn.tgid, &conn.comm, conn.cgroup_id, active);
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
        unknown_fields: message.unknown_fields,
        stream_id: message.stream_id,
        grpc: message.grpc,
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
