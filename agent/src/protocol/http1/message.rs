//! Framing one direction of an HTTP/1 connection into messages.
//!
//! The parser is fed the captured bytes of each syscall in order, plus "gaps": bytes the
//! syscall moved but the probe did not copy (capture limit, sendfile). Heads are buffered (up to
//! a limit) until complete, bodies are counted, not kept, except for a bounded sample. When
//! framing is lost, the stream is marked desynchronised and resumes at the next syscall whose
//! bytes start a message. It never panics and never grows without bound.

use super::head::{Head, Parsed, parse_request, parse_response};
use crate::protocol::detect::{self, Verdict};

/// Requests or responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    Request,
    Response,
}

/// How a message's body is delimited, decided by the caller once the head is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    NoBody,
    Length(u64),
    Chunked,
    /// HTTP/1.0-style: the body ends when the connection closes.
    UntilClose,
    /// 101 Switching Protocols, or a CONNECT tunnel opened: the message ends with its head and
    /// the bytes after it are another protocol's, kept for it (`take_switched`).
    Switched,
}

/// Bytes of the next protocol kept after a switch (the first frames of an h2c upgrade).
const MAX_SWITCHED: usize = 64 * 1024;

/// Bounds on what the parser keeps.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest message head (request/status line and headers).
    pub max_head_bytes: usize,
    /// Body bytes kept as a sample for later analysis.
    pub body_sample_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_bytes: 64 * 1024,
            body_sample_bytes: 4096,
        }
    }
}

/// Why framing was lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The bytes do not start an HTTP/1 message.
    NotHttp,
    InvalidHead(String),
    HeadTooLarge,
    InvalidChunk,
    /// Bytes the capture did not copy fell where framing needs them.
    GapInFraming,
    /// The connection closed in the middle of a message.
    Truncated,
}

/// A message's body as seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Body {
    /// Body length on the wire (decoded length for chunked bodies).
    pub len: u64,
    /// The first bytes of the body, up to the sample limit.
    pub sample: Vec<u8>,
    /// False when some body bytes were not captured or the message was cut.
    pub complete: bool,
}

/// What the parser found, in stream order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseEvent {
    /// A head, with the timestamp of the syscall that carried its first byte.
    Head {
        head: Head,
        start_ts: u64,
    },
    /// The end of the message whose head came last, with the timestamp of its last syscall.
    End {
        body: Body,
        wire_len: u64,
        end_ts: u64,
    },
    /// A message was there but could not be parsed (head too large or invalid, or not
    /// captured): its answer must not be paired with another message.
    Lost,
    Error(ParseError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between messages.
    Idle,
    Head,
    Length(u64),
    UntilClose,
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd,
    Trailers,
    /// Framing lost; waiting for a syscall whose bytes start a message.
    Desync,
    /// The connection switched protocols: what follows is not HTTP/1.
    Switched,
}

/// The last chunk and the blank line that end a chunked body without trailers.
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

pub struct MessageParser {
    kind: MessageKind,
    limits: Limits,
    state: State,
    head_buf: Vec<u8>,
    line_buf: Vec<u8>,
    start_ts: u64,
    head_len: u64,
    body: Body,
    /// Bytes after a protocol switch.
    switched: Vec<u8>,
}

impl MessageParser {
    pub fn new(kind: MessageKind, limits: Limits) -> Self {
        Self {
            kind,
            limits,
            state: State::Idle,
            head_buf: Vec::new(),
            line_buf: Vec::new(),
            start_ts: 0,
            head_len: 0,
            body: Body::default(),
            switched: Vec::new(),
        }
    }

    /// The bytes that followed a protocol switch so far (the next protocol's).
    pub fn take_switched(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.switched)
    }

    /// The body of the message in progress, if the parser is inside one (marked incomplete).
    pub fn partial_body(&self) -> Option<Body> {
        match self.state {
            State::Length(_)
            | State::UntilClose
            | State::ChunkSize
            | State::ChunkData(_)
            | State::ChunkDataEnd
            | State::Trailers => Some(Body {
                complete: false,
                ..self.body.clone()
            }),
            _ => None,
        }
    }

    /// Feeds the captured bytes of one syscall. `framing` decides each message's body framing
    /// from its head (for responses it depends on the request).
    pub fn feed(
        &mut self,
        data: &[u8],
        ts: u64,
        framing: &mut dyn FnMut(&Head) -> Result<Framing, ParseError>,
        out: &mut Vec<ParseEvent>,
    ) {
        if self.state == State::Desync {
            if self.starts_message(data) == Verdict::No {
                return;
            }
            self.state = State::Idle;
        }
        let mut pos = 0;
        while pos < data.len() {
            let rest = &data[pos..];
            pos += match self.state {
                State::Idle => self.start(rest, ts, out),
                State::Head => self.head(rest, ts, framing, out),
                State::Length(remaining) => {
                    let n = remaining.min(rest.len() as u64) as usize;
                    self.body_bytes(&rest[..n]);
                    self.state = State::Length(remaining - n as u64);
                    if remaining == n as u64 {
                        self.finish(ts, out);
                    }
                    n
                }
                State::UntilClose => {
                    self.body_bytes(rest);
                    rest.len()
                }
                State::ChunkSize => self.chunk_size(rest, ts, out),
                State::ChunkData(remaining) => {
                    let n = remaining.min(rest.len() as u64) as usize;
                    self.body_bytes(&rest[..n]);
                    self.state = if remaining == n as u64 {
                        State::ChunkDataEnd
                    } else {
                        State::ChunkData(remaining - n as u64)
                    };
                    n
                }
                State::ChunkDataEnd => self.chunk_data_end(rest, ts, out),
                State::Trailers => self.trailers(rest, ts, out),
                State::Desync => rest.len(),
                State::Switched => {
                    let room = MAX_SWITCHED.saturating_sub(self.switched.len());
                    self.switched
                        .extend_from_slice(&rest[..room.min(rest.len())]);
                    rest.len()
                }
            };
        }
    }

    /// Accounts for `len` bytes the syscall moved but the probe did not copy.
    pub fn gap(&mut self, len: usize, ts: u64, out: &mut Vec<ParseEvent>) {
        if len == 0 {
            return;
        }
        let len = len as u64;
        self.body.complete = false;
        match self.state {
            State::Length(remaining) if len <= remaining => {
                self.body.len += len;
                self.state = State::Length(remaining - len);
                if remaining == len {
                    self.finish(ts, out);
                }
            }
            State::ChunkData(remaining) if len <= remaining => {
                self.body.len += len;
                self.state = if remaining == len {
                    State::ChunkDataEnd
                } else {
                    State::ChunkData(remaining - len)
                };
            }
            State::UntilClose => self.body.len += len,
            State::Desync | State::Switched => {}
            // Only a prefix of each syscall is captured, so uncaptured bytes at a message
            // boundary are the start of another message.
            State::Idle | State::Head => {
                self.head_buf.clear();
                out.push(ParseEvent::Lost);
                self.desync(ParseError::GapInFraming, out);
            }
            // A writer that sends each chunk in one syscall ends it with the chunk's CRLF, and
            // often the last chunk with the terminating `0 CRLF CRLF` too: both are the only
            // bytes that can follow, so the framing survives a gap that covers them.
            State::ChunkData(remaining) if len == remaining + 2 => {
                self.body.len += remaining;
                self.state = State::ChunkSize;
            }
            State::ChunkData(remaining) if len == remaining + 2 + LAST_CHUNK.len() as u64 => {
                self.body.len += remaining;
                self.finish(ts, out);
            }
            State::Length(remaining) | State::ChunkData(remaining) => {
                // The gap runs past this message: end it with what is known, then resync.
                self.body.len += remaining;
                self.finish(ts, out);
                self.desync(ParseError::GapInFraming, out);
            }
            State::ChunkSize | State::ChunkDataEnd | State::Trailers => {
                self.finish(ts, out);
                self.desync(ParseError::GapInFraming, out);
            }
        }
    }

    /// The connection closed: ends a body delimited by close, reports a cut message.
    pub fn close(&mut self, ts: u64, out: &mut Vec<ParseEvent>) {
        match self.state {
            State::UntilClose => self.finish(ts, out),
            State::Idle | State::Desync | State::Switched => {}
            State::Head => {
                self.head_buf.clear();
                out.push(ParseEvent::Error(ParseError::Truncated));
            }
            State::Length(_)
            | State::ChunkSize
            | State::ChunkData(_)
            | State::ChunkDataEnd
            | State::Trailers => {
                self.body.complete = false;
                self.finish(ts, out);
                out.push(ParseEvent::Error(ParseError::Truncated));
            }
        }
        self.state = State::Idle;
    }

    fn parse_head(&self, head: &[u8]) -> Parsed {
        match self.kind {
            MessageKind::Request => parse_request(head),
            MessageKind::Response => parse_response(head),
        }
    }

    fn starts_message(&self, data: &[u8]) -> Verdict {
        let data = trim_leading_newlines(data);
        match self.kind {
            MessageKind::Request => detect::request_start(data),
            MessageKind::Response => detect::response_start(data),
        }
    }

    fn start(&mut self, rest: &[u8], ts: u64, out: &mut Vec<ParseEvent>) -> usize {
        // Tolerate stray CRLFs between messages (RFC 9112 2.2).
        let skipped = rest.len() - trim_leading_newlines(rest).len();
        if skipped == rest.len() {
            return skipped;
        }
        if self.starts_message(&rest[skipped..]) == Verdict::No {
            self.desync(ParseError::NotHttp, out);
            return rest.len();
        }
        self.head_buf.clear();
        self.start_ts = ts;
        self.body = Body {
            complete: true,
            ..Body::default()
        };
        self.state = State::Head;
        skipped
    }

    fn head(
        &mut self,
        rest: &[u8],
        ts: u64,
        framing: &mut dyn FnMut(&Head) -> Result<Framing, ParseError>,
        out: &mut Vec<ParseEvent>,
    ) -> usize {
        let before = self.head_buf.len();
        let room = self.limits.max_head_bytes + 1 - before.min(self.limits.max_head_bytes);
        let take = rest.len().min(room);
        // A head that arrives whole in one syscall (the usual case) is parsed where it is: only
        // a head split across syscalls is gathered in `head_buf` (no copy, no buffer kept).
        let whole = (before == 0)
            .then(|| find_head_end(&rest[..take], 0))
            .flatten()
            .filter(|_| self.starts_message(&rest[..take]) != Verdict::No);
        let (parsed, end) = match whole {
            Some(end) => (self.parse_head(&rest[..end]), end),
            None => {
                self.head_buf.extend_from_slice(&rest[..take]);
                if before < 32 && self.starts_message(&self.head_buf) == Verdict::No {
                    self.head_buf = Vec::new();
                    self.desync(ParseError::NotHttp, out);
                    return rest.len();
                }
                let Some(end) = find_head_end(&self.head_buf, before.saturating_sub(3)) else {
                    if self.head_buf.len() > self.limits.max_head_bytes {
                        self.head_buf = Vec::new();
                        out.push(ParseEvent::Lost);
                        self.desync(ParseError::HeadTooLarge, out);
                        return rest.len();
                    }
                    return take;
                };
                let parsed = self.parse_head(&self.head_buf[..end]);
                // Released: split heads are rare, an idle connection keeps no buffer.
                self.head_buf = Vec::new();
                (parsed, end)
            }
        };
        let head = match parsed {
            Parsed::Complete(head) => head,
            Parsed::Partial => {
                out.push(ParseEvent::Lost);
                self.desync(ParseError::InvalidHead("incomplete head".to_string()), out);
                return rest.len();
            }
            Parsed::Invalid(reason) => {
                out.push(ParseEvent::Lost);
                self.desync(ParseError::InvalidHead(reason), out);
                return rest.len();
            }
        };
        let consumed = end - before;
        self.head_len = end as u64;
        let framing = framing(&head);
        out.push(ParseEvent::Head {
            head,
            start_ts: self.start_ts,
        });
        match framing {
            Ok(Framing::NoBody) | Ok(Framing::Length(0)) => self.finish(ts, out),
            Ok(Framing::Length(n)) => self.state = State::Length(n),
            Ok(Framing::Chunked) => self.state = State::ChunkSize,
            Ok(Framing::UntilClose) => self.state = State::UntilClose,
            Ok(Framing::Switched) => {
                self.finish(ts, out);
                self.state = State::Switched;
            }
            Err(error) => {
                self.body.complete = false;
                self.finish(ts, out);
                self.desync(error, out);
                return rest.len();
            }
        }
        consumed
    }

    fn chunk_size(&mut self, rest: &[u8], ts: u64, out: &mut Vec<ParseEvent>) -> usize {
        let Some((line, used)) = self.take_line(rest) else {
            if self.line_buf.len() > MAX_LINE {
                return self.chunk_error(rest.len(), ts, out);
            }
            return rest.len();
        };
        let size_text = line
            .split(|b| *b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        let size = std::str::from_utf8(size_text)
            .ok()
            .and_then(|s| u64::from_str_radix(s, 16).ok());
        match size {
            Some(0) => self.state = State::Trailers,
            Some(n) => self.state = State::ChunkData(n),
            None => return self.chunk_error(rest.len(), ts, out),
        }
        used
    }

    fn chunk_data_end(&mut self, rest: &[u8], ts: u64, out: &mut Vec<ParseEvent>) -> usize {
        match rest[0] {
            b'\r' => 1,
            b'\n' => {
                self.state = State::ChunkSize;
                1
            }
            _ => {
                self.body.complete = false;
                self.finish(ts, out);
                self.desync(ParseError::InvalidChunk, out);
                rest.len()
            }
        }
    }

    fn trailers(&mut self, rest: &[u8], ts: u64, out: &mut Vec<ParseEvent>) -> usize {
        let Some((line, used)) = self.take_line(rest) else {
            if self.line_buf.len() > MAX_LINE {
                return self.chunk_error(rest.len(), ts, out);
            }
            return rest.len();
        };
        if line.trim_ascii().is_empty() {
            self.finish(ts, out);
        }
        used
    }

    fn chunk_error(&mut self, skip: usize, ts: u64, out: &mut Vec<ParseEvent>) -> usize {
        self.line_buf.clear();
        self.body.complete = false;
        self.finish(ts, out);
        self.desync(ParseError::InvalidChunk, out);
        skip
    }

    /// Collects a line across syscalls; returns it (without the newline) and the bytes used.
    fn take_line(&mut self, rest: &[u8]) -> Option<(Vec<u8>, usize)> {
        match rest.iter().position(|b| *b == b'\n') {
            Some(i) => {
                self.line_buf.extend_from_slice(&rest[..i]);
                let line = std::mem::take(&mut self.line_buf);
                Some((line, i + 1))
            }
            None => {
                let room = (MAX_LINE + 1).saturating_sub(self.line_buf.len());
                self.line_buf
                    .extend_from_slice(&rest[..rest.len().min(room)]);
                None
            }
        }
    }

    fn body_bytes(&mut self, bytes: &[u8]) {
        self.body.len += bytes.len() as u64;
        let room = self
            .limits
            .body_sample_bytes
            .saturating_sub(self.body.sample.len());
        self.body
            .sample
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn finish(&mut self, ts: u64, out: &mut Vec<ParseEvent>) {
        let body = std::mem::take(&mut self.body);
        out.push(ParseEvent::End {
            wire_len: self.head_len + body.len,
            body,
            end_ts: ts,
        });
        self.head_len = 0;
        self.state = State::Idle;
    }

    fn desync(&mut self, error: ParseError, out: &mut Vec<ParseEvent>) {
        self.state = State::Desync;
        self.line_buf.clear();
        out.push(ParseEvent::Error(error));
    }
}

fn trim_leading_newlines(data: &[u8]) -> &[u8] {
    let start = data
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(data.len());
    &data[start..]
}

/// Index just past the blank line ending a head (CRLF CRLF, or bare LF LF), searching from
/// `from`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\n' {
            match (buf.get(i + 1), buf.get(i + 2)) {
                (Some(b'\n'), _) => return Some(i + 2),
                (Some(b'\r'), Some(b'\n')) => return Some(i + 3),
                _ => {}
            }
        }
        i += 1;
    }
    None
}
