//! Security analysis of calls: how each one authenticates (`auth`, `jwt`, `fingerprint`,
//! `credential_cache`),
//! the removal of every secret before any sink sees it (`redact`), sensitive data in bodies
//! (`sensitive`), the rules (`rules/`), and the findings they raise (`model`, `table`, `stage`,
//! `report` for `sightline findings`). `config` is the `[findings]` config section.

pub mod auth;
pub mod config;
pub mod credential_cache;
pub mod fingerprint;
pub mod jwt;
pub mod model;
pub mod redact;
pub mod report;
pub mod rules;
pub mod sensitive;
pub mod stage;
pub mod table;
