//! HPACK (RFC 7541) for one direction of a connection, through the loona-hpack decoder, with
//! one addition of ours: joining a connection whose dynamic table the agent never saw.
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

use loona_hpack::{Decoder, decoder::DecoderError};

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
}

impl HeaderDecoder {
    /// The decoder of a direction seen from its first header block.
    pub fn new() -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(MAX_TABLE_SIZE);
        Self {
            decoder,
            partial: false,
            table_size: DEFAULT_TABLE_SIZE,
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
        self.decoder = Decoder::new();
        self.decoder.set_max_allowed_table_size(MAX_TABLE_SIZE);
        self.decoder.set_max_table_size(size);
        // Literal with incremental indexing, new name: name and value both empty strings.
        let fill: Vec<u8> = [0x40, 0, 0].repeat(size / ENTRY_OVERHEAD);
        if self.decoder.decode_with_cb(&fill, |_, _| {}).is_ok() {
            self.partial = true;
        }
    }

    /// Decodes a whole header block. On an error the table is forgotten (its state after a
    /// half-decoded block is unknown) and the error returned.
    pub fn decode(&mut self, block: &[u8]) -> Result<Vec<Field>, DecoderError> {
        let mut fields = Vec::new();
        let mut placeholders_seen = false;
        let result = self.decoder.decode_with_cb(block, |name, value| {
            if name.is_empty() {
                placeholders_seen = true;
                fields.push(Field::Unknown);
            } else {
                fields.push(Field::Known {
                    name: name.into_owned(),
                    value: value.into_owned(),
                });
            }
        });
        match result {
            Ok(()) => {
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
        encode_indexed(index, &mut block);
        let mut placeholder = false;
        self.decoder
            .decode_with_cb(&block, |name, _| placeholder = name.is_empty())
            .ok()
            .map(|()| placeholder)
    }
}

impl Default for HeaderDecoder {
    fn default() -> Self {
        Self::new()
    }
}

/// An indexed header field representation (RFC 7541 6.1) of `index`.
fn encode_indexed(index: usize, out: &mut Vec<u8>) {
    if index < 127 {
        out.push(0x80 | index as u8);
        return;
    }
    out.push(0xff);
    let mut rest = index - 127;
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
    fn indexed_encoding_matches_rfc_integers() {
        let mut out = Vec::new();
        encode_indexed(1337 + 127, &mut out);
        // RFC 7541 C.1.2 encodes 1337 with a 5-bit prefix; here the prefix is 7 bits.
        assert_eq!(out, [0xff, 0xb9, 0x0a]);
    }
}
