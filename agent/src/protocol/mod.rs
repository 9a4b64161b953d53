//! Application protocols on a connection's byte streams. `detect` says whether bytes start an
//! HTTP/1 message; `http1` turns the two directions into request/response exchanges;
//! `tls_hello` reads the server name from a TLS ClientHello.

pub mod detect;
pub mod grpc;
pub mod http1;
pub mod http2;
pub mod tls_handshake;
pub mod tls_hello;
