//! Kernel refusals simulated on request. The degraded paths (a program an older kernel
//! refuses, a kernel without `bpf_loop`) must be tested on kernels that accept everything: the
//! integration tests set these variables, and so can anyone checking that a deployment's
//! alerting notices a feature going off. Read once, at start.

/// Comma-separated program names that the loader treats as refused by the verifier.
pub const REFUSE_ENV: &str = "SIGHTLINE_SIMULATE_REFUSED";
/// Set (to anything): the loader acts as on a kernel before 5.17, without `bpf_loop`.
pub const NO_BPF_LOOP_ENV: &str = "SIGHTLINE_SIMULATE_NO_BPF_LOOP";

/// The reason given for a simulated refusal.
pub fn refusal(program: &str) -> Option<String> {
    let names = std::env::var(REFUSE_ENV).ok()?;
    names
        .split(',')
        .any(|name| name.trim() == program)
        .then(|| format!("refused on request (${REFUSE_ENV})"))
}

pub fn no_bpf_loop() -> bool {
    std::env::var_os(NO_BPF_LOOP_ENV).is_some()
}
