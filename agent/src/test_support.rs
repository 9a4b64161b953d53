//! Helpers shared by unit tests.

/// A deterministic xorshift64 generator: random-looking inputs that are the same every run.
pub fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}
