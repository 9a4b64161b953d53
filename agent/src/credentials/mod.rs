//! Credentials, before the inventory sees the call: how each request authenticates
//! (`auth`: scheme, place, keyed fingerprint; `jwt` decodes tokens, `credential_cache` keeps a
//! token's classification so a token seen in call after call costs one HMAC), and the removal
//! of every secret (`redact`) before any later stage, sink, log line or database row can see
//! it. `fingerprint` holds the key.

pub mod auth;
pub mod credential_cache;
pub mod fingerprint;
pub mod jwt;
pub mod redact;
pub mod stage;
