//! Security analysis of calls after the inventory counted them: sensitive data in bodies
//! (`sensitive`), the rules (`rules/`), and the findings they raise (`model`, `table`, `stage`,
//! `report` for `sightline findings`), and each endpoint's risk score from its statistics and
//! findings (`risk`). `config` is the `[findings]` config section. How each
//! call authenticates, and the removal of its secrets, is `crate::credentials`.

pub mod config;
pub mod model;
pub mod report;
pub mod risk;
pub mod rules;
pub mod sensitive;
pub mod series;
pub mod stage;
pub mod table;

/// Credential classification and redaction, in their own stage below the inventory.
pub use crate::credentials::{auth, credential_cache, fingerprint, jwt, redact};
