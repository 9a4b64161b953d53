//! From the kernel's ring buffer to typed events: `decode` is the only place that reads the raw
//! layouts; `reader` drains the ring buffer without ever blocking the kernel side.

pub mod clock;
pub mod decode;
pub mod dump;
pub mod event;
pub mod reader;

pub use event::{CaptureEvent, ConnKind, DataChunk, Task};
