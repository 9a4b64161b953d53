//! Decoding the raw ring-buffer records written by the kernel side. The only module that reads
//! `agent_common::event` layouts; everything after it sees [`CaptureEvent`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use agent_common::event::{
    AF_INET, AF_INET6, CgroupEvent, ConnEvent, DATA_EVENT_HEADER_LEN, DATA_FLAG_AFTER_LOSS,
    DATA_FLAG_TLS, DataOp, EventHeader, EventKind, ExecEvent, SockTuple, TlsLibrary,
};

use super::event::{CaptureEvent, ConnKind, DataChunk, Direction, SocketId, SocketPair, Task};

/// Why a record could not be decoded. Each is counted; none stops the reader.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than the {need} bytes its kind needs")]
    Short { len: usize, need: usize },
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    #[error("unknown address family {0}")]
    UnknownFamily(u16),
    #[error("data record claims {claimed} payload bytes but carries {present}")]
    PayloadLength { claimed: usize, present: usize },
    #[error("unknown direction {0}")]
    UnknownDirection(u8),
    #[error("unknown TLS library id {0}")]
    UnknownTlsLibrary(u8),
    #[error("cgroup path longer than the event carries")]
    CgroupPathCut,
}

/// Decodes one ring-buffer record.
pub fn decode(record: &[u8]) -> Result<CaptureEvent, DecodeError> {
    let header: EventHeader = read(record)?;
    let kind = EventKind::from_u32(header.kind).ok_or(DecodeError::UnknownKind(header.kind))?;
    let task = task(&header);
    Ok(match kind {
        EventKind::Data => CaptureEvent::Data(decode_data(record, task)?),
        EventKind::Connect | EventKind::Accept | EventKind::Close | EventKind::CloseShared => {
            let event: ConnEvent = read(record)?;
            CaptureEvent::Conn {
                task,
                fd: header.fd,
                socket: SocketId(event.tuple.socket),
                sockets: sockets(&event.tuple)?,
                kind: match kind {
                    EventKind::Connect => ConnKind::Connect,
                    EventKind::Accept => ConnKind::Accept,
                    EventKind::CloseShared => ConnKind::CloseShared,
                    _ => ConnKind::Close,
                },
            }
        }
        EventKind::Exec => {
            let event: ExecEvent = read(record)?;
            let copied = (event.args_len as usize).min(event.args.len());
            CaptureEvent::Exec {
                task,
                filename: c_string(&event.filename),
                args: event.args[..copied].to_vec(),
                args_complete: event.args_total as usize == copied,
            }
        }
        EventKind::Exit => CaptureEvent::Exit { task },
        EventKind::CgroupCreated => {
            let event: CgroupEvent = read(record)?;
            let len = event.path_len as usize;
            if len >= event.path.len() {
                return Err(DecodeError::CgroupPathCut);
            }
            CaptureEvent::CgroupCreated {
                task,
                id: event.id,
                path: String::from_utf8_lossy(&event.path[..len]).into_owned(),
            }
        }
        EventKind::ExecMapping => CaptureEvent::ExecMapping { task },
    })
}

fn decode_data(record: &[u8], task: Task) -> Result<DataChunk, DecodeError> {
    if record.len() < DATA_EVENT_HEADER_LEN {
        return Err(DecodeError::Short {
            len: record.len(),
            need: DATA_EVENT_HEADER_LEN,
        });
    }
    let fixed = &record[..DATA_EVENT_HEADER_LEN];
    let header: EventHeader = read(fixed)?;
    let tuple: SockTuple = read(&fixed[size_of::<EventHeader>()..])?;
    let rest = &fixed[size_of::<EventHeader>() + size_of::<SockTuple>()..];
    let direction = match rest[0] {
        0 => Direction::Egress,
        1 => Direction::Ingress,
        other => return Err(DecodeError::UnknownDirection(other)),
    };
    let op = DataOp::from_u8(rest[1])
        .map(DataOp::name)
        .unwrap_or("unknown");
    let total_len = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
    let captured = u32::from_ne_bytes([rest[12], rest[13], rest[14], rest[15]]) as usize;
    let payload = &record[DATA_EVENT_HEADER_LEN..];
    if payload.len() < captured {
        return Err(DecodeError::PayloadLength {
            claimed: captured,
            present: payload.len(),
        });
    }
    Ok(DataChunk {
        task,
        fd: header.fd,
        socket: SocketId(tuple.socket),
        sockets: sockets(&tuple)?,
        direction,
        op,
        total_len,
        payload: payload[..captured].to_vec(),
        after_loss: rest[2] & DATA_FLAG_AFTER_LOSS != 0,
        tls: if rest[2] & DATA_FLAG_TLS != 0 {
            Some(TlsLibrary::from_u8(rest[3]).ok_or(DecodeError::UnknownTlsLibrary(rest[3]))?)
        } else {
            None
        },
    })
}

fn task(header: &EventHeader) -> Task {
    Task {
        tgid: header.tgid,
        pid: header.pid,
        comm: c_string(&header.comm),
        cgroup_id: header.cgroup_id,
        ts_ns: header.ts_ns,
    }
}

fn sockets(tuple: &SockTuple) -> Result<SocketPair, DecodeError> {
    let addr = |bytes: &[u8; 16]| -> Result<IpAddr, DecodeError> {
        match tuple.family {
            AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(
                bytes[0], bytes[1], bytes[2], bytes[3],
            ))),
            AF_INET6 => {
                let v6 = Ipv6Addr::from(*bytes);
                // Dual-stack sockets carry IPv4 peers as ::ffff:a.b.c.d; report them as IPv4.
                Ok(v6
                    .to_ipv4_mapped()
                    .map(IpAddr::V4)
                    .unwrap_or(IpAddr::V6(v6)))
            }
            other => Err(DecodeError::UnknownFamily(other)),
        }
    };
    Ok(SocketPair {
        local: SocketAddr::new(addr(&tuple.local_addr)?, tuple.local_port),
        remote: SocketAddr::new(addr(&tuple.remote_addr)?, tuple.remote_port),
    })
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Reads a `T` from the start of `bytes`, checking the length. `aya::Pod` (implemented in
/// agent-common for the event layouts only) is what makes any bytes a valid `T`.
fn read<T: aya::Pod>(bytes: &[u8]) -> Result<T, DecodeError> {
    let need = size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Short {
            len: bytes.len(),
            need,
        });
    }
    #[allow(unsafe_code)]
    // SAFETY: the length is checked above; `T: Pod` means every bit pattern is a valid `T`;
    // read_unaligned copes with any alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Where a data record's fields after the header and the tuple start (direction first).
    const FIELDS: usize = size_of::<EventHeader>() + size_of::<SockTuple>();

    /// Builds a raw data record the way the kernel side lays it out.
    pub fn data_record(tgid: u32, fd: i32, direction: u8, total: u32, payload: &[u8]) -> Vec<u8> {
        let header = EventHeader {
            kind: EventKind::Data as u32,
            tgid,
            pid: tgid,
            fd,
            ts_ns: 1_000,
            cgroup_id: 7,
            comm: *b"curl\0\0\0\0\0\0\0\0\0\0\0\0",
        };
        let mut tuple = SockTuple {
            family: AF_INET,
            local_port: 40000,
            remote_port: 8080,
            socket: 0xffff_8880_1234_5600,
            ..SockTuple::default()
        };
        tuple.local_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        tuple.remote_addr[..4].copy_from_slice(&[127, 0, 0, 2]);
        let mut out = Vec::new();
        out.extend_from_slice(pod_bytes(&header));
        out.extend_from_slice(pod_bytes(&tuple));
        out.extend_from_slice(&[direction, DataOp::Write as u8, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&total.to_ne_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_ne_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn pod_bytes<T>(value: &T) -> &[u8] {
        #[allow(unsafe_code)]
        // SAFETY: test-only view of a #[repr(C)] value without padding as bytes.
        unsafe {
            std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>())
        }
    }

    #[test]
    fn decodes_a_data_record() {
        let record = data_record(42, 5, 0, 100, b"GET / HTTP/1.1\r\n");
        let CaptureEvent::Data(chunk) = decode(&record).expect("decodes") else {
            panic!("not data");
        };
        assert_eq!(chunk.task.tgid, 42);
        assert_eq!(chunk.task.comm, "curl");
        assert_eq!(chunk.fd, 5);
        assert_eq!(chunk.direction, Direction::Egress);
        assert_eq!(chunk.op, "write");
        assert_eq!(chunk.total_len, 100);
        assert_eq!(chunk.payload, b"GET / HTTP/1.1\r\n");
        assert_eq!(chunk.missing_len(), 100 - 16);
        assert!(!chunk.after_loss);
        assert_eq!(chunk.socket, SocketId(0xffff_8880_1234_5600));
        let mut flagged = record.clone();
        flagged[FIELDS + 2] = DATA_FLAG_AFTER_LOSS;
        let CaptureEvent::Data(chunk) = decode(&flagged).expect("decodes") else {
            panic!("not data");
        };
        assert!(chunk.after_loss);
        assert_eq!(chunk.sockets.local.to_string(), "127.0.0.1:40000");
        assert_eq!(chunk.sockets.remote.to_string(), "127.0.0.2:8080");
    }

    #[test]
    fn rejects_bad_records_without_panicking() {
        assert!(matches!(decode(&[1, 2, 3]), Err(DecodeError::Short { .. })));
        let mut record = data_record(1, 3, 0, 10, b"0123456789");
        record.truncate(record.len() - 4);
        assert!(matches!(
            decode(&record),
            Err(DecodeError::PayloadLength { .. })
        ));
        let mut unknown = data_record(1, 3, 0, 0, b"");
        unknown[0] = 99;
        assert_eq!(decode(&unknown).unwrap_err(), DecodeError::UnknownKind(99));
        let mut bad_dir = data_record(1, 3, 0, 0, b"");
        bad_dir[FIELDS] = 7;
        assert_eq!(
            decode(&bad_dir).unwrap_err(),
            DecodeError::UnknownDirection(7)
        );
    }

    #[test]
    fn decoding_random_bytes_never_panics() {
        let mut next = crate::test_support::xorshift(0x1234_5678);
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = decode(&bytes);
        }
    }
}
