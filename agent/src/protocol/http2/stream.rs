//! One HTTP/2 stream as the agent saw it: the client's and the server's header blocks, data
//! and ends, turned into an [`Exchange`] when the stream is done.

use super::hpack::Field;
use crate::protocol::{
    grpc::{self, MessageCounter},
    http1::{Header, message::Body},
};

/// One direction of a stream.
#[derive(Default)]
pub struct Half {
    /// The head: the request's fields, or the final response's.
    pub head: Option<Vec<Field>>,
    /// Header blocks after the head (trailers).
    pub trailers: Vec<Field>,
    pub body: Body,
    /// Frame bytes of this direction on this stream, frame headers included.
    pub wire_len: u64,
    pub ended: bool,
    /// gRPC messages in the data, for gRPC calls.
    pub messages: Option<MessageCounter>,
}

impl Half {
    pub fn data(&mut self, bytes: &[u8], sample_limit: usize) {
        self.body.len += bytes.len() as u64;
        let room = sample_limit.saturating_sub(self.body.sample.len());
        self.body
            .sample
            .extend_from_slice(&bytes[..room.min(bytes.len())]);
        if let Some(counter) = &mut self.messages {
            counter.bytes(bytes);
        }
    }

    pub fn data_gap(&mut self, len: usize) {
        self.body.len += len as u64;
        self.body.complete = false;
        if let Some(counter) = &mut self.messages {
            counter.gap(len);
        }
    }
}

pub struct Stream {
    pub client: Half,
    pub server: Half,
    /// Monotonic ns of the request's first header block.
    pub start_ts: u64,
    /// Monotonic ns of the last frame seen.
    pub end_ts: u64,
}

impl Stream {
    pub fn new(head: Vec<Field>, ts: u64) -> Self {
        let mut stream = Self {
            client: Half::default(),
            server: Half::default(),
            start_ts: ts,
            end_ts: ts,
        };
        stream.client.body.complete = true;
        stream.server.body.complete = true;
        // Counted on every stream (a jump per message): whether it is gRPC may only show in
        // the response, when the request's content type was hidden (joined mid-way).
        stream.client.messages = Some(MessageCounter::new());
        stream.server.messages = Some(MessageCounter::new());
        stream.client.head = Some(head);
        stream
    }

    /// The exchange; `grpc_connection` when other streams of the connection showed gRPC.
    pub fn into_exchange(
        mut self,
        id: u32,
        error: Option<String>,
        grpc_connection: bool,
    ) -> Exchange {
        let request = self.client.head.take().unwrap_or_default();
        let response = self.server.head.as_deref().unwrap_or_default();
        let unknown = [
            &request[..],
            response,
            &self.client.trailers,
            &self.server.trailers,
        ]
        .iter()
        .flat_map(|fields| fields.iter())
        .filter(|f| matches!(f, Field::Unknown))
        .count() as u32;
        let text = |fields: &[Field], name: &[u8]| {
            find(fields, name).map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let status =
            find(response, b":status").and_then(|v| std::str::from_utf8(v).ok()?.parse().ok());
        let path = text(&request, b":path");
        let said = [&request[..], response]
            .iter()
            .any(|fields| find(fields, b"content-type").is_some_and(grpc::is_grpc_content_type))
            || find(&self.server.trailers, b"grpc-status").is_some();
        // When header compression hid what says so (joined mid-way): a connection that
        // carried gRPC, or a POST to a gRPC-shaped path whose bodies are exactly whole
        // length-prefixed messages.
        let framed = |half: &Half| {
            half.messages
                .as_ref()
                .is_some_and(|m| m.exact && m.messages > 0 && m.at_message_boundary())
        };
        let inferred = unknown > 0
            && (grpc_connection
                || (find(&request, b":method") == Some(b"POST")
                    && path.as_deref().and_then(grpc::service_and_method).is_some()
                    && framed(&self.client)
                    && framed(&self.server)));
        let is_grpc = said || inferred;
        let grpc = is_grpc.then(|| {
            let requests = self.client.messages.clone().unwrap_or_default();
            // Trailers, or the response head of a trailers-only answer.
            let status_field =
                |name: &[u8]| find(&self.server.trailers, name).or_else(|| find(response, name));
            let responses = self.server.messages.clone().unwrap_or_default();
            let (service, method) = path
                .as_deref()
                .and_then(grpc::service_and_method)
                .map(|(s, m)| (Some(s.to_string()), Some(m.to_string())))
                .unwrap_or_default();
            GrpcExchange {
                service,
                method,
                status: status_field(b"grpc-status").and_then(grpc::status_code),
                message: status_field(b"grpc-message").map(grpc::decode_message),
                request_messages: requests.messages,
                response_messages: responses.messages,
                messages_exact: requests.exact && responses.exact,
            }
        });
        // Moved, not copied: the samples are the largest part of a call.
        let complete = |body: &mut Body, ended: bool| Body {
            complete: body.complete && ended,
            ..std::mem::take(body)
        };
        let request_body = complete(&mut self.client.body, self.client.ended);
        let response_body = complete(&mut self.server.body, self.server.ended);
        Exchange {
            stream_id: id,
            method: text(&request, b":method"),
            scheme: text(&request, b":scheme"),
            authority: text(&request, b":authority"),
            path,
            status,
            request_headers: regular(&request),
            response_headers: regular(response)
                .into_iter()
                .chain(regular(&self.server.trailers))
                .collect(),
            unknown_fields: unknown,
            request_body,
            response_body,
            request_wire_len: self.client.wire_len,
            response_wire_len: self.server.wire_len,
            start_ts: self.start_ts,
            end_ts: self.end_ts,
            error,
            grpc,
        }
    }
}

/// The value of the first known field called `name`.
pub fn find<'a>(fields: &'a [Field], name: &[u8]) -> Option<&'a [u8]> {
    fields.iter().find_map(|f| match f {
        Field::Known { name: n, value } if n == name => Some(&value[..]),
        _ => None,
    })
}

/// The known fields that are not pseudo-headers.
fn regular(fields: &[Field]) -> Vec<Header> {
    fields
        .iter()
        .filter_map(|f| match f {
            Field::Known { name, value } if !name.starts_with(b":") => Some(Header {
                name: String::from_utf8_lossy(name).into_owned(),
                value: value.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// A stream's request and response, as one end of the connection saw them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub stream_id: u32,
    /// Pseudo-headers; `None` when absent or unknown (see `unknown_fields`).
    pub method: Option<String>,
    pub scheme: Option<String>,
    pub authority: Option<String>,
    /// Path and query, as `:path` carries them.
    pub path: Option<String>,
    pub status: Option<u16>,
    pub request_headers: Vec<Header>,
    /// The response's headers, then its trailers.
    pub response_headers: Vec<Header>,
    /// Header fields that referenced the part of the HPACK table the agent did not see.
    pub unknown_fields: u32,
    pub request_body: Body,
    pub response_body: Body,
    pub request_wire_len: u64,
    pub response_wire_len: u64,
    pub start_ts: u64,
    pub end_ts: u64,
    /// Why the stream has no (complete) response.
    pub error: Option<String>,
    pub grpc: Option<GrpcExchange>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcExchange {
    pub service: Option<String>,
    pub method: Option<String>,
    pub status: Option<u32>,
    pub message: Option<String>,
    pub request_messages: u64,
    pub response_messages: u64,
    /// False when a hole in the capture made the counts lower bounds.
    pub messages_exact: bool,
}
