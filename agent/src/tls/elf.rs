//! What an ELF file (a shared library or an executable) offers the TLS uprobes: its TLS
//! functions found by symbol (OpenSSL, BoringSSL, GnuTLS, shared or linked in), or Go's
//! crypto/tls found through `.gopclntab` (present even in stripped Go binaries), turned into
//! file offsets to attach to.

use std::path::Path;

use agent_common::event::TlsLibrary;
use object::{Architecture, Object, ObjectSection, ObjectSymbol};

use super::{gopclntab, goret};

/// One uprobe to attach: the kernel program, the file offset of the instruction, and the
/// cookie the program receives (the `TlsLibrary` id; for BIO probes, the offset of
/// `bio_st.method` in the next byte).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachPoint {
    pub program: &'static str,
    pub offset: u64,
    pub cookie: u64,
}

/// A TLS implementation found in a file that the probes cannot see into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unsupported {
    /// Java's TLS (JSSE) is Java code run by the JVM: there is no native function to probe.
    Java,
    /// rustls is Rust code inlined into the executable, without stable symbols.
    Rustls,
    /// A Go binary older than Go 1.18 (no register ABI or an older .gopclntab layout).
    GoVersion,
    /// Go's crypto/tls on a CPU architecture the Go probes do not support yet.
    GoArchitecture,
}

impl Unsupported {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Java => {
                "Java's own TLS (JSSE) runs inside the JVM: there is no native TLS function to probe"
            }
            Self::Rustls => "rustls is compiled into the executable without stable symbols",
            Self::GoVersion => "Go binary older than Go 1.18: not supported",
            Self::GoArchitecture => "Go crypto/tls is only probed on x86_64",
        }
    }
}

/// What a file holds, as far as TLS goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inspection {
    /// TLS functions to probe: `points` for every process that maps the file; `bio_points`
    /// (libcrypto's BIO functions) only in processes that use SSL BIOs, because they fire on
    /// every BIO call of every OpenSSL program and each uprobe hit costs a trap.
    Tls {
        library: TlsLibrary,
        points: Vec<AttachPoint>,
        bio_points: Vec<AttachPoint>,
    },
    /// A program or library that calls `BIO_f_ssl` from a shared libssl: its process needs the
    /// BIO probes.
    SslBioUser,
    /// A TLS implementation that cannot be probed.
    Unsupported(Unsupported),
    /// Nothing TLS.
    None,
}

/// OpenSSL/BoringSSL functions and the program probing their entry; each also gets the
/// `tls_return` uretprobe.
const SSL_FUNCTIONS: &[(&str, &str)] = &[
    ("SSL_write", "tls_write_enter"),
    ("SSL_read", "tls_read_enter"),
    ("SSL_write_ex", "tls_write_ex_enter"),
    ("SSL_read_ex", "tls_read_ex_enter"),
];

/// Handshake functions: an entry probe only, which ties the TLS object to its socket in
/// memory-BIO programs (see the kernel side's `tls_handshake_enter`).
const SSL_HANDSHAKE_FUNCTIONS: &[&str] = &["SSL_do_handshake", "SSL_connect", "SSL_accept"];
const SSL_HANDSHAKE_PROGRAM: &str = "tls_handshake_enter";

/// libcrypto's BIO functions, probed for SSL BIOs (`BIO_f_ssl`): OpenSSL's SSL BIO calls the
/// TLS layer through internal functions, so programs built on it (openssl s_server -www, for
/// one) never call SSL_read or SSL_write.
const BIO_FUNCTIONS: &[(&str, &str)] = &[
    ("BIO_write", "bio_write_enter"),
    ("BIO_read", "bio_read_enter"),
    ("BIO_write_ex", "bio_write_ex_enter"),
    ("BIO_read_ex", "bio_read_ex_enter"),
];

const GNUTLS_FUNCTIONS: &[(&str, &str)] = &[
    ("gnutls_record_send", "tls_write_enter"),
    ("gnutls_record_recv", "tls_read_enter"),
];

/// The uretprobe shared by every C function.
pub const C_RETURN_PROGRAM: &str = "tls_return";

/// Go's functions, their entry programs, and whether every RET gets `go_tls_return` (Read
/// only: a write is reported at entry, see the kernel side's `go_enter`).
const GO_FUNCTIONS: &[(&str, &str, bool)] = &[
    ("crypto/tls.(*Conn).Write", "go_tls_write_enter", false),
    ("crypto/tls.(*Conn).Read", "go_tls_read_enter", true),
];
pub const GO_RETURN_PROGRAM: &str = "go_tls_return";

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a readable ELF file: {reason}")]
    Elf { path: String, reason: String },
    #[error("{path}: {reason}")]
    Go { path: String, reason: String },
}

/// Inspects the file at `path` (mapped, not read into memory: executables can be large).
pub fn inspect_file(path: &Path) -> Result<Inspection, InspectError> {
    let file = std::fs::File::open(path).map_err(|source| InspectError::Read {
        path: path.display().to_string(),
        source,
    })?;
    inspect_opened(&file, path)
}

/// Inspects a file already open; `shown` is its path as the process that maps it sees it (for
/// messages and the Java check).
pub fn inspect_opened(file: &std::fs::File, shown: &Path) -> Result<Inspection, InspectError> {
    #[allow(unsafe_code)]
    // Safety: the mapping is read-only and private; a file truncated underneath would fault,
    // which is why only files that processes currently map (and so keep) are inspected.
    let map = unsafe { memmap2::Mmap::map(file) }.map_err(|source| InspectError::Read {
        path: shown.display().to_string(),
        source,
    })?;
    inspect(&map, shown)
}

/// Inspects the bytes of an ELF file (`path` is for messages and the Java check).
pub fn inspect(data: &[u8], path: &Path) -> Result<Inspection, InspectError> {
    if path
        .file_name()
        .is_some_and(|name| name.to_string_lossy().starts_with("libjvm.so"))
    {
        return Ok(Inspection::Unsupported(Unsupported::Java));
    }
    let elf = object::File::parse(data).map_err(|e| InspectError::Elf {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    if let Some(pclntab) = elf.section_by_name(".gopclntab") {
        return inspect_go(&elf, &pclntab, path);
    }
    let SymbolScan {
        found,
        boringssl,
        openssl_3,
        openssl_crypto,
        rustls,
        imports_ssl_bio,
    } = scan_symbols(&elf);
    let has = |name: &str| found.iter().any(|(n, _)| *n == name);
    let bio = openssl_crypto && has("BIO_read") && has("BIO_write");
    let (library, tables): (TlsLibrary, &[&[(&str, &str)]]) = if has("gnutls_record_send") {
        (TlsLibrary::GnuTls, &[GNUTLS_FUNCTIONS])
    } else if has("SSL_read") || has("SSL_write") || bio {
        let library = if boringssl {
            TlsLibrary::BoringSsl
        } else {
            TlsLibrary::OpenSsl
        };
        (library, &[SSL_FUNCTIONS, BIO_FUNCTIONS])
    } else if rustls {
        return Ok(Inspection::Unsupported(Unsupported::Rustls));
    } else if imports_ssl_bio {
        return Ok(Inspection::SslBioUser);
    } else {
        return Ok(Inspection::None);
    };
    let method_offset: u64 = if openssl_3 { 8 } else { 0 };
    let mut points = Vec::new();
    let mut bio_points = Vec::new();
    for (function, program) in tables.iter().flat_map(|t| t.iter()) {
        let is_bio = function.starts_with("BIO_");
        if is_bio && !bio {
            continue;
        }
        let Some((_, address)) = found.iter().find(|(n, _)| n == function) else {
            continue;
        };
        let Some(offset) = file_offset(&elf, *address) else {
            continue;
        };
        let cookie = library as u64 | if is_bio { method_offset << 8 } else { 0 };
        let list = if is_bio { &mut bio_points } else { &mut points };
        list.push(AttachPoint {
            program,
            offset,
            cookie,
        });
        list.push(AttachPoint {
            program: C_RETURN_PROGRAM,
            offset,
            cookie,
        });
    }
    if library != TlsLibrary::GnuTls {
        for function in SSL_HANDSHAKE_FUNCTIONS {
            if let Some((_, address)) = found.iter().find(|(n, _)| n == function)
                && let Some(offset) = file_offset(&elf, *address)
            {
                points.push(AttachPoint {
                    program: SSL_HANDSHAKE_PROGRAM,
                    offset,
                    cookie: library as u64,
                });
            }
        }
    }
    Ok(if points.is_empty() && bio_points.is_empty() {
        Inspection::None
    } else {
        Inspection::Tls {
            library,
            points,
            bio_points,
        }
    })
}

/// What the symbol tables of a C library or program tell: the TLS functions it defines (with
/// their addresses) and the marks of its flavour.
#[derive(Default)]
struct SymbolScan<'data> {
    found: Vec<(&'data str, u64)>,
    boringssl: bool,
    /// Defined by OpenSSL 3's libcrypto, where `struct bio_st` starts with `libctx`.
    openssl_3: bool,
    openssl_crypto: bool,
    rustls: bool,
    imports_ssl_bio: bool,
}

fn scan_symbols<'data>(elf: &object::File<'data>) -> SymbolScan<'data> {
    let mut scan = SymbolScan::default();
    for symbol in elf.dynamic_symbols().chain(elf.symbols()) {
        let Ok(name) = symbol.name() else { continue };
        if name == "BIO_f_ssl" && symbol.is_undefined() {
            scan.imports_ssl_bio = true;
        }
        if name.starts_with("BORINGSSL_") {
            scan.boringssl = true;
        }
        if name == "OSSL_LIB_CTX_new" && symbol.is_definition() {
            scan.openssl_3 = true;
        }
        if name == "CRYPTO_malloc" && symbol.is_definition() {
            scan.openssl_crypto = true;
        }
        if !scan.rustls && name.contains("rustls") {
            scan.rustls = true;
        }
        if !symbol.is_definition() || symbol.address() == 0 {
            continue;
        }
        let wanted = SSL_FUNCTIONS
            .iter()
            .chain(GNUTLS_FUNCTIONS)
            .chain(BIO_FUNCTIONS)
            .map(|(function, _)| function)
            .chain(SSL_HANDSHAKE_FUNCTIONS)
            .any(|function| *function == name);
        if wanted && !scan.found.iter().any(|(n, _)| *n == name) {
            scan.found.push((name, symbol.address()));
        }
    }
    scan
}

fn inspect_go(
    elf: &object::File<'_>,
    pclntab: &object::Section<'_, '_>,
    path: &Path,
) -> Result<Inspection, InspectError> {
    let go_error = |reason: String| InspectError::Go {
        path: path.display().to_string(),
        reason,
    };
    let table = pclntab
        .data()
        .map_err(|e| go_error(format!("reading .gopclntab: {e}")))?;
    let names: Vec<&str> = GO_FUNCTIONS.iter().map(|(name, _, _)| *name).collect();
    let functions = match gopclntab::find_functions(table, &names) {
        Ok(functions) => functions,
        Err(gopclntab::PclntabError::UnsupportedVersion(_)) => {
            return Ok(Inspection::Unsupported(Unsupported::GoVersion));
        }
        Err(e) => return Err(go_error(e.to_string())),
    };
    if functions.iter().all(Option::is_none) {
        return Ok(Inspection::None);
    }
    if elf.architecture() != Architecture::X86_64 {
        return Ok(Inspection::Unsupported(Unsupported::GoArchitecture));
    }
    let mut points = Vec::new();
    for ((_, program, probe_returns), function) in GO_FUNCTIONS.iter().zip(functions) {
        let Some(function) = function else { continue };
        let returns = if *probe_returns {
            let code = code_bytes(elf, function.entry, function.end)
                .ok_or_else(|| go_error(format!("code of {program} is outside .text")))?;
            let returns = goret::return_addresses(code, function.entry);
            if returns.is_empty() {
                return Err(go_error(format!(
                    "no return instruction found for {program}"
                )));
            }
            returns
        } else {
            Vec::new()
        };
        let entry = file_offset(elf, function.entry)
            .ok_or_else(|| go_error("function entry outside any section".to_string()))?;
        let cookie = TlsLibrary::GoCryptoTls as u64;
        points.push(AttachPoint {
            program,
            offset: entry,
            cookie,
        });
        for address in returns {
            if let Some(offset) = file_offset(elf, address) {
                points.push(AttachPoint {
                    program: GO_RETURN_PROGRAM,
                    offset,
                    cookie,
                });
            }
        }
    }
    Ok(Inspection::Tls {
        library: TlsLibrary::GoCryptoTls,
        points,
        bio_points: Vec::new(),
    })
}

/// The code between two virtual addresses, from the section that holds them.
fn code_bytes<'data>(elf: &object::File<'data>, start: u64, end: u64) -> Option<&'data [u8]> {
    let section = section_at(elf, start)?;
    let data = section.data().ok()?;
    let from = usize::try_from(start - section.address()).ok()?;
    let to =
        usize::try_from(end.min(section.address() + section.size()) - section.address()).ok()?;
    data.get(from..to)
}

/// Where the byte at virtual address `address` sits in the file: what uprobes are given.
fn file_offset(elf: &object::File<'_>, address: u64) -> Option<u64> {
    let section = section_at(elf, address)?;
    let (offset, _) = section.file_range()?;
    Some(address - section.address() + offset)
}

fn section_at<'data, 'file>(
    elf: &'file object::File<'data>,
    address: u64,
) -> Option<object::Section<'data, 'file>> {
    elf.sections()
        .find(|s| s.address() != 0 && address >= s.address() && address < s.address() + s.size())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The system's libssl (Debian libssl3, a dependency of curl and python3 on these hosts).
    fn system_libssl() -> Option<std::path::PathBuf> {
        [
            "/usr/lib/x86_64-linux-gnu/libssl.so.3",
            "/lib/x86_64-linux-gnu/libssl.so.3",
        ]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
    }

    #[test]
    fn finds_the_four_ssl_functions_in_libssl() {
        let Some(path) = system_libssl() else {
            panic!("libssl.so.3 is not installed");
        };
        let Inspection::Tls {
            library,
            points,
            bio_points,
        } = inspect_file(&path).unwrap()
        else {
            panic!("libssl not recognised");
        };
        assert!(bio_points.is_empty(), "libssl has no BIO_read");
        assert_eq!(library, TlsLibrary::OpenSsl);
        let programs: Vec<&str> = points.iter().map(|p| p.program).collect();
        assert_eq!(
            programs,
            [
                "tls_write_enter",
                "tls_return",
                "tls_read_enter",
                "tls_return",
                "tls_write_ex_enter",
                "tls_return",
                "tls_read_ex_enter",
                "tls_return",
                "tls_handshake_enter",
                "tls_handshake_enter",
                "tls_handshake_enter"
            ]
        );
        // Each offset points at the function's first bytes: endbr64 or a push, never zero.
        assert!(points.iter().all(|p| p.offset > 0));
    }

    #[test]
    fn finds_the_bio_functions_in_libcrypto_3() {
        let path = Path::new("/usr/lib/x86_64-linux-gnu/libcrypto.so.3");
        let Inspection::Tls {
            library,
            points,
            bio_points,
        } = inspect_file(path).unwrap()
        else {
            panic!("libcrypto not recognised");
        };
        assert_eq!(library, TlsLibrary::OpenSsl);
        assert!(
            points.is_empty(),
            "BIO probes are only attached per process"
        );
        let entries: Vec<(&str, u64)> = bio_points
            .iter()
            .filter(|p| p.program != C_RETURN_PROGRAM)
            .map(|p| (p.program, p.cookie))
            .collect();
        // OpenSSL 3: bio_st.method follows libctx, at offset 8.
        let cookie = TlsLibrary::OpenSsl as u64 | 8 << 8;
        assert_eq!(
            entries,
            [
                ("bio_write_enter", cookie),
                ("bio_read_enter", cookie),
                ("bio_write_ex_enter", cookie),
                ("bio_read_ex_enter", cookie)
            ]
        );
    }

    #[test]
    fn the_openssl_cli_uses_ssl_bios_and_curl_does_not() {
        assert_eq!(
            inspect_file(Path::new("/usr/bin/openssl")).unwrap(),
            Inspection::SslBioUser
        );
        assert_eq!(
            inspect_file(Path::new("/usr/bin/curl")).unwrap(),
            Inspection::None
        );
    }

    #[test]
    fn libc_has_no_tls() {
        let path = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(inspect_file(path).unwrap(), Inspection::None);
    }

    #[test]
    fn jvm_is_reported_as_java() {
        assert_eq!(
            inspect(
                b"not even elf",
                Path::new("/usr/lib/jvm/lib/server/libjvm.so")
            )
            .unwrap(),
            Inspection::Unsupported(Unsupported::Java)
        );
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let err = inspect(b"\x7fELF garbage", Path::new("/tmp/x")).unwrap_err();
        assert!(
            err.to_string()
                .contains("/tmp/x is not a readable ELF file"),
            "{err}"
        );
    }
}
