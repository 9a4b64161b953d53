//! Connections: the table of live TCP connections per (process, descriptor) with their role and
//! HTTP state (`table`), the protocol each carries (`detect`), the tracker that feeds it events
//! and produces calls (`tracker`), and the assembly of an exchange into an
//! [`crate::call::ApiCall`] (`assemble`).

pub mod assemble;
pub mod detect;
pub mod table;
pub mod tracker;

pub use tracker::{Tracker, TrackerLimits};
