//! The one list of a call's output fields, walked in the same order by every sink: the JSON
//! lines write each field as a key of the call's object, the OTLP spans put the observing end's
//! fields on the span's resource and the rest on the span. A field added here reaches every
//! output under one name (OpenTelemetry semantic-convention names; the README's output schema).
//!
//! A walk with a visitor, not a serde view: the OTLP sink needs to know where each field goes
//! (span, resource, attribute) and its type, without a serialiser in between.

use std::{fmt::Display, net::IpAddr};

use super::attributes::{self as identity_attributes, Attr};
use crate::{
    call::{ApiCall, ProcessInfo, address, auth::CallAuth, rule::Rule},
    identity::Identity,
};

/// Where a field belongs in a span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Times and kind: a span has its own fields for them.
    Span,
    /// The observing end (its process and identity): the span's resource.
    Resource,
    /// Everything else, the other end included: a span attribute.
    Attribute,
}

/// A field's value, borrowed from the call where it can be.
#[derive(Clone, Copy)]
pub enum FieldValue<'a> {
    Str(&'a str),
    /// Written out as text (a credential's place, the timestamp).
    Label(&'a dyn Display),
    Ip(IpAddr),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Strs(&'a [String]),
    /// Rule ids.
    Rules(&'a [Rule]),
}

/// Receives the fields of a call, in order.
pub trait FieldVisitor {
    fn field(&mut self, place: Place, key: &'static str, value: FieldValue<'_>);
}

/// Walks the fields of `call` that have a value.
pub fn walk(call: &ApiCall, visitor: &mut impl FieldVisitor) {
    span_fields(call, visitor);
    http_fields(call, visitor);
    network_fields(call, visitor);
    process_fields(
        call.local.process.as_ref(),
        Place::Resource,
        &LOCAL,
        visitor,
    );
    visitor.field(
        Place::Attribute,
        "thread.id",
        FieldValue::UInt(call.thread_id.into()),
    );
    identity_fields(call.local.identity.as_deref(), false, visitor);
    process_fields(call.peer.process.as_ref(), Place::Attribute, &PEER, visitor);
    identity_fields(call.peer.identity.as_deref(), true, visitor);
    capture_fields(call, visitor);
    auth_fields(call.auth.as_ref(), visitor);
    protocol_fields(call, visitor);
}

fn span_fields(call: &ApiCall, v: &mut impl FieldVisitor) {
    let start = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(call.start_unix_ns);
    let timestamp = humantime::format_rfc3339_nanos(start);
    v.field(Place::Span, "timestamp", FieldValue::Label(&timestamp));
    v.field(
        Place::Span,
        "start_time_unix_nano",
        FieldValue::UInt(call.start_unix_ns),
    );
    v.field(
        Place::Span,
        "end_time_unix_nano",
        FieldValue::UInt(call.end_unix_ns),
    );
    v.field(
        Place::Span,
        "duration_ns",
        FieldValue::UInt(call.duration_ns()),
    );
    v.field(Place::Span, "span.kind", FieldValue::Str(call.kind.name()));
}

/// Calls `v` with the attribute when `value` is known.
fn some<T>(
    v: &mut impl FieldVisitor,
    key: &'static str,
    value: Option<T>,
    as_field: impl FnOnce(T) -> FieldValue<'static>,
) {
    if let Some(value) = value {
        v.field(Place::Attribute, key, as_field(value));
    }
}

fn some_str(v: &mut impl FieldVisitor, key: &'static str, value: Option<&str>) {
    if let Some(value) = value {
        v.field(Place::Attribute, key, FieldValue::Str(value));
    }
}

fn http_fields(call: &ApiCall, v: &mut impl FieldVisitor) {
    let a = Place::Attribute;
    // `_OTHER` when HTTP/2 header compression hid it (see `sightline.http.unknown_fields`).
    let method = if call.method.is_empty() {
        "_OTHER"
    } else {
        &call.method
    };
    v.field(a, "http.request.method", FieldValue::Str(method));
    let scheme = if call.tls.is_some() { "https" } else { "http" };
    v.field(a, "url.scheme", FieldValue::Str(scheme));
    v.field(a, "tls", FieldValue::Bool(call.tls.is_some()));
    some(v, "tls.library", call.tls, |l| FieldValue::Str(l.name()));
    some_str(v, "tls.client.server_name", call.tls_server_name.as_deref());
    some_str(
        v,
        "url.path",
        (!call.path.is_empty()).then_some(call.path.as_str()),
    );
    some_str(v, "http.route", call.route());
    some_str(v, "url.query", call.query.as_deref());
    some(v, "http.response.status_code", call.status, |s| {
        FieldValue::UInt(s.into())
    });
    some_str(v, "error.type", call.error.as_deref());
}

fn network_fields(call: &ApiCall, v: &mut impl FieldVisitor) {
    let a = Place::Attribute;
    let (server_address, server_port) = address::server_address(call);
    v.field(a, "server.address", FieldValue::Str(&server_address));
    v.field(a, "server.port", FieldValue::UInt(server_port.into()));
    let ends: [(&'static str, &'static str, std::net::SocketAddr); 3] = [
        ("client.address", "client.port", call.client().address),
        (
            "network.local.address",
            "network.local.port",
            call.local.address,
        ),
        (
            "network.peer.address",
            "network.peer.port",
            call.peer.address,
        ),
    ];
    for (address_key, port_key, address) in ends {
        v.field(a, address_key, FieldValue::Ip(address.ip()));
        v.field(a, port_key, FieldValue::UInt(address.port().into()));
    }
    v.field(a, "network.transport", FieldValue::Str("tcp"));
    let network_type = if call.local.address.is_ipv4() {
        "ipv4"
    } else {
        "ipv6"
    };
    v.field(a, "network.type", FieldValue::Str(network_type));
    v.field(a, "network.protocol.name", FieldValue::Str("http"));
    v.field(
        a,
        "network.protocol.version",
        FieldValue::Str(call.protocol_version),
    );
    some_str(v, "user_agent.original", call.user_agent.as_deref());
    v.field(
        a,
        "http.request.size",
        FieldValue::UInt(call.request_size.total),
    );
    v.field(
        a,
        "http.request.body.size",
        FieldValue::UInt(call.request_size.body),
    );
    if call.status.is_some() {
        v.field(
            a,
            "http.response.size",
            FieldValue::UInt(call.response_size.total),
        );
        v.field(
            a,
            "http.response.body.size",
            FieldValue::UInt(call.response_size.body),
        );
    }
}

/// The names of one end's process fields.
struct ProcessKeys {
    pid: &'static str,
    executable_name: &'static str,
    executable_path: &'static str,
    command_line: &'static str,
    owner: &'static str,
}

const LOCAL: ProcessKeys = ProcessKeys {
    pid: "process.pid",
    executable_name: "process.executable.name",
    executable_path: "process.executable.path",
    command_line: "process.command_line",
    owner: "process.owner",
};

const PEER: ProcessKeys = ProcessKeys {
    pid: "peer.process.pid",
    executable_name: "peer.process.executable.name",
    executable_path: "peer.process.executable.path",
    command_line: "peer.process.command_line",
    owner: "peer.process.owner",
};

fn process_fields(
    process: Option<&ProcessInfo>,
    place: Place,
    keys: &ProcessKeys,
    v: &mut impl FieldVisitor,
) {
    let Some(process) = process else {
        return;
    };
    v.field(place, keys.pid, FieldValue::UInt(process.pid.into()));
    v.field(
        place,
        keys.executable_name,
        FieldValue::Str(&process.executable_name),
    );
    let optional = [
        (keys.executable_path, process.executable_path.as_deref()),
        (keys.command_line, process.command_line.as_deref()),
        (keys.owner, process.owner.as_deref()),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            v.field(place, key, FieldValue::Str(value));
        }
    }
}

/// One end's identity: the observing end's under resource names, the other's under `peer.`
/// names (see `sink::attributes`).
fn identity_fields(identity: Option<&Identity>, peer: bool, v: &mut impl FieldVisitor) {
    let Some(identity) = identity else {
        return;
    };
    identity_attributes::for_each(identity, |attr: Attr, value| {
        if peer {
            v.field(Place::Attribute, attr.peer, FieldValue::Str(value));
        } else {
            v.field(Place::Resource, attr.local, FieldValue::Str(value));
        }
    });
}

fn capture_fields(call: &ApiCall, v: &mut impl FieldVisitor) {
    let a = Place::Attribute;
    some(
        v,
        "sightline.cgroup.id",
        call.local.process.as_ref().map(|p| p.cgroup_id),
        FieldValue::UInt,
    );
    let complete = call.request_size.body_complete && call.response_size.body_complete;
    v.field(
        a,
        "sightline.capture.body_complete",
        FieldValue::Bool(complete),
    );
    v.field(
        a,
        "sightline.connection.joined_midstream",
        FieldValue::Bool(call.joined_midstream),
    );
}

/// How the request authenticated: its first credential's scheme, place and fingerprint, and a
/// JWT's header and claims (never a secret value).
fn auth_fields(auth: Option<&CallAuth>, v: &mut impl FieldVisitor) {
    let a = Place::Attribute;
    let scheme = auth.map_or("none", CallAuth::scheme_name);
    v.field(a, "sightline.auth.scheme", FieldValue::Str(scheme));
    some(v, "sightline.auth.mtls", auth.and_then(|a| a.mtls), |m| {
        FieldValue::Bool(m)
    });
    let primary = auth.and_then(CallAuth::primary);
    if let Some(credential) = primary {
        v.field(
            a,
            "sightline.auth.location",
            FieldValue::Label(&credential.location),
        );
        v.field(
            a,
            "sightline.auth.fingerprint",
            FieldValue::Str(&credential.fingerprint),
        );
    }
    let Some(jwt) = primary.and_then(|c| c.jwt.as_ref()) else {
        return;
    };
    v.field(a, "sightline.auth.jwt.alg", FieldValue::Str(&jwt.alg));
    some_str(v, "sightline.auth.jwt.iss", jwt.iss.as_deref());
    if !jwt.aud.is_empty() {
        v.field(a, "sightline.auth.jwt.aud", FieldValue::Strs(&jwt.aud));
    }
    some(v, "sightline.auth.jwt.exp", jwt.exp, FieldValue::Int);
    some(v, "sightline.auth.jwt.iat", jwt.iat, FieldValue::Int);
    if !jwt.scopes.is_empty() {
        v.field(
            a,
            "sightline.auth.jwt.scopes",
            FieldValue::Strs(&jwt.scopes),
        );
    }
    some_str(
        v,
        "sightline.auth.jwt.sub_fingerprint",
        jwt.sub_fingerprint.as_deref(),
    );
}

/// Findings, HTTP/2 and gRPC (`rpc.*`, OpenTelemetry RPC conventions, with message counts).
fn protocol_fields(call: &ApiCall, v: &mut impl FieldVisitor) {
    let a = Place::Attribute;
    if !call.findings.is_empty() {
        v.field(a, "sightline.findings", FieldValue::Rules(&call.findings));
    }
    if call.unknown_fields != 0 {
        v.field(
            a,
            "sightline.http.unknown_fields",
            FieldValue::UInt(call.unknown_fields.into()),
        );
    }
    some(v, "sightline.http2.stream_id", call.stream_id, |id| {
        FieldValue::UInt(id.into())
    });
    let Some(grpc) = &call.grpc else {
        return;
    };
    v.field(a, "rpc.system", FieldValue::Str("grpc"));
    some_str(v, "rpc.service", grpc.service.as_deref());
    some_str(v, "rpc.method", grpc.method.as_deref());
    some(v, "rpc.grpc.status_code", grpc.status, |s| {
        FieldValue::UInt(s.into())
    });
    some_str(
        v,
        "sightline.rpc.grpc.status_message",
        grpc.message.as_deref(),
    );
    let counts = [
        ("sightline.rpc.request.messages", grpc.request_messages),
        ("sightline.rpc.response.messages", grpc.response_messages),
    ];
    for (key, count) in counts {
        v.field(a, key, FieldValue::UInt(count));
    }
    v.field(
        a,
        "sightline.rpc.messages_exact",
        FieldValue::Bool(grpc.messages_exact),
    );
}
