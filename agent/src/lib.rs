//! Sightline: an eBPF agent that captures the API calls of every process on a Linux host and
//! turns them into observability and security data.
//!
//! Data flows one way (docs/architecture.md draws it):
//! `probes` (kernel programs, loaded per feature) -> `capture` (ring buffer, decoding) ->
//! `conn` (connections, one feed per protocol over `protocol`'s parsers, `tls` for the library
//! probes) -> `identity` (both ends named) -> `credentials` (authentication classified, secrets
//! stripped) -> `inventory` (routes, endpoints, spec classes) -> `findings` (rules) -> `store`
//! (SQLite) and `sink` (terminal, JSON lines, OTLP), with `credentials` sealing the call last.
//! `call` is the model every stage reads and fills; it imports no stage. `pipeline` wires the
//! stages; `cli` and `config` say how; `health` answers probes. agent/tests/layers.rs checks
//! that each module imports only the layers below it.

pub mod allocator;
pub mod call;
pub mod capture;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod credentials;
pub mod findings;
pub mod gate;
pub mod health;
pub mod identity;
pub mod inventory;
pub mod pipeline;
pub mod priority;
pub mod probes;
pub mod proc_root;
pub mod protocol;
pub mod record;
pub mod sink;
pub mod source_error;
pub mod stats;
pub mod store;
#[cfg(test)]
mod test_support;
pub mod tls;
