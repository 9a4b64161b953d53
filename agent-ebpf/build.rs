//! Rebuild the eBPF object when bpf-linker changes: building it has an undeclared dependency on
//! that binary (cargo cannot express it), so its modification time is used as the cache key.
fn main() {
    if let Ok(bpf_linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", bpf_linker.display());
    }
}
