//! Security analysis of calls. For now, redaction: secrets never leave the agent in clear.

pub mod redact;
