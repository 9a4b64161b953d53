//! HPACK (RFC 7541) for one direction of a connection, through the httlib-hpack decoder (its
//! Huffman decoding is table-driven; the hpack-rs family builds a hash map per string, which
//! cost more than everything else per call), with one addition of ours: joining a connection
//! whose dynamic table the agent never saw.
//!
//! The dynamic table is a queue of entries, newest first, evicted oldest first by size. After
//! joining, the entries added from then on are known and sit in front of the unknown older ones.
//! We fill the decoder's table with placeholder entries of the smallest possible size (32 bytes:
//! empty name and value) up to the table's maximum: the true table's unknown part can never
//! hold more entries than that, and both tables evict the same known entries at the same time.
//! So an index the encoder uses lands on the right known entry or on a placeholder, never on a
//! wrong header; and as new entries push the placeholders out, the table becomes fully known.
//! A decoded field with an empty name came from a placeholder: its name (and usually value)
//! is unknown. No real header has an empty name.

use httlib_hpack::Decoder;
pub use httlib_hpack::DecoderError;

/// The dynamic table size of every HTTP/2 connection until SETTINGS change it (RFC 9113 6.5.2).
pub const DEFAULT_TABLE_SIZE: usize = 4096;
/// The largest table a peer may make us keep: bounds memory per connection and direction.
pub const MAX_TABLE_SIZE: usize = 64 * 1024;
/// The size HPACK counts for an entry besides its name and value.
const ENTRY_OVERHEAD: usize = 32;

/// A decoded header field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    Known {
        name: Vec<u8>,
        value: Vec<u8>,
    },
    /// Came from the part of the dynamic table the agent did not see.
    Unknown,
}

pub struct HeaderDecoder {
    decoder: Decoder<'static>,
    /// Whether placeholders may still be in the table.
    partial: bool,
    table_size: usize,
    /// Reused buffers: the decoder consumes its input and appends (name, value, flags).
    input: Vec<u8>,
    fields: Vec<(Vec<u8>, Vec<u8>, u8)>,
}

impl HeaderDecoder {
    /// The decoder of a direction seen from its first header block.
    pub fn new() -> Self {
        Self {
            decoder: fresh_decoder(),
            partial: false,
            table_size: DEFAULT_TABLE_SIZE,
            input: Vec::new(),
            fields: Vec::new(),
        }
    }

    /// The decoder of a direction joined mid-way (or after a header block was lost): the
    /// table's content is unknown.
    pub fn joining(table_size: usize) -> Self {
        let mut this = Self::new();
        this.forget(table_size);
        this
    }

    /// Whether every entry of the table is known.
    pub fn is_synced(&self) -> bool {
        !self.partial
    }

    /// The table content became unknown (a header block was lost or undecodable).
    pub fn forget(&mut self, table_size: usize) {
        let size = table_size.clamp(ENTRY_OVERHEAD, MAX_TABLE_SIZE);
        self.table_size = size;
        self.decoder = fresh_decoder();
        // A dynamic table size update to `size`, then literals with incremental indexing, new
        // name: name and value both empty strings.
        let mut fill = Vec::with_capacity(8 + 3 * (size / ENTRY_OVERHEAD));
        encode_integer(size, 0x20, 5, &mut fill);
        fill.extend([0x40, 0, 0].repeat(size / ENTRY_OVERHEAD));
        self.fields.clear();
        self.partial = self.decoder.decode(&mut fill, &mut self.fields).is_ok();
    }

    /// Decodes a whole header block. On an error the table is forgotten (its state after a
    /// half-decoded block is unknown) and the error returned.
    pub fn decode(&mut self, block: &[u8]) -> Result<Vec<Field>, DecoderError> {
        if !well_formed(block) {
            // The decoder indexes past the end of malformed input (it panics): never give it
            // any. The table's state is unknown after a block we cannot read.
            self.forget(self.table_size.max(DEFAULT_TABLE_SIZE));
            return Err(DecoderError::InvalidPrefix);
        }
        self.input.clear();
        self.input.extend_from_slice(block);
        self.fields.clear();
        let result = self.decoder.decode(&mut self.input, &mut self.fields);
        let mut placeholders_seen = false;
        let fields = self
            .fields
            .drain(..)
            .map(|(name, value, _)| {
                if name.is_empty() {
                    placeholders_seen = true;
                    Field::Unknown
                } else {
                    Field::Known { name, value }
                }
            })
            .collect();
        match result {
            Ok(_) => {
                if self.partial && !placeholders_seen {
                    self.partial = self.placeholders_left();
                }
                Ok(fields)
            }
            Err(e) => {
                // Joined with too small a guess of the table size (the peers raised it before
                // we came): guess larger.
                let size = if self.partial {
                    self.table_size * 2
                } else {
                    self.table_size.max(DEFAULT_TABLE_SIZE)
                };
                self.forget(size);
                Err(e)
            }
        }
    }

    /// Whether a placeholder is still in the table. The decoder does not expose its table, but
    /// reading an indexed field does not change it: the oldest entry is found by a binary search
    /// over the indices that could exist, and it is a placeholder or not.
    fn placeholders_left(&mut self) -> bool {
        let (mut valid, mut invalid) = (None, 62 + self.table_size / ENTRY_OVERHEAD + 1);
        let mut low = 62;
        while low < invalid {
            let mid = (low + invalid) / 2;
            if self.read_indexed(mid).is_some() {
                valid = Some(mid);
                low = mid + 1;
            } else {
                invalid = mid;
            }
        }
        valid.is_some_and(|oldest| self.read_indexed(oldest) == Some(true))
    }

    /// Whether the entry at `index` is a placeholder; `None` when there is no such entry.
    fn read_indexed(&mut self, index: usize) -> Option<bool> {
        let mut block = Vec::with_capacity(4);
        encode_integer(index, 0x80, 7, &mut block);
        self.fields.clear();
        self.decoder.decode(&mut block, &mut self.fields).ok()?;
        self.fields.first().map(|(name, _, _)| name.is_empty())
    }
}

impl Default for HeaderDecoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether every representation of a header block is whole: integers end within the block and
/// within 2^24, strings fit in it. Only the structure is read (the decoder does the rest), so
/// that malformed input gets an error instead of the decoder's out-of-bounds index.
pub fn well_formed(block: &[u8]) -> bool {
    let mut at = 0;
    while let Some(&first) = block.get(at) {
        let (prefix, strings) = match first {
            0x80.. => (7, 0),
            0x40..=0x7f => (6, 2),
            0x20..=0x3f => (5, 0),
            _ => (4, 2),
        };
        let Some((index, next)) = read_integer(block, at, prefix) else {
            return false;
        };
        at = next;
        // A literal has a name string when its index is 0, and always a value string.
        let strings = if strings == 2 && index != 0 {
            1
        } else {
            strings
        };
        for _ in 0..strings {
            let Some((len, next)) = read_integer(block, at, 7) else {
                return false;
            };
            match next.checked_add(len) {
                Some(end) if end <= block.len() => at = end,
                _ => return false,
            }
        }
    }
    true
}

/// An HPACK integer with a `prefix_bits` prefix at `at`: its value and where it ends.
fn read_integer(block: &[u8], at: usize, prefix_bits: u8) -> Option<(usize, usize)> {
    let max = (1usize << prefix_bits) - 1;
    let value = (*block.get(at)? as usize) & max;
    if value < max {
        return Some((value, at + 1));
    }
    let mut value = max;
    for (i, byte) in block.get(at + 1..)?.iter().take(4).enumerate() {
        value += ((byte & 0x7f) as usize) << (7 * i);
        if byte & 0x80 == 0 {
            return (value < 1 << 24).then_some((value, at + i + 2));
        }
    }
    None
}

/// A decoder that accepts table size updates up to [`MAX_TABLE_SIZE`] (its table starts at the
/// protocol's default size).
fn fresh_decoder() -> Decoder<'static> {
    let mut decoder = Decoder::default();
    decoder.set_max_dynamic_size(MAX_TABLE_SIZE as u32);
    decoder
}

/// An HPACK integer (RFC 7541 5.1) with a `prefix_bits` prefix, after the representation's
/// `pattern` bits.
fn encode_integer(value: usize, pattern: u8, prefix_bits: u8, out: &mut Vec<u8>) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(pattern | value as u8);
        return;
    }
    out.push(pattern | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use loona_hpack::Encoder;

    fn known(name: &str, value: &str) -> Field {
        Field::Known {
            name: name.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
        }
    }

    #[test]
    fn decodes_what_the_encoder_wrote_across_blocks() {
        let mut encoder = Encoder::new();
        let mut decoder = HeaderDecoder::new();
        for path in ["/a", "/b", "/a"] {
            let block = encoder.encode([
                (&b":method"[..], &b"GET"[..]),
                (b":path", path.as_bytes()),
                (b"x-tenant", b"acme"),
            ]);
            let fields = decoder.decode(&block).unwrap();
            assert_eq!(
                fields,
                [
                    known(":method", "GET"),
                    known(":path", path),
                    known("x-tenant", "acme")
                ]
            );
        }
        assert!(decoder.is_synced());
    }

    #[test]
    fn joining_midway_marks_unknown_entries_and_never_misattributes() {
        // The encoder's table has entries the agent never saw.
        let mut encoder = Encoder::new();
        let _ = encoder.encode([(&b"x-before"[..], &b"1"[..]), (b"x-secret", b"s3cr3t")]);
        let mut decoder = HeaderDecoder::joining(DEFAULT_TABLE_SIZE);
        assert!(!decoder.is_synced());
        // Known from now on: new entries; unknown: references to the old ones.
        let block = encoder.encode([
            (&b":method"[..], &b"POST"[..]),
            (b"x-new", b"2"),
            (b"x-before", b"1"),
            (b"x-secret", b"s3cr3t"),
        ]);
        let fields = decoder.decode(&block).unwrap();
        assert_eq!(
            fields,
            [
                known(":method", "POST"),
                known("x-new", "2"),
                Field::Unknown,
                Field::Unknown
            ]
        );
        // The new entry is at the front of both tables: referenced again, it is known.
        let block = encoder.encode([(&b"x-new"[..], &b"2"[..])]);
        assert_eq!(decoder.decode(&block).unwrap(), [known("x-new", "2")]);
        // Enough new entries push every unknown one out: the table is known again.
        for i in 0..80 {
            // A new name each time: this encoder indexes only names in no table.
            let name = format!("x-fill-{i:04}");
            let block = encoder.encode([(name.as_bytes(), &b"some value"[..])]);
            assert_eq!(
                decoder.decode(&block).unwrap(),
                [known(&name, "some value")]
            );
        }
        assert!(decoder.is_synced());
    }

    #[test]
    fn an_undecodable_block_forgets_the_table() {
        let mut decoder = HeaderDecoder::new();
        // Index 70 with an empty table.
        assert!(decoder.decode(&[0x80 | 70]).is_err());
        assert!(!decoder.is_synced());
        assert_eq!(decoder.decode(&[0x82]).unwrap(), [known(":method", "GET")]);
    }

    #[test]
    fn malformed_blocks_are_errors_not_panics() {
        let mut decoder = HeaderDecoder::new();
        for block in [
            &[0x40][..],                           // literal, no name length
            &[0x40, 0x05, b'a'],                   // name longer than the block
            &[0x0f],                               // 4-bit prefix full, no continuation
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], // integer past 2^24
            &[0x00, 0x01, b'a', 0x82], // value length missing... then an index: the 0x82 is the length
        ] {
            assert!(decoder.decode(block).is_err(), "{block:?}");
        }
        assert!(well_formed(&[
            0x82, 0x44, 0x02, b'/', b'a', 0x3f, 0xe1, 0x1f
        ]));
    }

    #[test]
    fn random_and_mutated_blocks_never_panic() {
        let mut next = crate::test_support::xorshift(0x2545_f491_4f6c_dd1d);
        let mut encoder = Encoder::new();
        let mut decoder = HeaderDecoder::new();
        for i in 0..5_000 {
            let mut block = if i % 2 == 0 {
                (0..next() % 40).map(|_| next() as u8).collect::<Vec<u8>>()
            } else {
                let value = format!("v{}", next() % 1000);
                encoder.encode([(&b"x-name"[..], value.as_bytes()), (b":path", b"/p")])
            };
            if let Some(b) = block.get_mut(next() as usize % 8) {
                *b ^= 1 << (next() % 8);
            }
            let _ = decoder.decode(&block);
        }
    }

    #[test]
    fn integers_encode_as_rfc_7541_c_1() {
        let mut out = Vec::new();
        encode_integer(10, 0, 5, &mut out);
        encode_integer(1337, 0, 5, &mut out);
        encode_integer(42, 0, 8, &mut out);
        assert_eq!(out, [0x0a, 0x1f, 0x9a, 0x0a, 0x2a]);
    }
}
