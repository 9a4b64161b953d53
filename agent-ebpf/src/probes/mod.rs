//! The hooks. One thin `#[tracepoint]` wrapper per hook in `syscalls.rs` and `process.rs`,
//! calling a `try_*` function that returns `Result`; the TLS uprobes in `tls.rs`.

mod args;
mod data;
pub mod process;
pub mod syscalls;
pub mod tls;
