//! HTTP/2 framing (RFC 9113 section 4) of one direction of a connection: frame headers, frames
//! that span syscalls, holes left by the capture limit, and finding frame boundaries again when
//! the agent joins a connection mid-way or loses its place.

/// What a client sends first on an HTTP/2 connection.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const HEADER_LEN: usize = 9;

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const PRIORITY: u8 = 2;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PUSH_PROMISE: u8 = 5;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const WINDOW_UPDATE: u8 = 8;
pub const CONTINUATION: u8 = 9;

pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

/// Frames other than DATA are kept whole to be read; larger ones (a header block far beyond
/// any real one) are skipped and reported lost.
pub const MAX_BUFFERED_FRAME: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    /// The reserved bit before the stream id (always 0 from a real peer).
    reserved: bool,
}

impl FrameHeader {
    pub fn parse(b: &[u8; HEADER_LEN]) -> Self {
        let id = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
        Self {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: id & 0x7fff_ffff,
            reserved: id >> 31 == 1,
        }
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Whether a real peer would send this header: a known type on the right kind of stream,
    /// with that type's flags and length. Used only to find frame boundaries in bytes whose
    /// start the agent did not see; a stream that started in view is read whatever it holds.
    pub fn plausible(&self) -> bool {
        let on_stream = self.stream != 0;
        let (stream_ok, flags, len_ok) = match self.kind {
            DATA => (on_stream, END_STREAM | PADDED, true),
            HEADERS => (
                on_stream,
                END_STREAM | END_HEADERS | PADDED | PRIORITY_FLAG,
                true,
            ),
            PRIORITY => (on_stream, 0, self.len == 5),
            RST_STREAM => (on_stream, 0, self.len == 4),
            SETTINGS => (
                !on_stream,
                END_STREAM,
                self.len.is_multiple_of(6) && (!self.has(END_STREAM) || self.len == 0),
            ),
            PUSH_PROMISE => (on_stream, END_HEADERS | PADDED, self.len >= 4),
            PING => (!on_stream, END_STREAM, self.len == 8),
            GOAWAY => (!on_stream, 0, self.len >= 8),
            WINDOW_UPDATE => (true, 0, self.len == 4),
            CONTINUATION => (on_stream, END_HEADERS, true),
            _ => return false,
        };
        stream_ok && self.flags & !flags == 0 && len_ok && !self.reserved
    }
}

/// Whether `bytes` are a run of plausible frames from their first byte: each header plausible,
/// the last frame allowed to continue past the end. At least one whole header is needed.
pub fn plausible_frames(bytes: &[u8]) -> bool {
    let mut at = 0;
    let mut frames = 0;
    while at + HEADER_LEN <= bytes.len() {
        let header = FrameHeader::parse(bytes[at..at + HEADER_LEN].try_into().unwrap_or(&[0; 9]));
        if !header.plausible() {
            return false;
        }
        frames += 1;
        at += HEADER_LEN + header.len as usize;
    }
    // Fewer bytes left than a header: a torn header, which a writer of whole frames does not
    // produce; accept only runs whose last frame reaches the end.
    frames > 0 && at >= bytes.len()
}

/// What the reader found, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameEvent<'a> {
    /// A whole frame other than DATA (padding still in its payload).
    Frame {
        header: FrameHeader,
        payload: &'a [u8],
    },
    /// Data bytes of a DATA frame (padding removed); a frame may come in several pieces.
    Data {
        header: FrameHeader,
        bytes: &'a [u8],
    },
    /// `len` data bytes of a DATA frame that were not captured.
    DataGap { header: FrameHeader, len: usize },
    /// A DATA frame ended (its END_STREAM flag is in `header`).
    DataEnd { header: FrameHeader },
    /// A frame other than DATA was not captured whole (or was too large to keep): its header
    /// is known, its content lost.
    Lost { header: FrameHeader },
    /// The reader lost the frame boundaries: bytes are skipped until a syscall starts with
    /// frames again.
    Desync,
}

enum State {
    /// Reading a frame header (`have` bytes of it so far).
    Header { buf: [u8; HEADER_LEN], have: usize },
    /// Inside a frame's payload; `read` bytes of it passed.
    Payload {
        header: FrameHeader,
        read: usize,
        /// DATA: the padding length once known (its first byte when PADDED).
        pad: Option<usize>,
        /// Frames other than DATA: the payload so far; `None` when skipped.
        kept: Option<Vec<u8>>,
    },
    /// Frame boundaries unknown: waiting for a syscall that starts on a frame.
    Lost,
}

/// One direction's frames.
pub struct FrameReader {
    state: State,
    /// A client's direction starts with the preface, skipped when seen.
    preface_left: usize,
}

impl FrameReader {
    /// A reader at the start of a direction; `client` skips the connection preface.
    pub fn new(client: bool) -> Self {
        Self {
            state: State::Header {
                buf: [0; HEADER_LEN],
                have: 0,
            },
            preface_left: if client { PREFACE.len() } else { 0 },
        }
    }

    /// A reader joining a direction mid-way: it waits for a syscall that starts with frames.
    pub fn joining() -> Self {
        Self {
            state: State::Lost,
            preface_left: 0,
        }
    }

    pub fn is_lost(&self) -> bool {
        matches!(self.state, State::Lost)
    }

    /// Bytes of one syscall, then `missing` bytes the capture did not copy.
    pub fn feed(&mut self, data: &[u8], missing: usize, out: &mut impl FnMut(FrameEvent<'_>)) {
        let mut data = data;
        if self.preface_left > 0 {
            let n = self.preface_left.min(data.len());
            if data[..n] != PREFACE[PREFACE.len() - self.preface_left..][..n] {
                // No preface (an upgraded connection's client may still send it; a reader
                // told to expect it that gets frames instead reads them).
                self.preface_left = 0;
            } else {
                self.preface_left -= n;
                data = &data[n..];
            }
        }
        if matches!(self.state, State::Lost) {
            let start = if data.starts_with(PREFACE) {
                &data[PREFACE.len()..]
            } else {
                data
            };
            if !plausible_frames(start) {
                return;
            }
            data = start;
            self.state = State::Header {
                buf: [0; HEADER_LEN],
                have: 0,
            };
        }
        while !data.is_empty() {
            data = self.step(data, out);
        }
        if missing > 0 {
            self.gap(missing, out);
        }
    }

    /// Consumes some of `data`, returning the rest.
    fn step<'a>(&mut self, data: &'a [u8], out: &mut impl FnMut(FrameEvent<'_>)) -> &'a [u8] {
        match &mut self.state {
            State::Lost => &[],
            State::Header { buf, have } => {
                let n = (HEADER_LEN - *have).min(data.len());
                buf[*have..*have + n].copy_from_slice(&data[..n]);
                *have += n;
                if *have == HEADER_LEN {
                    let header = FrameHeader::parse(buf);
                    self.start_payload(header, out);
                }
                &data[n..]
            }
            State::Payload {
                header,
                read,
                pad,
                kept,
            } => {
                let header = *header;
                let n = (header.len as usize - *read).min(data.len());
                let piece = &data[..n];
                if header.kind == DATA {
                    let (from, padding) = data_region(header, *read, pad, piece);
                    let end = header.len as usize - padding.unwrap_or(0);
                    let until = (end.saturating_sub(*read)).min(n);
                    if from < until {
                        out(FrameEvent::Data {
                            header,
                            bytes: &piece[from..until],
                        });
                    }
                } else if let Some(kept) = kept {
                    kept.extend_from_slice(piece);
                }
                *read += n;
                if *read == header.len as usize {
                    self.end_payload(out);
                }
                &data[n..]
            }
        }
    }

    fn start_payload(&mut self, header: FrameHeader, out: &mut impl FnMut(FrameEvent<'_>)) {
        let keep = header.kind != DATA && (header.len as usize) <= MAX_BUFFERED_FRAME;
        self.state = State::Payload {
            header,
            read: 0,
            pad: (header.kind == DATA && !header.has(PADDED)).then_some(0),
            kept: keep.then(|| Vec::with_capacity(header.len as usize)),
        };
        if header.len == 0 {
            self.end_payload(out);
        }
    }

    fn end_payload(&mut self, out: &mut impl FnMut(FrameEvent<'_>)) {
        let state = std::mem::replace(
            &mut self.state,
            State::Header {
                buf: [0; HEADER_LEN],
                have: 0,
            },
        );
        if let State::Payload { header, kept, .. } = state {
            match (header.kind, kept) {
                (DATA, _) => out(FrameEvent::DataEnd { header }),
                (_, Some(payload)) => out(FrameEvent::Frame {
                    header,
                    payload: &payload,
                }),
                (_, None) => out(FrameEvent::Lost { header }),
            }
        }
    }

    /// `len` bytes moved by the syscall were not captured.
    fn gap(&mut self, len: usize, out: &mut impl FnMut(FrameEvent<'_>)) {
        match &mut self.state {
            State::Payload {
                header, read, kept, ..
            } if header.len as usize - *read >= len => {
                let header = *header;
                if header.kind == DATA {
                    out(FrameEvent::DataGap { header, len });
                } else {
                    *kept = None;
                }
                *read += len;
                if *read == header.len as usize {
                    self.end_payload(out);
                }
            }
            State::Lost => {}
            // The hole covers a frame header: the boundaries are gone.
            _ => {
                if let State::Payload {
                    header,
                    kept: Some(_),
                    ..
                } = self.state
                    && header.kind != DATA
                {
                    out(FrameEvent::Lost { header });
                }
                self.state = State::Lost;
                out(FrameEvent::Desync);
            }
        }
    }
}

/// Where a DATA frame's data starts in `piece` (after the pad length byte) and its padding
/// length once known.
fn data_region(
    header: FrameHeader,
    read: usize,
    pad: &mut Option<usize>,
    piece: &[u8],
) -> (usize, Option<usize>) {
    if pad.is_none() && read == 0 && header.has(PADDED) {
        *pad = piece.first().map(|&p| p as usize);
        return (1, *pad);
    }
    (0, *pad)
}

/// The header block fragment of a HEADERS or PUSH_PROMISE frame: padding, priority and the
/// promised stream id removed. `None` when the frame is malformed.
pub fn block_fragment(header: FrameHeader, payload: &[u8]) -> Option<&[u8]> {
    let mut body = payload;
    let mut pad = 0;
    if header.has(PADDED) {
        pad = *body.first()? as usize;
        body = &body[1..];
    }
    let skip = match header.kind {
        HEADERS if header.has(PRIORITY_FLAG) => 5,
        PUSH_PROMISE => 4,
        _ => 0,
    };
    let end = body.len().checked_sub(pad)?;
    body.get(skip..end)
}

/// RFC 9113 7: error code names.
pub fn error_code(code: u32) -> String {
    const NAMES: [&str; 14] = [
        "NO_ERROR",
        "PROTOCOL_ERROR",
        "INTERNAL_ERROR",
        "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT",
        "STREAM_CLOSED",
        "FRAME_SIZE_ERROR",
        "REFUSED_STREAM",
        "CANCEL",
        "COMPRESSION_ERROR",
        "CONNECT_ERROR",
        "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY",
        "HTTP_1_1_REQUIRED",
    ];
    NAMES
        .get(code as usize)
        .map_or_else(|| format!("0x{code:x}"), |n| n.to_string())
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Frame bytes: header then payload.
    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut out = len.to_be_bytes()[1..].to_vec();
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        Frame(u8, u32, Vec<u8>),
        Data(u32, Vec<u8>),
        Gap(u32, usize),
        End(u32, bool),
        Lost(u8),
        Desync,
    }

    fn read(reader: &mut FrameReader, pieces: &[(&[u8], usize)]) -> Vec<Seen> {
        let mut seen = Vec::new();
        for (bytes, missing) in pieces {
            reader.feed(bytes, *missing, &mut |e| {
                seen.push(match e {
                    FrameEvent::Frame { header, payload } => {
                        Seen::Frame(header.kind, header.stream, payload.to_vec())
                    }
                    FrameEvent::Data { header, bytes } => Seen::Data(header.stream, bytes.to_vec()),
                    FrameEvent::DataGap { header, len } => Seen::Gap(header.stream, len),
                    FrameEvent::DataEnd { header } => {
                        Seen::End(header.stream, header.has(END_STREAM))
                    }
                    FrameEvent::Lost { header } => Seen::Lost(header.kind),
                    FrameEvent::Desync => Seen::Desync,
                })
            });
        }
        seen
    }

    #[test]
    fn frames_split_anywhere_read_the_same() {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
        bytes.extend(frame(HEADERS, END_HEADERS, 1, b"\x82\x84"));
        // Padded DATA: pad length 2, "hi", two bytes of padding.
        bytes.extend(frame(DATA, PADDED | END_STREAM, 1, b"\x02hi\0\0"));
        let whole = read(&mut FrameReader::new(true), &[(&bytes, 0)]);
        assert_eq!(
            whole,
            [
                Seen::Frame(SETTINGS, 0, vec![0, 3, 0, 0, 0, 100]),
                Seen::Frame(HEADERS, 1, b"\x82\x84".to_vec()),
                Seen::Data(1, b"hi".to_vec()),
                Seen::End(1, true),
            ]
        );
        for split in 1..bytes.len() {
            let mut reader = FrameReader::new(true);
            let mut seen = read(&mut reader, &[(&bytes[..split], 0), (&bytes[split..], 0)]);
            // Data may come in two pieces: join them.
            let mut joined: Vec<Seen> = Vec::new();
            for s in seen.drain(..) {
                if let (Some(Seen::Data(a, prev)), Seen::Data(b, more)) = (joined.last_mut(), &s)
                    && a == b
                {
                    prev.extend_from_slice(more);
                    continue;
                }
                joined.push(s);
            }
            assert_eq!(joined, whole, "split at {split}");
        }
    }

    #[test]
    fn holes_in_data_are_counted_holes_over_headers_lose_the_frame_or_the_place() {
        let data = frame(DATA, END_STREAM, 3, &[7; 100]);
        // 40 bytes captured of a 109-byte write: the rest of the data is a counted hole.
        let seen = read(&mut FrameReader::new(false), &[(&data[..40], 69)]);
        assert_eq!(
            seen,
            [
                Seen::Data(3, vec![7; 31]),
                Seen::Gap(3, 69),
                Seen::End(3, true)
            ]
        );
        // A header block cut by the capture limit is lost, the next frame read.
        let mut bytes = frame(HEADERS, END_HEADERS, 5, &[0x82; 50]);
        let next = frame(RST_STREAM, 0, 5, &[0, 0, 0, 8]);
        bytes.truncate(20);
        let seen = read(&mut FrameReader::new(false), &[(&bytes, 39), (&next, 0)]);
        assert_eq!(
            seen,
            [
                Seen::Lost(HEADERS),
                Seen::Frame(RST_STREAM, 5, vec![0, 0, 0, 8])
            ]
        );
        // A hole past the frame's end: boundaries lost until a syscall starts with frames.
        let mut reader = FrameReader::new(false);
        let seen = read(
            &mut reader,
            &[(&data[..40], 200), (b"garbage!!!!", 0), (&next, 0)],
        );
        assert_eq!(
            seen,
            [
                Seen::Data(3, vec![7; 31]),
                Seen::Desync,
                Seen::Frame(RST_STREAM, 5, vec![0, 0, 0, 8])
            ]
        );
    }

    #[test]
    fn plausibility_accepts_what_peers_send_and_little_else() {
        let mut run = frame(HEADERS, END_HEADERS, 1, b"\x82");
        run.extend(frame(DATA, 0, 1, &[1; 20]));
        assert!(plausible_frames(&run));
        // The last frame may continue in the next syscall.
        assert!(plausible_frames(&run[..run.len() - 5]));
        assert!(plausible_frames(&frame(SETTINGS, END_STREAM, 0, &[])));
        assert!(plausible_frames(&frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0])));
        assert!(!plausible_frames(&frame(SETTINGS, 0, 1, &[0; 6])));
        assert!(!plausible_frames(&frame(PING, 0, 0, &[0; 7])));
        assert!(!plausible_frames(&frame(0x42, 0, 1, &[])));
        assert!(!plausible_frames(&frame(DATA, 0x40, 1, &[])));
        assert!(!plausible_frames(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(!plausible_frames(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc"));
        assert!(!plausible_frames(&[0, 0]));
    }
}
