//! Sightline: an eBPF agent that captures the API calls of every process on a Linux host and
//! turns them into observability and security data.
//!
//! Data flows one way: `probes` (kernel programs) -> `capture` (ring buffer, decoding) ->
//! `conn` (connections, HTTP parsing via `protocol`, naming via `identity`) -> `sink`.
//! `pipeline` wires the stages; `cli` and `config` say how; `health` answers probes.

pub mod call;
pub mod capture;
pub mod cli;
pub mod config;
pub mod conn;
pub mod credentials;
pub mod findings;
pub mod health;
pub mod identity;
pub mod inventory;
pub mod pipeline;
pub mod priority;
pub mod probes;
pub mod proc_root;
pub mod protocol;
pub mod sink;
pub mod source_error;
pub mod stats;
pub mod store;
#[cfg(test)]
mod test_support;
pub mod tls;
