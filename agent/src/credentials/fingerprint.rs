//! Keyed fingerprints of secrets: HMAC-SHA256 under a per-install key, so the same token is
//! recognised across calls, outputs and restarts without being stored, and a fingerprint seen
//! in an output cannot be checked against guessed tokens by anyone without the key.
//!
//! The key is 32 random bytes in a file created 0600 on first start (next to the inventory
//! database unless configured). When it cannot be read or created, a random key is used for
//! this run only (fingerprints then change at restart) and a warning says why.

use std::{io::Write, os::unix::fs::OpenOptionsExt, path::Path};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const KEY_LEN: usize = 32;

/// Hex characters kept of the HMAC: 64 bits tell tokens apart in any realistic set.
const FINGERPRINT_HEX: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading the fingerprint key {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the fingerprint key {path} holds {found} bytes; it must hold {KEY_LEN}")]
    Length { path: String, found: usize },
    #[error("creating the fingerprint key {path}: {source}")]
    Create {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no random bytes for the fingerprint key: {0}")]
    Random(String),
}

#[derive(Clone)]
pub struct Fingerprinter {
    key: [u8; KEY_LEN],
}

impl std::fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fingerprinter(key hidden)")
    }
}

impl Fingerprinter {
    pub fn with_key(key: [u8; KEY_LEN]) -> Self {
        Self { key }
    }

    /// A fingerprinter with a fresh random key (this run only).
    pub fn ephemeral() -> Result<Self, KeyError> {
        Ok(Self::with_key(random_key()?))
    }

    /// Reads the key at `path`, creating it (0600, and its directory) when missing.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let shown = || path.display().to_string();
        match std::fs::read(path) {
            Ok(bytes) => {
                let key: [u8; KEY_LEN] =
                    bytes.as_slice().try_into().map_err(|_| KeyError::Length {
                        path: shown(),
                        found: bytes.len(),
                    })?;
                Ok(Self::with_key(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = random_key()?;
                let create = |source| KeyError::Create {
                    path: shown(),
                    source,
                };
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(create)?;
                }
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(create)?;
                file.write_all(&key).map_err(create)?;
                file.sync_all().map_err(create)?;
                Ok(Self::with_key(key))
            }
            Err(source) => Err(KeyError::Read {
                path: shown(),
                source,
            }),
        }
    }

    /// The fingerprint of `secret`: 16 hex characters.
    pub fn fingerprint(&self, secret: &[u8]) -> String {
        // HMAC takes keys of any length: this cannot fail.
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key) else {
            return String::new();
        };
        mac.update(secret);
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(FINGERPRINT_HEX);
        for byte in digest.iter().take(FINGERPRINT_HEX / 2) {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }
}

fn random_key() -> Result<[u8; KEY_LEN], KeyError> {
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_keyed_stable_and_short() {
        let a = Fingerprinter::with_key([1; 32]);
        let b = Fingerprinter::with_key([2; 32]);
        let fp = a.fingerprint(b"s3cr3t-token");
        assert_eq!(fp.len(), 16);
        assert!(fp.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(fp, a.fingerprint(b"s3cr3t-token"));
        assert_ne!(fp, a.fingerprint(b"s3cr3t-tokem"));
        assert_ne!(fp, b.fingerprint(b"s3cr3t-token"));
    }

    #[test]
    fn the_key_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("sightline-fp-{}", std::process::id()));
        let path = dir.join("sub/fingerprint.key");
        let first = Fingerprinter::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Fingerprinter::load_or_create(&path).unwrap();
        assert_eq!(first.fingerprint(b"x"), again.fingerprint(b"x"));
        std::fs::write(&path, b"short").unwrap();
        let error = Fingerprinter::load_or_create(&path)
            .unwrap_err()
            .to_string();
        assert!(error.contains("holds 5 bytes"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
