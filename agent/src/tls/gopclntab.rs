//! Finds Go functions by name in `.gopclntab`, the table the Go runtime itself uses for stack
//! traces. The linker keeps it when symbols are stripped (`-ldflags='-s -w'`), so it names the
//! functions of every Go binary. Layout of Go 1.18 and later (runtime/symtab.go, `pcHeader`):
//!
//! ```text
//! magic u32 | pad u8 u8 | minLC u8 | ptrSize u8 |
//! nfunc, nfiles, textStart, funcnameOffset, cuOffset, filetabOffset, pctabOffset, pclnOffset
//!   (ptrSize bytes each; offsets from the start of the table)
//! functab at pclnOffset: nfunc+1 pairs (entryOff u32, funcOff u32); entryOff from textStart,
//!   funcOff from the functab; the last entry only marks the end of the last function
//! _func at functab+funcOff: entryOff u32, nameOff i32 (into the funcname table)
//! ```

/// A function's code, as virtual addresses: `[entry, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    pub entry: u64,
    pub end: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PclntabError {
    #[error(".gopclntab magic {0:#x} is not Go 1.18 or later")]
    UnsupportedVersion(u32),
    #[error(".gopclntab is truncated or inconsistent ({0})")]
    Malformed(&'static str),
}

const MAGIC_GO_1_18: u32 = 0xffff_fff0;
const MAGIC_GO_1_20: u32 = 0xffff_fff1;

/// For each of `names`, the function's address range, or `None` when the binary lacks it.
pub fn find_functions(table: &[u8], names: &[&str]) -> Result<Vec<Option<Function>>, PclntabError> {
    let magic = u32_at(table, 0).ok_or(PclntabError::Malformed("header"))?;
    if magic != MAGIC_GO_1_18 && magic != MAGIC_GO_1_20 {
        return Err(PclntabError::UnsupportedVersion(magic));
    }
    let ptr_size = *table.get(7).ok_or(PclntabError::Malformed("header"))? as usize;
    if ptr_size != 8 && ptr_size != 4 {
        return Err(PclntabError::Malformed("pointer size"));
    }
    let word = |index: usize| -> Result<u64, PclntabError> {
        let at = 8 + index * ptr_size;
        let value = if ptr_size == 8 {
            table
                .get(at..at + 8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
        } else {
            u32_at(table, at).map(u64::from)
        };
        value.ok_or(PclntabError::Malformed("header"))
    };
    let nfunc = to_usize(word(0)?)?;
    let text_start = word(2)?;
    let funcname_offset = to_usize(word(3)?)?;
    let functab_offset = to_usize(word(7)?)?;
    let functab = table
        .get(functab_offset..)
        .ok_or(PclntabError::Malformed("functab offset"))?;
    let funcnames = table
        .get(funcname_offset..)
        .ok_or(PclntabError::Malformed("funcname offset"))?;

    let mut found = vec![None; names.len()];
    for i in 0..nfunc {
        let entry_off = u32_at(functab, 8 * i).ok_or(PclntabError::Malformed("functab"))?;
        let func_off = u32_at(functab, 8 * i + 4).ok_or(PclntabError::Malformed("functab"))?;
        let end_off = u32_at(functab, 8 * (i + 1)).ok_or(PclntabError::Malformed("functab"))?;
        let name_off = u32_at(functab, func_off as usize + 4)
            .ok_or(PclntabError::Malformed("_func record"))? as usize;
        let name = c_str(
            funcnames
                .get(name_off..)
                .ok_or(PclntabError::Malformed("name"))?,
        );
        if let Some(slot) = names.iter().position(|n| n.as_bytes() == name) {
            if end_off <= entry_off {
                return Err(PclntabError::Malformed("function end before its entry"));
            }
            found[slot] = Some(Function {
                entry: text_start + u64::from(entry_off),
                end: text_start + u64::from(end_off),
            });
            if found.iter().all(Option::is_some) {
                break;
            }
        }
    }
    Ok(found)
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    bytes
        .get(at..at.checked_add(4)?)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn to_usize(value: u64) -> Result<usize, PclntabError> {
    usize::try_from(value).map_err(|_| PclntabError::Malformed("offset too large"))
}

fn c_str(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a table with the given functions (name, entry offset), the way the Go linker lays
    /// it out, ending at `end`.
    fn table(functions: &[(&str, u32)], end: u32, text_start: u64) -> Vec<u8> {
        let header_len = 8 + 8 * 8;
        let mut names = Vec::new();
        let mut name_offsets = Vec::new();
        for (name, _) in functions {
            name_offsets.push(names.len() as u32);
            names.extend_from_slice(name.as_bytes());
            names.push(0);
        }
        let funcname_offset = header_len as u64;
        let functab_offset = funcname_offset + names.len() as u64;
        let n = functions.len();
        let functab_len = 8 * (n + 1);
        let mut functab = Vec::new();
        let mut records = Vec::new();
        for (i, (_, entry)) in functions.iter().enumerate() {
            functab.extend_from_slice(&entry.to_le_bytes());
            functab.extend_from_slice(&((functab_len + records.len()) as u32).to_le_bytes());
            records.extend_from_slice(&entry.to_le_bytes());
            records.extend_from_slice(&name_offsets[i].to_le_bytes());
        }
        functab.extend_from_slice(&end.to_le_bytes());
        functab.extend_from_slice(&0u32.to_le_bytes());
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC_GO_1_20.to_le_bytes());
        out.extend_from_slice(&[0, 0, 1, 8]);
        for value in [
            n as u64,
            0,
            text_start,
            funcname_offset,
            0,
            0,
            0,
            functab_offset,
        ] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(&names);
        out.extend_from_slice(&functab);
        out.extend_from_slice(&records);
        out
    }

    #[test]
    fn finds_functions_and_their_ends() {
        let t = table(
            &[
                ("main.main", 0x0),
                ("crypto/tls.(*Conn).Write", 0x100),
                ("crypto/tls.(*Conn).Read", 0x180),
            ],
            0x200,
            0x401000,
        );
        let found = find_functions(
            &t,
            &[
                "crypto/tls.(*Conn).Read",
                "crypto/tls.(*Conn).Write",
                "absent",
            ],
        )
        .unwrap();
        assert_eq!(
            found,
            [
                Some(Function {
                    entry: 0x401180,
                    end: 0x401200
                }),
                Some(Function {
                    entry: 0x401100,
                    end: 0x401180
                }),
                None
            ]
        );
    }

    #[test]
    fn old_or_broken_tables_are_errors() {
        let mut t = table(&[("a", 0)], 4, 0);
        t[0..4].copy_from_slice(&0xffff_fffau32.to_le_bytes());
        assert_eq!(
            find_functions(&t, &["a"]),
            Err(PclntabError::UnsupportedVersion(0xffff_fffa))
        );
        let t = table(&[("a", 0), ("b", 8)], 16, 0);
        for cut in 0..t.len() {
            // Never panics, whatever the length.
            let _ = find_functions(&t[..cut], &["b"]);
        }
    }
}
