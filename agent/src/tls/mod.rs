//! TLS plaintext capture, userspace side: which files hold TLS code (`elf`, with `gopclntab`
//! and `goret` for Go), which files each process maps (`procmaps`), the thread that attaches
//! the uprobes (`attacher`), and the coverage report of who is captured and why not
//! (`coverage`, `report`). The kernel side is `agent-ebpf/src/probes/tls.rs`.

pub mod attacher;
pub mod coverage;
pub mod elf;
pub mod exec_hold;
pub mod gopclntab;
pub mod goret;
pub mod procmaps;
pub mod report;

pub use attacher::{AttachConfig, Attacher, Request, TlsStatuses};
pub use coverage::TlsObservation;
