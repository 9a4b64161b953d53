//! Byte offsets of the kernel struct fields the probes follow, read from the running kernel's
//! BTF. Fields inside anonymous structs and unions (as in `struct sock_common`) are found by
//! descending into them, as CO-RE relocations would.

use agent_common::config::{FILE_REFS_COUNT, FILE_REFS_COUNT_MINUS_ONE, KernelOffsets};
use btf_rs::{Btf, Type};

use super::ProbeError;

/// Resolves every offset in [`KernelOffsets`] from the BTF file at `path`.
pub fn from_btf_file(path: &str) -> Result<KernelOffsets, ProbeError> {
    let btf = Btf::from_file(path).map_err(|e| ProbeError::Btf {
        path: path.to_string(),
        reason: e.to_string(),
    })?;
    let lookup = Lookup { btf: &btf, path };
    let sk_common = lookup.field("sock", "__sk_common")?;
    let sk = |field: &str| -> Result<u32, ProbeError> {
        Ok(sk_common + lookup.field("sock_common", field)?)
    };
    let (file_refs, file_refs_kind) = file_refs(&lookup)?;
    Ok(KernelOffsets {
        task_files: lookup.field("task_struct", "files")?,
        files_fdt: lookup.field("files_struct", "fdt")?,
        fdtable_max_fds: lookup.field("fdtable", "max_fds")?,
        fdtable_fd: lookup.field("fdtable", "fd")?,
        file_inode: lookup.field("file", "f_inode")?,
        file_private_data: lookup.field("file", "private_data")?,
        inode_mode: lookup.field("inode", "i_mode")?,
        socket_type: lookup.field("socket", "type")?,
        socket_sk: lookup.field("socket", "sk")?,
        sk_daddr: sk("skc_daddr")?,
        sk_rcv_saddr: sk("skc_rcv_saddr")?,
        sk_dport: sk("skc_dport")?,
        sk_num: sk("skc_num")?,
        sk_family: sk("skc_family")?,
        sk_v6_daddr: sk("skc_v6_daddr")?,
        sk_v6_rcv_saddr: sk("skc_v6_rcv_saddr")?,
        task_mm: lookup.field("task_struct", "mm")?,
        mm_arg_start: lookup.field("mm_struct", "arg_start")?,
        mm_arg_end: lookup.field("mm_struct", "arg_end")?,
        file_refs,
        file_refs_kind,
    })
}

/// Where a `struct file` counts its references, and how: `f_ref` (Linux 6.13+, a `file_ref_t`
/// whose only member is the `atomic_long_t` holding the count minus one) or `f_count` (the
/// count itself).
fn file_refs(lookup: &Lookup<'_>) -> Result<(u32, u32), ProbeError> {
    match lookup.field("file", "f_ref") {
        Ok(offset) => Ok((offset, FILE_REFS_COUNT_MINUS_ONE)),
        Err(_) => Ok((lookup.field("file", "f_count")?, FILE_REFS_COUNT)),
    }
}

struct Lookup<'a> {
    btf: &'a Btf,
    path: &'a str,
}

impl Lookup<'_> {
    /// Byte offset of `field` in `struct name`.
    fn field(&self, name: &str, field: &str) -> Result<u32, ProbeError> {
        let types = self
            .btf
            .resolve_types_by_name(name)
            .map_err(|e| self.error(format!("struct {name}: {e}")))?;
        for ty in types {
            if let Type::Struct(s) = ty
                && let Some(bits) = self.find_member(&s, field, 0)
            {
                if bits % 8 != 0 {
                    return Err(self.error(format!("{name}.{field} is a bitfield")));
                }
                return Ok(bits / 8);
            }
        }
        Err(self.error(format!("struct {name} has no field {field}")))
    }

    /// Bit offset of `field` in `s`, looking through anonymous members.
    fn find_member(&self, s: &btf_rs::Struct, field: &str, base_bits: u32) -> Option<u32> {
        for member in &s.members {
            let name = self.btf.resolve_name(member).unwrap_or_default();
            let bits = base_bits + member.bit_offset();
            if name == field {
                return Some(bits);
            }
            if name.is_empty()
                && let Some(inner) = self.composite(member)
                && let Some(found) = self.find_member(&inner, field, bits)
            {
                return Some(found);
            }
        }
        None
    }

    /// The struct or union type of an anonymous member, through typedefs and qualifiers.
    fn composite(&self, member: &btf_rs::Member) -> Option<btf_rs::Struct> {
        let mut ty = self.btf.resolve_chained_type(member).ok()?;
        for _ in 0..8 {
            match ty {
                Type::Struct(s) | Type::Union(s) => return Some(s),
                Type::Typedef(_) | Type::Const(_) | Type::Volatile(_) | Type::TypeTag(_) => {
                    let next = ty.as_btf_type()?;
                    ty = self.btf.resolve_chained_type(next).ok()?;
                }
                _ => return None,
            }
        }
        None
    }

    fn error(&self, reason: String) -> ProbeError {
        ProbeError::Btf {
            path: self.path.to_string(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the real kernel's BTF where the machine has it: the offsets must be distinct and
    /// within the structs' sizes (a wrong descent would put two fields at one place).
    #[test]
    fn resolves_offsets_from_the_running_kernel() {
        let path = super::super::preflight::VMLINUX_BTF;
        assert!(
            std::path::Path::new(path).exists(),
            "{path} missing: the tests need a BTF kernel"
        );
        let off = from_btf_file(path).expect("offsets");
        // struct sock_common starts with skc_daddr then skc_rcv_saddr on every kernel.
        assert_eq!(off.sk_daddr, 0);
        assert_eq!(off.sk_rcv_saddr, 4);
        assert_eq!(off.sk_dport, 12);
        assert_eq!(off.sk_num, 14);
        assert_eq!(off.sk_family, 16);
        assert!(off.sk_v6_daddr > off.sk_family);
        assert_eq!(off.sk_v6_rcv_saddr, off.sk_v6_daddr + 16);
        assert!(off.task_files > 0 && off.file_inode > 0 && off.socket_sk > 0);
        assert_ne!(off.fdtable_max_fds, off.fdtable_fd);
        // Linux 6.13+ (this machine's 6.18) counts a file's references in `f_ref`.
        assert_eq!(off.file_refs_kind, FILE_REFS_COUNT_MINUS_ONE);
        assert!(![off.file_inode, off.file_private_data].contains(&off.file_refs));
    }
}
