//! The API call: one request/response pair as one process saw it. Every later stage (identity,
//! inventory, findings, sinks) works on this type.

use std::{net::SocketAddr, sync::Arc};

pub mod address;
pub mod auth;
pub mod endpoint;
pub mod identity;
pub mod rule;
pub mod segment;

use crate::protocol::http1::Header;
pub use agent_common::event::TlsLibrary;
use auth::CallAuth;
use endpoint::EndpointRef;
use identity::Identity;
use rule::Rule;

/// Which end of the call the observing process was (OpenTelemetry span kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanKind {
    Client,
    Server,
}

impl SpanKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Server => "server",
        }
    }
}

/// A process on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    /// Base name of the executable (`process.executable.name`), else the command name.
    pub executable_name: Arc<str>,
    /// Full path of the executable, when known.
    pub executable_path: Option<Arc<str>>,
    /// Arguments joined by spaces, secrets removed (`process.command_line`).
    pub command_line: Option<Arc<str>>,
    /// User name, else uid (`process.owner`).
    pub owner: Option<Arc<str>>,
    /// Which program this pid ran (a pid can exec several): a cache key for identities.
    pub incarnation: u64,
    /// The kernel id of the cgroup the process's events came from.
    pub cgroup_id: u64,
}

/// One end of a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub address: SocketAddr,
    /// The process owning this end, when it is on this host and was seen.
    pub process: Option<ProcessInfo>,
    /// Who this end is (service, container, pod, ...), filled by the identity stage.
    pub identity: Option<Arc<Identity>>,
}

/// Sizes of one message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageSize {
    /// Head and body bytes (body decoded when chunked).
    pub total: u64,
    pub body: u64,
    /// False when body bytes were not captured (capture limit) or the message was cut.
    pub body_complete: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiCall {
    pub kind: SpanKind,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// The Host header, as sent.
    pub host: Option<String>,
    pub user_agent: Option<String>,
    /// "1.0", "1.1" or "2".
    pub protocol_version: &'static str,
    pub status: Option<u16>,
    /// Why the call has no (complete) response.
    pub error: Option<String>,
    pub request_headers: Vec<Header>,
    pub response_headers: Vec<Header>,
    pub request_size: MessageSize,
    pub response_size: MessageSize,
    pub request_body_sample: Vec<u8>,
    pub response_body_sample: Vec<u8>,
    /// HTTP/2 header fields whose name or value the agent could not know (they referenced
    /// HPACK table entries set before it joined the connection). An unknown method or path is
    /// left empty rather than guessed.
    pub unknown_fields: u32,
    /// The HTTP/2 stream the call was on.
    pub stream_id: Option<u32>,
    /// What the gRPC call was, when it was one.
    pub grpc: Option<crate::protocol::http2::GrpcExchange>,
    /// The observing end (its process is always known).
    pub local: Endpoint,
    /// The other end.
    pub peer: Endpoint,
    /// Thread that made the first request syscall.
    pub thread_id: u32,
    /// The agent did not see the connection open (it predates the agent or was evicted).
    pub joined_midstream: bool,
    /// The connection is TLS and this library gave its plaintext; `None` for plaintext TCP.
    pub tls: Option<TlsLibrary>,
    /// The server name (SNI) of the connection's TLS ClientHello, when seen.
    pub tls_server_name: Option<Arc<str>>,
    /// Whether the TLS client presented a certificate (mTLS), when the handshake showed it.
    pub tls_client_certificate: Option<bool>,
    /// How the request authenticated (values replaced by fingerprints), set by the findings
    /// stage before anything else reads the call.
    pub auth: Option<CallAuth>,
    /// The endpoint the inventory counted the call in; `None` when it is counted at its
    /// other end (a call between two processes of this host).
    pub endpoint: Option<Arc<EndpointRef>>,
    /// The rules the call matched.
    pub findings: Vec<Rule>,
}

impl ApiCall {
    pub fn duration_ns(&self) -> u64 {
        self.end_unix_ns.saturating_sub(self.start_unix_ns)
    }

    /// The route template (`http.route`): the route of the endpoint the inventory counted
    /// the call in.
    pub fn route(&self) -> Option<&str> {
        self.endpoint.as_deref().map(|e| e.key.route.as_str())
    }

    /// The socket end of the server.
    pub fn server(&self) -> &Endpoint {
        match self.kind {
            SpanKind::Server => &self.local,
            SpanKind::Client => &self.peer,
        }
    }

    /// The socket end of the client.
    pub fn client(&self) -> &Endpoint {
        match self.kind {
            SpanKind::Server => &self.peer,
            SpanKind::Client => &self.local,
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// [`sample`] as it leaves the processor for the sinks: authentication classified, secrets
    /// removed by the credentials stage.
    pub fn sealed() -> ApiCall {
        use crate::credentials::{fingerprint::Fingerprinter, stage::CredentialsStage};
        let mut stage = CredentialsStage::new(
            crate::findings::config::FindingsSection::default().credential_names(),
            Fingerprinter::with_key([1; 32]),
        );
        let mut call = sample();
        stage.prepare(&mut call);
        stage.seal(&mut call);
        call
    }

    /// Request headers from (name, value) pairs.
    pub fn headers(list: &[(&str, &str)]) -> Vec<Header> {
        list.iter()
            .map(|(n, v)| Header {
                name: n.to_string(),
                value: v.as_bytes().to_vec(),
            })
            .collect()
    }

    /// A server-side call with a credential in its query and headers.
    pub fn sample() -> ApiCall {
        ApiCall {
            kind: SpanKind::Server,
            start_unix_ns: 1_795_874_171_707_540_109,
            end_unix_ns: 1_795_874_171_711_310_674,
            method: "GET".into(),
            path: "/users/42".into(),
            query: Some("api_key=s3cr3t&page=2".into()),
            host: Some("api.local:8080".into()),
            user_agent: Some("curl/7.88.1".into()),
            protocol_version: "1.1",
            status: Some(200),
            error: None,
            request_headers: vec![Header {
                name: "authorization".into(),
                value: b"Bearer s3cr3t-token".to_vec(),
            }],
            response_headers: vec![],
            request_size: MessageSize {
                total: 79,
                body: 0,
                body_complete: true,
            },
            response_size: MessageSize {
                total: 120,
                body: 17,
                body_complete: true,
            },
            request_body_sample: vec![],
            response_body_sample: b"{\"ok\":true}".to_vec(),
            unknown_fields: 0,
            stream_id: None,
            grpc: None,
            local: Endpoint {
                address: "127.0.0.1:8080".parse().unwrap(),
                process: Some(ProcessInfo {
                    pid: 10,
                    executable_name: "api".into(),
                    executable_path: Some("/usr/bin/api".into()),
                    command_line: Some("/usr/bin/api --port 8080".into()),
                    owner: Some("www-data".into()),
                    incarnation: 1,
                    cgroup_id: 1,
                }),
                identity: None,
            },
            peer: Endpoint {
                address: "10.0.0.9:41060".parse().unwrap(),
                process: None,
                identity: None,
            },
            thread_id: 11,
            joined_midstream: false,
            tls: None,
            tls_server_name: None,
            tls_client_certificate: None,
            auth: None,
            endpoint: None,
            findings: Vec::new(),
        }
    }
}
