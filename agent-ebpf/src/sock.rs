//! From a file descriptor of the current process to its TCP socket's addresses.
//!
//! task_struct.files -> files_struct.fdt -> fdtable.fd[fd] -> file; the file is a socket when its
//! inode's mode says S_IFSOCK; file.private_data is the `struct socket`, whose `sk` holds the
//! addresses. Offsets come from the running kernel's BTF (see `config.rs`). This is how file and
//! pipe I/O is filtered out in the kernel: only stream sockets of the inet families pass. The
//! file's reference count says whether a close ends the socket or only one of its descriptors.

use agent_common::{
    config::{FILE_REFS_COUNT_MINUS_ONE, KernelOffsets},
    event::{AF_INET, AF_INET6, SockTuple},
};
use aya_ebpf::helpers::bpf_get_current_task;

use crate::{config::offsets, user::kernel_at};

const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;
const SOCK_STREAM: u16 = 1;

/// The TCP socket behind `fd` in the current process, or `None` when `fd` is anything else.
#[inline(always)]
pub fn tcp_socket(fd: i32) -> Result<Option<SockTuple>, i64> {
    match socket_file(fd)? {
        Some(file) => tcp_socket_of(file),
        None => Ok(None),
    }
}

/// Like [`tcp_socket`], with the kernel address of the `struct sock` (identifies the socket
/// itself, whatever descriptor number it has).
#[inline(always)]
pub fn tcp_socket_at(fd: i32) -> Result<Option<(SockTuple, u64)>, i64> {
    Ok(tcp_socket(fd)?.map(|tuple| (tuple, tuple.socket)))
}

/// The `struct file` behind `fd` in the current process when it is a socket.
#[inline(always)]
pub fn socket_file(fd: i32) -> Result<Option<u64>, i64> {
    if fd < 0 {
        return Ok(None);
    }
    let off = offsets();
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = kernel_at(task, off.task_files)?;
    if files == 0 {
        return Ok(None);
    }
    let fdt: u64 = kernel_at(files, off.files_fdt)?;
    let max_fds: u32 = kernel_at(fdt, off.fdtable_max_fds)?;
    if fd as u32 >= max_fds {
        return Ok(None);
    }
    let fd_array: u64 = kernel_at(fdt, off.fdtable_fd)?;
    let file: u64 = kernel_at(fd_array, (fd as u32) * 8)?;
    if file == 0 {
        return Ok(None);
    }
    let inode: u64 = kernel_at(file, off.file_inode)?;
    let mode: u16 = kernel_at(inode, off.inode_mode)?;
    if mode & S_IFMT != S_IFSOCK {
        return Ok(None);
    }
    Ok(Some(file))
}

/// The addresses of the TCP socket `file` (a socket file) holds, or `None` for other sockets.
#[inline(always)]
pub fn tcp_socket_of(file: u64) -> Result<Option<SockTuple>, i64> {
    let off = offsets();
    let socket: u64 = kernel_at(file, off.file_private_data)?;
    let sock_type: u16 = kernel_at(socket, off.socket_type)?;
    if sock_type != SOCK_STREAM {
        return Ok(None);
    }
    let sk: u64 = kernel_at(socket, off.socket_sk)?;
    if sk == 0 {
        return Ok(None);
    }
    read_tuple(sk, &off)
}

/// Whether closing one descriptor of `file` drops its last reference: only then does the
/// socket (the connection) end. A forked child's copy, a dup or a descriptor passed to another
/// process shares the `struct file` and holds a reference of its own. A syscall in progress on
/// the same descriptor in another thread also holds one for its duration: that close is then
/// taken for a shared one (the connection ends at its process's exit or idle timeout).
#[inline(always)]
pub fn is_last_reference(file: u64) -> Result<bool, i64> {
    let off = offsets();
    let raw: i64 = kernel_at(file, off.file_refs)?;
    let references = if off.file_refs_kind == FILE_REFS_COUNT_MINUS_ONE {
        raw.wrapping_add(1)
    } else {
        raw
    };
    Ok(references <= 1)
}

#[inline(always)]
fn read_tuple(sk: u64, off: &KernelOffsets) -> Result<Option<SockTuple>, i64> {
    let family: u16 = kernel_at(sk, off.sk_family)?;
    let mut tuple = SockTuple {
        family,
        socket: sk,
        ..SockTuple::default()
    };
    match family {
        AF_INET => {
            let remote: [u8; 4] = kernel_at(sk, off.sk_daddr)?;
            let local: [u8; 4] = kernel_at(sk, off.sk_rcv_saddr)?;
            tuple.remote_addr[..4].copy_from_slice(&remote);
            tuple.local_addr[..4].copy_from_slice(&local);
        }
        AF_INET6 => {
            tuple.remote_addr = kernel_at(sk, off.sk_v6_daddr)?;
            tuple.local_addr = kernel_at(sk, off.sk_v6_rcv_saddr)?;
        }
        _ => return Ok(None),
    }
    let dport: u16 = kernel_at(sk, off.sk_dport)?;
    tuple.remote_port = u16::from_be(dport);
    tuple.local_port = kernel_at(sk, off.sk_num)?;
    Ok(Some(tuple))
}
