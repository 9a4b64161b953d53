//! The return instructions of a Go function, found by disassembly (iced-x86): Go code gets a
//! plain uprobe on each instead of a uretprobe, because the Go runtime copies goroutine stacks
//! and a uretprobe's rewritten return address would then point nowhere.

use iced_x86::{Decoder, DecoderOptions, Mnemonic};

/// Virtual addresses of the RET instructions in `code`, which starts at `address`.
pub fn return_addresses(code: &[u8], address: u64) -> Vec<u64> {
    Decoder::with_ip(64, code, address, DecoderOptions::NONE)
        .into_iter()
        .filter(|instruction| instruction.mnemonic() == Mnemonic::Ret)
        .map(|instruction| instruction.ip())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_ret_and_not_ret_bytes_inside_other_instructions() {
        let code = [
            0x48, 0x89, 0xc3, // mov rbx, rax
            0xb8, 0xc3, 0x00, 0x00, 0x00, // mov eax, 0xc3 (a 0xc3 byte that is no RET)
            0x74, 0x01, // je +1
            0xc3, // ret
            0x48, 0x83, 0xc4, 0x10, // add rsp, 16
            0xc3, // ret
        ];
        assert_eq!(return_addresses(&code, 0x1000), [0x100a, 0x100f]);
    }
}
