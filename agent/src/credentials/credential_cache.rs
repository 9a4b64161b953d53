//! Fingerprints and decoded JWTs of recently seen credential values. A client sends the same
//! token with call after call, and the HMAC and the JWT decoding are most of the cost of
//! classifying a request: both are done once per distinct value. The cache lives in memory
//! only, holds values up to [`MAX_VALUE_LEN`] bytes and at most [`MAX_ENTRIES`] of them
//! (emptied when full).

use std::{collections::HashMap, sync::Arc};

use super::{
    fingerprint::Fingerprinter,
    jwt::{self, JwtSummary},
};

const MAX_ENTRIES: usize = 4096;
const MAX_VALUE_LEN: usize = 2048;

/// A value's fingerprint and JWT claims, shared with the calls that carried it.
pub type Known = (Arc<str>, Option<Arc<JwtSummary>>);

#[derive(Debug)]
pub struct CredentialCache {
    fingerprints: Fingerprinter,
    entries: HashMap<Box<str>, Known>,
}

impl CredentialCache {
    pub fn new(fingerprints: Fingerprinter) -> Self {
        Self {
            fingerprints,
            entries: HashMap::new(),
        }
    }

    /// The value's fingerprint, and its claims when it is a JWT.
    pub fn get(&mut self, value: &str) -> Known {
        if let Some(known) = self.entries.get(value) {
            return known.clone();
        }
        let fresh: Known = (
            self.fingerprints.fingerprint(value.as_bytes()).into(),
            jwt::decode(value, &self.fingerprints).map(Arc::new),
        );
        if value.len() <= MAX_VALUE_LEN {
            if self.entries.len() >= MAX_ENTRIES {
                self.entries.clear();
            }
            self.entries.insert(value.into(), fresh.clone());
        }
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_answers_equal_fresh_ones_and_the_cache_is_bounded() {
        let fp = Fingerprinter::with_key([9; 32]);
        let mut cache = CredentialCache::new(fp.clone());
        let token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.";
        let first = cache.get(token);
        assert_eq!(first, cache.get(token));
        assert_eq!(&*first.0, fp.fingerprint(token.as_bytes()));
        assert_eq!(first.1.as_ref().unwrap().alg, "none");
        for i in 0..MAX_ENTRIES + 10 {
            cache.get(&format!("key-{i}"));
        }
        assert!(cache.entries.len() <= MAX_ENTRIES);
        assert_eq!(cache.get(&"x".repeat(MAX_VALUE_LEN + 1)).1, None);
    }
}
