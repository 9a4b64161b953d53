//! The hooks. One thin `#[tracepoint]` wrapper per hook in `syscalls.rs`, `process.rs` and `cgroup.rs`,
//! calling a `try_*` function that returns `Result`; the TLS uprobes in `tls.rs` (C libraries) and `go_tls.rs`; the
//! benchmark's empty twins of all of them in `empty.rs`.

mod args;
pub mod cgroup;
mod data;
pub mod empty;
pub mod go_tls;
pub mod process;
pub mod syscalls;
pub mod tls;
