//! Connections: the table of live TCP connections per socket with their role and HTTP state
//! (`table`), which socket each process's descriptor names (`descriptors`), the protocol each
//! carries (`detect`), the tracker that feeds it events (`tracker`) to one feed per protocol
//! (`feed`: TLS records, HTTP/1, HTTP/2), and the one assembly of a finished exchange into an
//! [`crate::call::ApiCall`] (`assemble`).

pub mod assemble;
pub mod descriptors;
pub mod detect;
pub mod feed;
pub mod table;
pub mod tracker;

pub use tracker::{Tracker, TrackerLimits};
