//! HTTP/1.x: `head` parses request and status lines with their headers (httparse), `message`
//! frames one direction of a connection into messages (Content-Length, chunked, until close,
//! gaps left by the capture limit), `exchange` pairs requests with responses (keep-alive,
//! pipelining, HEAD/1xx/204/304, upgrades).

pub mod exchange;
pub mod head;
pub mod message;

pub use exchange::{Exchange, Http1Connection};
pub use head::{Header, RequestHead, ResponseHead};
pub use message::{Limits, MessageKind, ParseError};

#[cfg(test)]
mod tests;
