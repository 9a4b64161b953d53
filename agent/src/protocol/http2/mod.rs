//! HTTP/2 (RFC 9113) and the gRPC calls it carries: `frame` reads each direction's frames,
//! `hpack` decodes header blocks (through the httlib-hpack crate) and keeps working on a
//! connection joined mid-way, `stream` collects each stream into an exchange. This module ties
//! them: which direction is the client's, which block opens, answers or ends which stream.

pub mod frame;
pub mod hpack;
pub mod stream;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use frame::{FrameEvent, FrameHeader, FrameReader};
use hpack::{DEFAULT_TABLE_SIZE, Field, HeaderDecoder};
pub use stream::{Exchange, GrpcExchange};
use stream::{Half, Stream, find};

use crate::{
    protocol::http1::{Limits, RequestHead},
    stats::Stats,
};

/// Streams in progress kept per connection. Servers allow 100 to 250 at once, so past it the
/// oldest are streams whose end the capture lost (dropped events): the oldest is let go
/// (counted) for the new one, and a connection recovers from a loss by itself.
pub const MAX_STREAMS: usize = 256;
/// Largest header block (HEADERS and its CONTINUATIONs) kept to be decoded.
const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// Which stream a header block belongs to, and whether it ends it.
struct BlockHead {
    stream: u32,
    end_stream: bool,
}

/// A header block being collected from HEADERS (or PUSH_PROMISE) and CONTINUATION frames.
struct Block {
    stream: u32,
    end_stream: bool,
    bytes: Vec<u8>,
    lost: bool,
}

/// One direction of the connection.
struct Side {
    reader: FrameReader,
    decoder: HeaderDecoder,
    block: Option<Block>,
}

/// HTTP/2 state of one connection, from one process's point of view.
pub struct Http2Connection {
    /// Whether the observing process's outgoing bytes are the client's; learned from the
    /// preface or the first header block when the agent joined mid-way.
    client_egress: Option<bool>,
    egress: Side,
    ingress: Side,
    streams: HashMap<u32, Stream>,
    /// Highest stream id the client opened (ids only grow: a lower unknown one is finished).
    last_client_stream: u32,
    sample_limit: usize,
    /// A stream's headers showed gRPC: the connection carries gRPC.
    grpc: bool,
}

/// Where the connection's first bytes were seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// From its first byte (the client's preface included).
    Beginning,
    /// Mid-way: frame boundaries and HPACK tables are unknown at first.
    Joined,
}

impl Http2Connection {
    pub fn new(client_egress: Option<bool>, start: Start, limits: Limits) -> Self {
        let side = |client: bool| match start {
            Start::Beginning => Side {
                reader: FrameReader::new(client),
                decoder: HeaderDecoder::new(),
                block: None,
            },
            Start::Joined => Side {
                reader: FrameReader::joining(),
                decoder: HeaderDecoder::joining(DEFAULT_TABLE_SIZE),
                block: None,
            },
        };
        Self {
            client_egress,
            egress: side(client_egress == Some(true)),
            ingress: side(client_egress == Some(false)),
            streams: HashMap::new(),
            last_client_stream: 0,
            sample_limit: limits.body_sample_bytes,
            grpc: false,
        }
    }

    /// After an HTTP/1.1 `Upgrade: h2c` answered by 101: the request becomes stream 1, whose
    /// response comes in HTTP/2 (RFC 7540 3.2).
    pub fn upgraded(
        client_egress: bool,
        request: &RequestHead,
        start_ts: u64,
        limits: Limits,
    ) -> Self {
        let mut this = Self::new(Some(client_egress), Start::Beginning, limits);
        let (path, authority) = (
            request.target.as_bytes(),
            request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("host")),
        );
        let mut head = vec![
            Field::Known {
                name: b":method".to_vec(),
                value: request.method.as_bytes().to_vec(),
            },
            Field::Known {
                name: b":scheme".to_vec(),
                value: b"http".to_vec(),
            },
            Field::Known {
                name: b":path".to_vec(),
                value: path.to_vec(),
            },
        ];
        if let Some(host) = authority {
            head.push(Field::Known {
                name: b":authority".to_vec(),
                value: host.value.clone(),
            });
        }
        head.extend(request.headers.iter().map(|h| Field::Known {
            name: h.name.to_ascii_lowercase().into_bytes(),
            value: h.value.clone(),
        }));
        let mut stream = Stream::new(head, start_ts);
        stream.client.ended = true;
        stream.client.wire_len = request.len as u64;
        this.streams.insert(1, stream);
        this.last_client_stream = 1;
        this
    }

    /// Which direction is the client's, once known.
    pub fn client_egress(&self) -> Option<bool> {
        self.client_egress
    }

    /// Streams in progress.
    pub fn in_progress(&self) -> usize {
        self.streams.len()
    }

    /// Bytes of one syscall (`missing` more were moved but not captured).
    pub fn on_bytes(
        &mut self,
        egress: bool,
        data: &[u8],
        missing: usize,
        ts: u64,
        stats: &Stats,
        out: &mut Vec<Exchange>,
    ) {
        let side = if egress {
            &mut self.egress
        } else {
            &mut self.ingress
        };
        let mut reader = std::mem::replace(&mut side.reader, FrameReader::joining());
        let was_lost = reader.is_lost();
        reader.feed(data, missing, &mut |event| {
            self.on_frame(egress, event, ts, stats, out)
        });
        if was_lost && !reader.is_lost() {
            Stats::inc(&stats.http2_resyncs);
        }
        let side = if egress {
            &mut self.egress
        } else {
            &mut self.ingress
        };
        side.reader = reader;
    }

    /// Bytes of this direction were dropped before the next ones (an unknown number): its
    /// frame boundaries and HPACK table are unknown until it shows frames again.
    pub fn on_loss(&mut self, egress: bool) {
        let side = self.side(egress);
        side.reader = FrameReader::joining();
        side.block = None;
        side.decoder.forget(DEFAULT_TABLE_SIZE);
    }

    /// The connection closed: streams waiting for their response are reported.
    pub fn on_close(&mut self, ts: u64, out: &mut Vec<Exchange>) {
        let mut ids: Vec<u32> = self.streams.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(mut stream) = self.streams.remove(&id) {
                stream.end_ts = stream.end_ts.max(ts);
                out.push(self.exchange(
                    stream,
                    id,
                    Some("connection closed before the response ended".into()),
                ));
            }
        }
    }

    /// A finished stream's exchange; notes whether the connection carries gRPC.
    fn exchange(&mut self, stream: Stream, id: u32, error: Option<String>) -> Exchange {
        let exchange = stream.into_exchange(id, error, self.grpc);
        if exchange.grpc.is_some() {
            self.grpc = true;
        }
        exchange
    }

    fn side(&mut self, egress: bool) -> &mut Side {
        if egress {
            &mut self.egress
        } else {
            &mut self.ingress
        }
    }

    fn on_frame(
        &mut self,
        egress: bool,
        event: FrameEvent<'_>,
        ts: u64,
        stats: &Stats,
        out: &mut Vec<Exchange>,
    ) {
        match event {
            FrameEvent::Frame { header, payload } => {
                self.on_control(egress, header, payload, ts, stats, out)
            }
            FrameEvent::Data { header, bytes } => {
                let limit = self.sample_limit;
                if let Some(half) = self.half(egress, header.stream) {
                    half.data(bytes, limit);
                }
            }
            FrameEvent::DataGap { header, len } => {
                if let Some(half) = self.half(egress, header.stream) {
                    half.data_gap(len);
                }
            }
            FrameEvent::DataEnd { header } => {
                if let Some(half) = self.half(egress, header.stream) {
                    half.wire_len += frame::HEADER_LEN as u64 + header.len as u64;
                    if header.has(frame::END_STREAM) {
                        half.ended = true;
                    }
                }
                self.touch(header.stream, ts);
                self.finish_if_done(header.stream, egress, out);
            }
            FrameEvent::Lost { header } => {
                if matches!(
                    header.kind,
                    frame::HEADERS | frame::CONTINUATION | frame::PUSH_PROMISE
                ) {
                    // A header block not seen: the table it changed is unknown now.
                    Stats::inc(&stats.http2_header_blocks_lost);
                    let side = self.side(egress);
                    side.block = None;
                    side.decoder.forget(DEFAULT_TABLE_SIZE);
                }
            }
            FrameEvent::Desync => {
                Stats::inc(&stats.http2_desyncs);
                let side = self.side(egress);
                side.block = None;
                side.decoder.forget(DEFAULT_TABLE_SIZE);
            }
        }
    }

    fn half(&mut self, egress: bool, id: u32) -> Option<&mut Half> {
        let client = self.client_egress? == egress;
        let stream = self.streams.get_mut(&id)?;
        Some(if client {
            &mut stream.client
        } else {
            &mut stream.server
        })
    }

    fn touch(&mut self, id: u32, ts: u64) {
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.end_ts = stream.end_ts.max(ts);
        }
    }

    fn on_control(
        &mut self,
        egress: bool,
        header: FrameHeader,
        payload: &[u8],
        ts: u64,
        stats: &Stats,
        out: &mut Vec<Exchange>,
    ) {
        match header.kind {
            frame::HEADERS | frame::PUSH_PROMISE => {
                let Some(fragment) = frame::block_fragment(header, payload) else {
                    Stats::inc(&stats.http2_header_blocks_lost);
                    self.side(egress).decoder.forget(DEFAULT_TABLE_SIZE);
                    return;
                };
                if let Some(half) = self.half(egress, header.stream) {
                    half.wire_len += frame::HEADER_LEN as u64 + header.len as u64;
                }
                // A promised stream's headers are decoded (they change the table), not kept.
                let stream = if header.kind == frame::PUSH_PROMISE {
                    0
                } else {
                    header.stream
                };
                let end_stream = header.kind == frame::HEADERS && header.has(frame::END_STREAM);
                if header.has(frame::END_HEADERS) {
                    // The usual case: the whole block in this frame, decoded where it lies.
                    self.decode_block(egress, stream, end_stream, fragment, ts, stats, out);
                } else {
                    self.side(egress).block = Some(Block {
                        stream,
                        end_stream,
                        bytes: fragment.to_vec(),
                        lost: false,
                    });
                }
            }
            frame::CONTINUATION => {
                if let Some(half) = self.half(egress, header.stream) {
                    half.wire_len += frame::HEADER_LEN as u64 + header.len as u64;
                }
                let side = self.side(egress);
                let Some(block) = &mut side.block else {
                    return;
                };
                if block.bytes.len() + payload.len() > MAX_HEADER_BLOCK {
                    block.lost = true;
                    block.bytes = Vec::new();
                } else if !block.lost {
                    block.bytes.extend_from_slice(payload);
                }
                if header.has(frame::END_HEADERS) {
                    self.end_block(egress, ts, stats, out);
                }
            }
            frame::RST_STREAM => {
                let code = payload
                    .get(..4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(0);
                if let Some(mut stream) = self.streams.remove(&header.stream) {
                    stream.end_ts = stream.end_ts.max(ts);
                    let by = match self.client_egress.map(|c| c == egress) {
                        Some(true) => "client",
                        Some(false) => "server",
                        None => "peer",
                    };
                    out.push(self.exchange(
                        stream,
                        header.stream,
                        Some(format!(
                            "stream reset by the {by}: {}",
                            frame::error_code(code)
                        )),
                    ));
                }
            }
            frame::GOAWAY if self.client_egress.is_some_and(|c| c != egress) => {
                // Streams above the last one the server processed were refused.
                let last = payload
                    .get(..4)
                    .map(|b| u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]))
                    .unwrap_or(u32::MAX);
                let mut refused: Vec<u32> = self
                    .streams
                    .keys()
                    .copied()
                    .filter(|id| *id > last && id % 2 == 1)
                    .collect();
                refused.sort_unstable();
                for id in refused {
                    if let Some(stream) = self.streams.remove(&id) {
                        out.push(self.exchange(
                            stream,
                            id,
                            Some("refused: the server is going away (GOAWAY)".into()),
                        ));
                    }
                }
            }
            _ => {}
        }
    }

    fn end_block(&mut self, egress: bool, ts: u64, stats: &Stats, out: &mut Vec<Exchange>) {
        let side = self.side(egress);
        let Some(block) = side.block.take() else {
            return;
        };
        if block.lost {
            Stats::inc(&stats.http2_header_blocks_lost);
            side.decoder.forget(DEFAULT_TABLE_SIZE);
            return;
        }
        self.decode_block(
            egress,
            block.stream,
            block.end_stream,
            &block.bytes,
            ts,
            stats,
            out,
        );
    }

    /// A whole header block of `stream` (0: a promised stream's) from one direction: opens,
    /// answers or ends its stream.
    #[allow(clippy::too_many_arguments)]
    fn decode_block(
        &mut self,
        egress: bool,
        stream: u32,
        end_stream: bool,
        bytes: &[u8],
        ts: u64,
        stats: &Stats,
        out: &mut Vec<Exchange>,
    ) {
        let block = BlockHead { stream, end_stream };
        let fields = match self.side(egress).decoder.decode(bytes) {
            Ok(fields) => fields,
            Err(_) => {
                Stats::inc(&stats.http2_hpack_errors);
                return;
            }
        };
        if block.stream == 0 {
            return; // PUSH_PROMISE
        }
        let unknown = fields
            .iter()
            .filter(|f| matches!(f, Field::Unknown))
            .count();
        Stats::add(&stats.http2_fields_unknown, unknown as u64);
        // Who sent it: the preface told, or the block says (a request has :method, a
        // response :status).
        let says_client = if find(&fields, b":method").is_some() {
            Some(true)
        } else if find(&fields, b":status").is_some() {
            Some(false)
        } else {
            None
        };
        if self.client_egress.is_none() {
            self.client_egress = says_client.map(|client| client == egress);
        }
        let Some(client_egress) = self.client_egress else {
            Stats::inc(&stats.http2_streams_unattributed);
            return;
        };
        let from_client = client_egress == egress;
        let id = block.stream;
        if from_client {
            match self.streams.get_mut(&id) {
                Some(stream) => {
                    stream.client.trailers.extend(fields);
                    stream.client.ended |= block.end_stream;
                }
                None if id > self.last_client_stream && id % 2 == 1 => {
                    self.last_client_stream = id;
                    if self.streams.len() >= MAX_STREAMS
                        && let Some(oldest) = self.streams.keys().min().copied()
                    {
                        self.streams.remove(&oldest);
                        Stats::inc(&stats.http2_streams_dropped);
                    }
                    let mut stream = Stream::new(fields, ts);
                    stream.client.ended = block.end_stream;
                    self.streams.insert(id, stream);
                }
                // A stream already finished, or one the agent joined after its request.
                None => {}
            }
            return;
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            // The answer of a request sent before the agent joined: nothing to pair it with.
            Stats::inc(&stats.http2_streams_unattributed);
            return;
        };
        stream.end_ts = stream.end_ts.max(ts);
        if stream.server.head.is_none() {
            let interim = find(&fields, b":status")
                .is_some_and(|s| s.len() == 3 && s[0] == b'1' && s != b"101");
            if interim && !block.end_stream {
                return;
            }
            stream.server.head = Some(fields);
        } else {
            stream.server.trailers.extend(fields);
        }
        stream.server.ended |= block.end_stream;
        self.finish_if_done(id, egress, out);
    }

    /// A stream is reported once the server ended it (a client that keeps sending after the
    /// answer only reaches a closed stream).
    fn finish_if_done(&mut self, id: u32, egress: bool, out: &mut Vec<Exchange>) {
        if self.client_egress == Some(egress) {
            return;
        }
        if self.streams.get(&id).is_some_and(|s| s.server.ended)
            && let Some(stream) = self.streams.remove(&id)
        {
            out.push(self.exchange(stream, id, None));
        }
    }
}
