//! One JSON object per line, keyed by OpenTelemetry semantic-convention names (documented in
//! the README's output schema).

use std::io::Write;

use std::net::IpAddr;

use super::{Sink, attributes::EndAttributes};
use crate::{
    call::ApiCall,
    findings::{
        auth::{CallAuth, Location},
        model::Finding,
    },
};

pub struct JsonLines<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> JsonLines<W> {
    pub fn new(out: W) -> Self {
        Self { out }
    }
}

impl<W: Write + Send> Sink for JsonLines<W> {
    fn write(&mut self, call: &ApiCall) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, &view(call))?;
        self.out.write_all(b"\n")
    }

    fn write_finding(&mut self, finding: &Finding) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, &finding.to_json())?;
        self.out.write_all(b"\n")
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// The JSON object for a call: a borrowed view serialised directly (no intermediate map), with
/// OpenTelemetry semantic-convention names. Unknown values are left out.
#[derive(serde::Serialize)]
pub(crate) struct JsonCall<'a> {
    timestamp: String,
    start_time_unix_nano: u64,
    end_time_unix_nano: u64,
    duration_ns: u64,
    #[serde(rename = "span.kind")]
    span_kind: &'static str,
    /// `_OTHER` when HTTP/2 header compression hid it (see `sightline.http.unknown_fields`).
    #[serde(rename = "http.request.method")]
    method: &'a str,
    #[serde(rename = "url.scheme")]
    scheme: &'static str,
    tls: bool,
    #[serde(rename = "tls.library", skip_serializing_if = "Option::is_none")]
    tls_library: Option<&'static str>,
    #[serde(
        rename = "tls.client.server_name",
        skip_serializing_if = "Option::is_none"
    )]
    tls_server_name: Option<&'a str>,
    #[serde(rename = "url.path", skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    #[serde(rename = "http.route", skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
    #[serde(rename = "url.query", skip_serializing_if = "Option::is_none")]
    query: Option<&'a str>,
    #[serde(
        rename = "http.response.status_code",
        skip_serializing_if = "Option::is_none"
    )]
    status: Option<u16>,
    #[serde(rename = "error.type", skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(rename = "server.address")]
    server_address: String,
    #[serde(rename = "server.port")]
    server_port: u16,
    #[serde(rename = "client.address")]
    client_address: IpAddr,
    #[serde(rename = "client.port")]
    client_port: u16,
    #[serde(rename = "network.local.address")]
    local_address: IpAddr,
    #[serde(rename = "network.local.port")]
    local_port: u16,
    #[serde(rename = "network.peer.address")]
    peer_address: IpAddr,
    #[serde(rename = "network.peer.port")]
    peer_port: u16,
    #[serde(rename = "network.transport")]
    transport: &'static str,
    #[serde(rename = "network.type")]
    network_type: &'static str,
    #[serde(rename = "network.protocol.name")]
    protocol_name: &'static str,
    #[serde(rename = "network.protocol.version")]
    protocol_version: &'static str,
    #[serde(
        rename = "user_agent.original",
        skip_serializing_if = "Option::is_none"
    )]
    user_agent: Option<&'a str>,
    #[serde(rename = "http.request.size")]
    request_size: u64,
    #[serde(rename = "http.request.body.size")]
    request_body_size: u64,
    #[serde(rename = "http.response.size", skip_serializing_if = "Option::is_none")]
    response_size: Option<u64>,
    #[serde(
        rename = "http.response.body.size",
        skip_serializing_if = "Option::is_none"
    )]
    response_body_size: Option<u64>,
    #[serde(rename = "process.pid", skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    #[serde(
        rename = "process.executable.name",
        skip_serializing_if = "Option::is_none"
    )]
    executable_name: Option<&'a str>,
    #[serde(
        rename = "process.executable.path",
        skip_serializing_if = "Option::is_none"
    )]
    executable_path: Option<&'a str>,
    #[serde(
        rename = "process.command_line",
        skip_serializing_if = "Option::is_none"
    )]
    command_line: Option<&'a str>,
    #[serde(rename = "process.owner", skip_serializing_if = "Option::is_none")]
    owner: Option<&'a str>,
    #[serde(rename = "thread.id")]
    thread_id: u32,
    #[serde(flatten)]
    local_identity: EndAttributes<'a>,
    #[serde(rename = "peer.process.pid", skip_serializing_if = "Option::is_none")]
    peer_pid: Option<u32>,
    #[serde(
        rename = "peer.process.executable.name",
        skip_serializing_if = "Option::is_none"
    )]
    peer_executable_name: Option<&'a str>,
    #[serde(
        rename = "peer.process.executable.path",
        skip_serializing_if = "Option::is_none"
    )]
    peer_executable_path: Option<&'a str>,
    #[serde(
        rename = "peer.process.command_line",
        skip_serializing_if = "Option::is_none"
    )]
    peer_command_line: Option<&'a str>,
    #[serde(rename = "peer.process.owner", skip_serializing_if = "Option::is_none")]
    peer_owner: Option<&'a str>,
    #[serde(flatten)]
    peer_identity: EndAttributes<'a>,
    #[serde(
        rename = "sightline.cgroup.id",
        skip_serializing_if = "Option::is_none"
    )]
    cgroup_id: Option<u64>,
    #[serde(rename = "sightline.capture.body_complete")]
    body_complete: bool,
    #[serde(rename = "sightline.connection.joined_midstream")]
    joined_midstream: bool,
    #[serde(flatten)]
    auth: AuthAttributes<'a>,
    #[serde(rename = "sightline.findings", skip_serializing_if = "Vec::is_empty")]
    findings: Vec<&'static str>,
    #[serde(
        rename = "sightline.http.unknown_fields",
        skip_serializing_if = "is_zero"
    )]
    unknown_fields: u32,
    #[serde(
        rename = "sightline.http2.stream_id",
        skip_serializing_if = "Option::is_none"
    )]
    stream_id: Option<u32>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    rpc: Option<RpcAttributes<'a>>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A gRPC call's `rpc.*` attributes (OpenTelemetry RPC conventions) and message counts.
#[derive(serde::Serialize)]
struct RpcAttributes<'a> {
    #[serde(rename = "rpc.system")]
    system: &'static str,
    #[serde(rename = "rpc.service", skip_serializing_if = "Option::is_none")]
    service: Option<&'a str>,
    #[serde(rename = "rpc.method", skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(
        rename = "rpc.grpc.status_code",
        skip_serializing_if = "Option::is_none"
    )]
    status_code: Option<u32>,
    #[serde(
        rename = "sightline.rpc.grpc.status_message",
        skip_serializing_if = "Option::is_none"
    )]
    status_message: Option<&'a str>,
    #[serde(rename = "sightline.rpc.request.messages")]
    request_messages: u64,
    #[serde(rename = "sightline.rpc.response.messages")]
    response_messages: u64,
    #[serde(rename = "sightline.rpc.messages_exact")]
    messages_exact: bool,
}

/// How the request authenticated: its first credential's scheme, place and fingerprint, and
/// a JWT's header and claims (never a secret value).
#[derive(serde::Serialize)]
struct AuthAttributes<'a> {
    #[serde(rename = "sightline.auth.scheme")]
    scheme: &'static str,
    #[serde(
        rename = "sightline.auth.mtls",
        skip_serializing_if = "Option::is_none"
    )]
    mtls: Option<bool>,
    #[serde(
        rename = "sightline.auth.location",
        skip_serializing_if = "Option::is_none"
    )]
    location: Option<&'a Location>,
    #[serde(
        rename = "sightline.auth.fingerprint",
        skip_serializing_if = "Option::is_none"
    )]
    fingerprint: Option<&'a str>,
    #[serde(
        rename = "sightline.auth.jwt.alg",
        skip_serializing_if = "Option::is_none"
    )]
    jwt_alg: Option<&'a str>,
    #[serde(
        rename = "sightline.auth.jwt.iss",
        skip_serializing_if = "Option::is_none"
    )]
    jwt_iss: Option<&'a str>,
    #[serde(
        rename = "sightline.auth.jwt.aud",
        skip_serializing_if = "<[String]>::is_empty"
    )]
    jwt_aud: &'a [String],
    #[serde(
        rename = "sightline.auth.jwt.exp",
        skip_serializing_if = "Option::is_none"
    )]
    jwt_exp: Option<i64>,
    #[serde(
        rename = "sightline.auth.jwt.iat",
        skip_serializing_if = "Option::is_none"
    )]
    jwt_iat: Option<i64>,
    #[serde(
        rename = "sightline.auth.jwt.scopes",
        skip_serializing_if = "<[String]>::is_empty"
    )]
    jwt_scopes: &'a [String],
    #[serde(
        rename = "sightline.auth.jwt.sub_fingerprint",
        skip_serializing_if = "Option::is_none"
    )]
    jwt_sub: Option<&'a str>,
}

fn auth_attributes(auth: Option<&CallAuth>) -> AuthAttributes<'_> {
    let primary = auth.and_then(CallAuth::primary);
    let jwt = primary.and_then(|c| c.jwt.as_ref());
    AuthAttributes {
        scheme: auth.map_or("none", CallAuth::scheme_name),
        mtls: auth.and_then(|a| a.mtls),
        location: primary.map(|c| &c.location),
        fingerprint: primary.map(|c| &*c.fingerprint),
        jwt_alg: jwt.map(|j| j.alg.as_str()),
        jwt_iss: jwt.and_then(|j| j.iss.as_deref()),
        jwt_aud: jwt.map_or(&[], |j| j.aud.as_slice()),
        jwt_exp: jwt.and_then(|j| j.exp),
        jwt_iat: jwt.and_then(|j| j.iat),
        jwt_scopes: jwt.map_or(&[], |j| j.scopes.as_slice()),
        jwt_sub: jwt.and_then(|j| j.sub_fingerprint.as_deref()),
    }
}

/// The call's fields under their output names (also the OTLP attributes).
pub(crate) fn view(call: &ApiCall) -> JsonCall<'_> {
    let (server_address, server_port) = crate::call::address::server_address(call);
    let client = call.client().address;
    let local = call.local.process.as_ref();
    let peer = call.peer.process.as_ref();
    JsonCall {
        timestamp: humantime::format_rfc3339_nanos(
            std::time::UNIX_EPOCH + std::time::Duration::from_nanos(call.start_unix_ns),
        )
        .to_string(),
        start_time_unix_nano: call.start_unix_ns,
        end_time_unix_nano: call.end_unix_ns,
        duration_ns: call.duration_ns(),
        span_kind: call.kind.name(),
        method: if call.method.is_empty() {
            "_OTHER"
        } else {
            &call.method
        },
        scheme: if call.tls.is_some() { "https" } else { "http" },
        tls: call.tls.is_some(),
        tls_library: call.tls.map(|l| l.name()),
        tls_server_name: call.tls_server_name.as_deref(),
        path: (!call.path.is_empty()).then_some(call.path.as_str()),
        route: call.route(),
        query: call.query.as_deref(),
        status: call.status,
        error: call.error.as_deref(),
        server_address,
        server_port,
        client_address: client.ip(),
        client_port: client.port(),
        local_address: call.local.address.ip(),
        local_port: call.local.address.port(),
        peer_address: call.peer.address.ip(),
        peer_port: call.peer.address.port(),
        transport: "tcp",
        network_type: if call.local.address.is_ipv4() {
            "ipv4"
        } else {
            "ipv6"
        },
        protocol_name: "http",
        protocol_version: call.protocol_version,
        user_agent: call.user_agent.as_deref(),
        request_size: call.request_size.total,
        request_body_size: call.request_size.body,
        response_size: call.status.map(|_| call.response_size.total),
        response_body_size: call.status.map(|_| call.response_size.body),
        pid: local.map(|p| p.pid),
        executable_name: local.map(|p| &*p.executable_name),
        executable_path: local.and_then(|p| p.executable_path.as_deref()),
        command_line: local.and_then(|p| p.command_line.as_deref()),
        owner: local.and_then(|p| p.owner.as_deref()),
        thread_id: call.thread_id,
        local_identity: EndAttributes {
            identity: call.local.identity.as_deref(),
            peer: false,
        },
        peer_pid: peer.map(|p| p.pid),
        peer_executable_name: peer.map(|p| &*p.executable_name),
        peer_executable_path: peer.and_then(|p| p.executable_path.as_deref()),
        peer_command_line: peer.and_then(|p| p.command_line.as_deref()),
        peer_owner: peer.and_then(|p| p.owner.as_deref()),
        peer_identity: EndAttributes {
            identity: call.peer.identity.as_deref(),
            peer: true,
        },
        cgroup_id: local.map(|p| p.cgroup_id),
        body_complete: call.request_size.body_complete && call.response_size.body_complete,
        joined_midstream: call.joined_midstream,
        auth: auth_attributes(call.auth.as_ref()),
        findings: call.findings.iter().map(|r| r.id()).collect(),
        unknown_fields: call.unknown_fields,
        stream_id: call.stream_id,
        rpc: call.grpc.as_ref().map(|g| RpcAttributes {
            system: "grpc",
            service: g.service.as_deref(),
            method: g.method.as_deref(),
            status_code: g.status,
            status_message: g.message.as_deref(),
            request_messages: g.request_messages,
            response_messages: g.response_messages,
            messages_exact: g.messages_exact,
        }),
    }
}

/// The JSON object for a call, as a value (tests and tools).
pub fn to_json(call: &ApiCall) -> serde_json::Value {
    serde_json::to_value(view(call)).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::tests::sealed as call;

    #[test]
    fn writes_semantic_convention_keys_and_no_secrets() {
        let mut out = Vec::new();
        let mut sink = JsonLines::new(&mut out);
        sink.write(&call()).unwrap();
        sink.flush().unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with('\n') && text.lines().count() == 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["timestamp"], "2026-11-28T13:56:11.707540109Z");
        assert_eq!(v["duration_ns"], 3_770_565);
        assert_eq!(v["span.kind"], "server");
        assert_eq!(v["http.request.method"], "GET");
        assert_eq!(v["url.path"], "/users/42");
        assert_eq!(v["url.query"], "api_key=REDACTED&page=2");
        assert_eq!(v["http.response.status_code"], 200);
        assert_eq!(v["server.address"], "api.local");
        assert_eq!(v["server.port"], 8080);
        assert_eq!(v["client.address"], "10.0.0.9");
        assert_eq!(v["client.port"], 41060);
        assert_eq!(v["network.type"], "ipv4");
        assert_eq!(v["http.response.body.size"], 17);
        assert_eq!(v["process.executable.name"], "api");
        assert!(v.get("peer.process.pid").is_none());
        assert!(v.get("error.type").is_none());
        assert!(!text.contains("s3cr3t"), "{text}");
        assert_eq!(v["sightline.auth.scheme"], "bearer-opaque");
        assert_eq!(v["sightline.auth.location"], "header:authorization");
        assert_eq!(
            v["sightline.auth.fingerprint"].as_str().map(str::len),
            Some(16)
        );
        assert_eq!(v["process.command_line"], "/usr/bin/api --port 8080");
        assert_eq!(v["process.owner"], "www-data");
        assert!(v.get("service.name").is_none(), "no identity, no service");
    }

    #[test]
    fn identities_use_resource_names_and_peer_names() {
        use crate::identity::{
            container::Runtime,
            model::{
                ContainerInfo, EndKind, Identity, NameSource, PodMeta, Workload, WorkloadKind,
            },
        };
        use std::sync::Arc;
        let mut call = call();
        call.local.identity = Some(Arc::new(Identity {
            service_name: Some("api".into()),
            service_namespace: Some("shop".into()),
            name_source: Some(NameSource::Workload),
            host_name: Some("node-1".into()),
            cgroup_path: Some("/kubepods/pod1/abc".into()),
            container: Some(ContainerInfo {
                id: "abc".into(),
                runtime: Runtime::Containerd,
                name: Some("app".into()),
            }),
            pod: Some(Arc::new(PodMeta {
                namespace: "shop".into(),
                name: "api-7d-x".into(),
                uid: "u-1".into(),
                workload: Some(Workload {
                    kind: WorkloadKind::Deployment,
                    name: "api".into(),
                }),
                ..PodMeta::default()
            })),
            k8s_container: Some("app".into()),
            node_name: Some("node-1".into()),
            ..Identity::new(EndKind::Process)
        }));
        call.peer.identity = Some(Arc::new(Identity {
            service_name: Some("orders".into()),
            service_namespace: Some("shop".into()),
            name_source: Some(NameSource::KubernetesService),
            ..Identity::new(EndKind::Service)
        }));
        let v = to_json(&call);
        for (key, value) in [
            ("service.name", "api"),
            ("service.namespace", "shop"),
            ("sightline.service.name_source", "k8s.workload"),
            ("host.name", "node-1"),
            ("process.linux.cgroup", "/kubepods/pod1/abc"),
            ("container.id", "abc"),
            ("container.runtime", "containerd"),
            ("container.name", "app"),
            ("k8s.namespace.name", "shop"),
            ("k8s.pod.name", "api-7d-x"),
            ("k8s.pod.uid", "u-1"),
            ("k8s.deployment.name", "api"),
            ("k8s.container.name", "app"),
            ("k8s.node.name", "node-1"),
            ("peer.service", "orders"),
            ("peer.service.namespace", "shop"),
            ("sightline.peer.kind", "service"),
            ("peer.k8s.namespace.name", "shop"),
            ("sightline.peer.k8s.service.name", "orders"),
        ] {
            assert_eq!(v[key], value, "{key} in {v:#}");
        }
        assert!(v.get("peer.k8s.pod.name").is_none());
    }
}
