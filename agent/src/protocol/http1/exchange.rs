//! Pairs the requests of one connection with their responses, in order (HTTP/1 answers
//! pipelined requests in the order they were sent).

use std::collections::VecDeque;

use super::{
    head::{Head, Headers as _, RequestHead, ResponseHead},
    message::{Body, Framing, Limits, MessageKind, MessageParser, ParseError, ParseEvent},
};

/// Most requests waiting for their responses on one connection (pipelining depth); past it the
/// oldest is reported without a response.
const MAX_PENDING: usize = 64;

/// A request with its response, as one side of the connection saw them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub request: RequestHead,
    pub request_body: Body,
    pub request_wire_len: u64,
    pub response: Option<ResponseHead>,
    pub response_body: Body,
    pub response_wire_len: u64,
    /// Monotonic ns of the first request byte's syscall.
    pub start_ts: u64,
    /// Monotonic ns of the last response byte's syscall (or of the last known activity).
    pub end_ts: u64,
    /// Why there is no (complete) response, if so.
    pub error: Option<&'static str>,
}

struct Pending {
    /// `None` for a request that was there but could not be parsed: its response is dropped.
    head: Option<RequestHead>,
    start_ts: u64,
    end_ts: u64,
    body: Option<Body>,
    wire_len: u64,
}

struct InFlight {
    request: Option<Pending>,
    head: ResponseHead,
}

/// Problems worth counting, reported to the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Issue {
    Parse(MessageKind, ParseError),
    UnpairedResponse,
    /// More requests waited for responses than the cap: the oldest was forgotten.
    TooManyPending,
}

/// HTTP/1 state of one connection, from one process's point of view.
pub struct Http1Connection {
    requests: MessageParser,
    responses: MessageParser,
    pending: VecDeque<Pending>,
    in_flight: Option<InFlight>,
    /// After 101 Switching Protocols or a CONNECT tunnel the bytes are no longer HTTP/1.
    upgraded: bool,
    events: Vec<ParseEvent>,
}

impl Http1Connection {
    pub fn new(limits: Limits) -> Self {
        Self {
            requests: MessageParser::new(MessageKind::Request, limits),
            responses: MessageParser::new(MessageKind::Response, limits),
            pending: VecDeque::new(),
            in_flight: None,
            upgraded: false,
            events: Vec::new(),
        }
    }

    /// Requests seen and not yet answered (those whose answer is being read included).
    pub fn in_progress(&self) -> usize {
        self.pending.len() + usize::from(self.in_flight.is_some())
    }

    /// The bytes that followed the switching response (the next protocol's first bytes).
    pub fn take_switched_bytes(&mut self) -> Vec<u8> {
        self.responses.take_switched()
    }

    /// True once the connection switched to another protocol.
    pub fn is_upgraded(&self) -> bool {
        self.upgraded
    }

    /// Bytes of one syscall in the request direction (`missing` were moved but not captured).
    pub fn on_request_bytes(
        &mut self,
        data: &[u8],
        missing: usize,
        ts: u64,
        issues: &mut Vec<Issue>,
    ) {
        if self.upgraded {
            return;
        }
        let mut events = std::mem::take(&mut self.events);
        self.requests
            .feed(data, ts, &mut request_framing, &mut events);
        self.requests.gap(missing, ts, &mut events);
        for event in events.drain(..) {
            match event {
                ParseEvent::Head {
                    head: Head::Request(head),
                    start_ts,
                } => self.pending.push_back(Pending {
                    head: Some(head),
                    start_ts,
                    end_ts: start_ts,
                    body: None,
                    wire_len: 0,
                }),
                ParseEvent::Head { .. } => {}
                ParseEvent::Lost => self.pending.push_back(Pending {
                    head: None,
                    start_ts: ts,
                    end_ts: ts,
                    body: Some(Body::default()),
                    wire_len: 0,
                }),
                ParseEvent::End {
                    body,
                    wire_len,
                    end_ts,
                } => {
                    if let Some(p) = self.pending.iter_mut().rev().find(|p| p.body.is_none()) {
                        p.body = Some(body);
                        p.wire_len = wire_len;
                        p.end_ts = end_ts;
                    }
                }
                ParseEvent::Error(e) => issues.push(Issue::Parse(MessageKind::Request, e)),
            }
        }
        while self.pending.len() > MAX_PENDING {
            self.pending.pop_front();
            issues.push(Issue::TooManyPending);
        }
        self.events = events;
    }

    /// Bytes of one syscall in the response direction.
    pub fn on_response_bytes(
        &mut self,
        data: &[u8],
        missing: usize,
        ts: u64,
        out: &mut Vec<Exchange>,
        issues: &mut Vec<Issue>,
    ) {
        if self.upgraded {
            return;
        }
        let mut events = std::mem::take(&mut self.events);
        {
            // The k-th final response head in these bytes answers the k-th waiting request.
            let pending = &self.pending;
            let mut k = 0usize;
            let mut framing = |head: &Head| -> Result<Framing, ParseError> {
                let Head::Response(response) = head else {
                    return Ok(Framing::NoBody);
                };
                let method = pending
                    .get(k)
                    .and_then(|p| p.head.as_ref())
                    .map(|h| h.method.as_str());
                if response.status >= 200 || response.status == 101 {
                    k += 1;
                }
                response_framing(method, response)
            };
            self.responses.feed(data, ts, &mut framing, &mut events);
            self.responses.gap(missing, ts, &mut events);
        }
        self.apply_response_events(&mut events, out, issues);
        self.events = events;
        if self.pending.is_empty() && self.in_flight.is_none() {
            // Answered: an idle keep-alive connection keeps no buffers (thousands may wait
            // idle; the next request allocates them again, a cost far below the call's).
            self.events = Vec::new();
            self.pending = VecDeque::new();
        }
    }

    /// The connection closed (or its process exited): ends what can be ended and reports
    /// requests that got no response.
    pub fn on_close(&mut self, ts: u64, out: &mut Vec<Exchange>, issues: &mut Vec<Issue>) {
        let mut events = std::mem::take(&mut self.events);
        self.requests.close(ts, &mut events);
        for event in events.drain(..) {
            match event {
                // A request the client never finished sending is not a call.
                ParseEvent::Error(ParseError::Truncated) => {
                    if self.pending.back().is_some_and(|p| p.body.is_none()) {
                        self.pending.pop_back();
                    }
                    issues.push(Issue::Parse(MessageKind::Request, ParseError::Truncated));
                }
                ParseEvent::Error(e) => issues.push(Issue::Parse(MessageKind::Request, e)),
                ParseEvent::End { .. } | ParseEvent::Head { .. } | ParseEvent::Lost => {}
            }
        }
        self.responses.close(ts, &mut events);
        self.apply_response_events(&mut events, out, issues);
        self.events = events;
        while let Some(p) = self.pending.pop_front() {
            if p.body.is_some()
                && let Some(exchange) = unanswered(p, "connection closed before a response")
            {
                out.push(exchange);
            }
        }
    }

    fn apply_response_events(
        &mut self,
        events: &mut Vec<ParseEvent>,
        out: &mut Vec<Exchange>,
        issues: &mut Vec<Issue>,
    ) {
        for event in events.drain(..) {
            match event {
                ParseEvent::Head {
                    head: Head::Response(head),
                    ..
                } => {
                    if (100..200).contains(&head.status) && head.status != 101 {
                        continue; // Interim response (100 Continue, 103 Early Hints).
                    }
                    let mut request = self.pending.pop_front();
                    // Answered before its body was all sent (the server did not wait for it):
                    // keep what the request parser has seen so far.
                    if let Some(r) = request.as_mut()
                        && r.body.is_none()
                        && self.pending.is_empty()
                    {
                        r.body = self.requests.partial_body();
                    }
                    if request.is_none() {
                        issues.push(Issue::UnpairedResponse);
                    }
                    let tunnel = head.status == 101
                        || (request
                            .as_ref()
                            .and_then(|r| r.head.as_ref())
                            .is_some_and(|h| h.method == "CONNECT")
                            && head.status < 300);
                    self.in_flight = Some(InFlight { request, head });
                    if tunnel {
                        self.upgraded = true;
                    }
                }
                ParseEvent::Head { .. } => {}
                ParseEvent::End {
                    body,
                    wire_len,
                    end_ts,
                } => {
                    let Some(in_flight) = self.in_flight.take() else {
                        continue; // End of an interim response.
                    };
                    // No request (missed), or one we could not parse: nothing to pair with.
                    let Some(request) = in_flight.request else {
                        continue;
                    };
                    let Some(request_head) = request.head else {
                        continue;
                    };
                    out.push(Exchange {
                        request_body: request.body.unwrap_or_default(),
                        request: request_head,
                        request_wire_len: request.wire_len,
                        response: Some(in_flight.head),
                        response_body: body,
                        response_wire_len: wire_len,
                        start_ts: request.start_ts,
                        end_ts,
                        error: None,
                    });
                }
                // A response we could not parse answered the oldest waiting request.
                ParseEvent::Lost => {
                    self.pending.pop_front();
                }
                ParseEvent::Error(e) => issues.push(Issue::Parse(MessageKind::Response, e)),
            }
        }
        if self.pending.len() > MAX_PENDING
            && let Some(p) = self.pending.pop_front()
            && let Some(exchange) = unanswered(p, "too many requests waiting for responses")
        {
            out.push(exchange);
        }
    }
}

fn unanswered(p: Pending, error: &'static str) -> Option<Exchange> {
    Some(Exchange {
        request_body: p.body.unwrap_or_default(),
        request: p.head?,
        request_wire_len: p.wire_len,
        response: None,
        response_body: Body::default(),
        response_wire_len: 0,
        start_ts: p.start_ts,
        end_ts: p.end_ts,
        error: Some(error),
    })
}

/// Request bodies are delimited by their own headers; without them there is none.
fn request_framing(head: &Head) -> Result<Framing, ParseError> {
    let Head::Request(request) = head else {
        return Ok(Framing::NoBody);
    };
    if request.is_chunked() {
        return Ok(Framing::Chunked);
    }
    match request.content_length() {
        Ok(Some(n)) => Ok(Framing::Length(n)),
        Ok(None) => Ok(Framing::NoBody),
        Err(reason) => Err(ParseError::InvalidHead(reason)),
    }
}

/// RFC 9112 6.3: responses to HEAD, 1xx, 204 and 304 have no body, nor do 2xx answers to
/// CONNECT; then chunked, then Content-Length, else the body runs until the connection closes.
pub fn response_framing(
    request_method: Option<&str>,
    response: &ResponseHead,
) -> Result<Framing, ParseError> {
    let status = response.status;
    if status == 101 {
        return Ok(Framing::Switched);
    }
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Framing::NoBody);
    }
    match request_method {
        Some("HEAD") => return Ok(Framing::NoBody),
        Some("CONNECT") if (200..300).contains(&status) => return Ok(Framing::Switched),
        _ => {}
    }
    if response.is_chunked() {
        return Ok(Framing::Chunked);
    }
    match response.content_length() {
        Ok(Some(n)) => Ok(Framing::Length(n)),
        Ok(None) => Ok(Framing::UntilClose),
        Err(reason) => Err(ParseError::InvalidHead(reason)),
    }
}
