//! The few Protocol Buffers writes the span encoder needs, straight into a byte buffer: field
//! keys, varints, fixed-width numbers, length-delimited bytes, and nested messages whose length
//! is known only once written. prost's `encoding` module supplies the varint code; the message
//! layouts are in `span_encoding`.
//!
//! Why not prost messages: building an `opentelemetry_proto` span allocates a `String` per
//! attribute key and value and then walks the tree twice (`encoded_len`, `encode`). Writing the
//! bytes as the call's fields are visited does neither.

use prost::encoding::{encode_varint, encoded_len_varint};

/// Wire types used here.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LENGTH_DELIMITED: u32 = 2;
const FIXED32: u32 = 5;

/// A varint; most of ours (keys, lengths of attributes, kinds) take one byte.
#[inline]
fn varint(buf: &mut Vec<u8>, value: u64) {
    if value < 0x80 {
        buf.push(value as u8);
    } else {
        encode_varint(value, buf);
    }
}

#[inline]
fn key(buf: &mut Vec<u8>, field: u32, wire_type: u32) {
    varint(buf, u64::from((field << 3) | wire_type));
}

pub fn varint_field(buf: &mut Vec<u8>, field: u32, value: u64) {
    key(buf, field, VARINT);
    varint(buf, value);
}

/// An `int64`: negative values take ten bytes, as protobuf defines them.
pub fn int64_field(buf: &mut Vec<u8>, field: u32, value: i64) {
    varint_field(buf, field, value as u64);
}

pub fn fixed64_field(buf: &mut Vec<u8>, field: u32, value: u64) {
    key(buf, field, FIXED64);
    buf.extend_from_slice(&value.to_le_bytes());
}

pub fn fixed32_field(buf: &mut Vec<u8>, field: u32, value: u32) {
    key(buf, field, FIXED32);
    buf.extend_from_slice(&value.to_le_bytes());
}

/// `bytes`, `string` or an already encoded message.
pub fn bytes_field(buf: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    key(buf, field, LENGTH_DELIMITED);
    varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

/// Bytes taken by [`bytes_field`] for `len` bytes of a field numbered below 16.
pub fn bytes_field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// The key and length of a length-delimited field, its `len` bytes to follow.
pub fn length_delimited_header(buf: &mut Vec<u8>, field: u32, len: usize) {
    key(buf, field, LENGTH_DELIMITED);
    varint(buf, len as u64);
}

/// A nested message written by `write`; its length, unknown until then, is put in front (one
/// byte reserved: most of ours are shorter than 128 bytes, a longer one moves once).
pub fn message_field(buf: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
    key(buf, field, LENGTH_DELIMITED);
    let at = buf.len();
    buf.push(0);
    write(buf);
    let len = buf.len() - at - 1;
    if len < 0x80 {
        buf[at] = len as u8;
    } else {
        let mut prefix = Vec::with_capacity(10);
        encode_varint(len as u64, &mut prefix);
        buf.splice(at..=at, prefix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use prost::Message;

    /// A `KeyValue` written by hand, read back by prost.
    fn key_value(key: &str, write_value: impl FnOnce(&mut Vec<u8>)) -> KeyValue {
        let mut buf = Vec::new();
        bytes_field(&mut buf, 1, key.as_bytes());
        message_field(&mut buf, 2, write_value);
        KeyValue::decode(buf.as_slice()).unwrap()
    }

    fn value(kv: KeyValue) -> Option<Value> {
        kv.value.and_then(|v: AnyValue| v.value)
    }

    #[test]
    fn prost_reads_what_is_written() {
        let text = "x".repeat(300);
        let long = key_value("k", |b| bytes_field(b, 1, text.as_bytes()));
        assert_eq!(long.key, "k");
        assert_eq!(value(long), Some(Value::StringValue(text)));
        let negative = key_value("n", |b| int64_field(b, 3, -5));
        assert_eq!(value(negative), Some(Value::IntValue(-5)));
        let boolean = key_value("b", |b| varint_field(b, 2, 1));
        assert_eq!(value(boolean), Some(Value::BoolValue(true)));
        let empty = key_value("e", |b| bytes_field(b, 1, b""));
        assert_eq!(value(empty), Some(Value::StringValue(String::new())));
    }

    #[test]
    fn lengths_match_what_is_written() {
        for len in [0, 1, 127, 128, 16_383, 16_384] {
            let mut buf = Vec::new();
            bytes_field(&mut buf, 2, &vec![7; len]);
            assert_eq!(buf.len(), bytes_field_len(len), "{len}");
            let mut header = Vec::new();
            length_delimited_header(&mut header, 2, len);
            assert_eq!(header.len() + len, bytes_field_len(len));
        }
        let mut fixed = Vec::new();
        fixed64_field(&mut fixed, 7, 1);
        fixed32_field(&mut fixed, 16, 1);
        assert_eq!(fixed.len(), 1 + 8 + 2 + 4);
    }
}
