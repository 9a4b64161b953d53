//! One feed per protocol behind the tracker: each takes a connection's data chunk and returns
//! the exchanges it finished, in the one protocol-neutral form [`Exchange`] that
//! `conn::assemble` turns into a call. `tls` (the handshake and records, for the server name,
//! client certificates and the coverage report), `http1` (and the h2c upgrade that hands the
//! connection to HTTP/2), `http2`. Bytes of an unknown protocol go nowhere.

pub mod http1;
pub mod http2;
pub mod tls;

use crate::protocol::{
    http1::{Header, message::Body},
    http2::GrpcExchange,
};

/// A finished request/response pair, whatever the HTTP version: everything of an
/// [`crate::call::ApiCall`] that the protocol tells (the connection tells the rest).
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub host: Option<String>,
    pub user_agent: Option<String>,
    pub protocol_version: &'static str,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub request_headers: Vec<Header>,
    pub response_headers: Vec<Header>,
    /// Each message's body (its sample) and its size on the wire.
    pub request: (Body, u64),
    pub response: (Body, u64),
    pub start_ts: u64,
    pub end_ts: u64,
    /// HTTP/2 only: the stream, header fields lost with the HPACK state, the gRPC part.
    pub stream_id: Option<u32>,
    pub unknown_fields: u32,
    pub grpc: Option<GrpcExchange>,
}
