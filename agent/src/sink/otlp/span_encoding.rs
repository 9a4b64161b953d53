//! OTLP trace messages written as bytes (opentelemetry-proto's `trace.v1` and
//! `collector.trace.v1` layouts): a call's attributes as `KeyValue`s while its fields are
//! visited, a resource once per observing end, and the export request around already encoded
//! spans. A span is encoded once, when its call is seen; retries resend the same bytes.

use std::fmt::Write as _;

use super::wire::{
    bytes_field, bytes_field_len, int64_field, length_delimited_header, message_field, varint_field,
};
use crate::sink::call_fields::FieldValue;

/// Field numbers of the messages written here.
pub mod field {
    /// `KeyValue`, `AnyValue`, `ArrayValue`.
    pub const KEY: u32 = 1;
    pub const VALUE: u32 = 2;
    pub const STRING_VALUE: u32 = 1;
    pub const BOOL_VALUE: u32 = 2;
    pub const INT_VALUE: u32 = 3;
    pub const ARRAY_VALUE: u32 = 5;
    pub const ARRAY_VALUES: u32 = 1;
    /// `Resource.attributes`.
    pub const RESOURCE_ATTRIBUTES: u32 = 1;
    /// `Span`.
    pub const TRACE_ID: u32 = 1;
    pub const SPAN_ID: u32 = 2;
    pub const TRACE_STATE: u32 = 3;
    pub const PARENT_SPAN_ID: u32 = 4;
    pub const NAME: u32 = 5;
    pub const KIND: u32 = 6;
    pub const START_TIME: u32 = 7;
    pub const END_TIME: u32 = 8;
    pub const ATTRIBUTES: u32 = 9;
    pub const STATUS: u32 = 15;
    pub const FLAGS: u32 = 16;
    /// `Status`.
    pub const STATUS_MESSAGE: u32 = 2;
    pub const STATUS_CODE: u32 = 3;
    /// `InstrumentationScope`.
    pub const SCOPE_NAME: u32 = 1;
    pub const SCOPE_VERSION: u32 = 2;
    /// `ExportTraceServiceRequest.resource_spans`, `ResourceSpans`, `ScopeSpans`.
    pub const RESOURCE_SPANS: u32 = 1;
    pub const RESOURCE: u32 = 1;
    pub const SCOPE_SPANS: u32 = 2;
    pub const SCOPE: u32 = 1;
    pub const SPANS: u32 = 2;
}

/// `Span.kind` values.
pub const SPAN_KIND_SERVER: u64 = 2;
pub const SPAN_KIND_CLIENT: u64 = 3;
/// `Status.code`: error.
pub const STATUS_CODE_ERROR: u64 = 2;
/// `Span.flags` bits: the parent's remoteness is known, and it is remote.
pub const FLAG_HAS_IS_REMOTE: u32 = 0x100;
pub const FLAG_IS_REMOTE: u32 = 0x200;

/// Writes `key = value` as a `KeyValue` in field `field` of the message being written.
/// `scratch` holds values that are formatted first (addresses, labels).
pub fn key_value(
    buf: &mut Vec<u8>,
    field: u32,
    key: &str,
    value: FieldValue<'_>,
    scratch: &mut String,
) {
    message_field(buf, field, |buf| {
        bytes_field(buf, field::KEY, key.as_bytes());
        message_field(buf, field::VALUE, |buf| any_value(buf, value, scratch));
    });
}

/// A `KeyValue` whose value is a string.
pub fn string_key_value(buf: &mut Vec<u8>, field: u32, key: &str, value: &str) {
    message_field(buf, field, |buf| {
        bytes_field(buf, field::KEY, key.as_bytes());
        message_field(buf, field::VALUE, |buf| {
            bytes_field(buf, field::STRING_VALUE, value.as_bytes());
        });
    });
}

/// The fields of an `AnyValue`.
fn any_value(buf: &mut Vec<u8>, value: FieldValue<'_>, scratch: &mut String) {
    let mut formatted = |buf: &mut Vec<u8>, value: &dyn std::fmt::Display| {
        scratch.clear();
        let _ = write!(scratch, "{value}");
        bytes_field(buf, field::STRING_VALUE, scratch.as_bytes());
    };
    match value {
        FieldValue::Str(text) => bytes_field(buf, field::STRING_VALUE, text.as_bytes()),
        FieldValue::Label(label) => formatted(buf, label),
        FieldValue::Ip(ip) => formatted(buf, &ip),
        FieldValue::Int(n) => int64_field(buf, field::INT_VALUE, n),
        // OTLP integers are signed: a larger value (none of ours) keeps its digits as text.
        FieldValue::UInt(n) => match i64::try_from(n) {
            Ok(n) => int64_field(buf, field::INT_VALUE, n),
            Err(_) => formatted(buf, &n),
        },
        FieldValue::Bool(b) => varint_field(buf, field::BOOL_VALUE, u64::from(b)),
        FieldValue::Strs(list) => string_array(buf, list.iter().map(String::as_str)),
        FieldValue::Rules(rules) => string_array(buf, rules.iter().map(|r| r.id())),
    }
}

fn string_array<'a>(buf: &mut Vec<u8>, items: impl Iterator<Item = &'a str>) {
    message_field(buf, field::ARRAY_VALUE, |buf| {
        for item in items {
            message_field(buf, field::ARRAY_VALUES, |buf| {
                bytes_field(buf, field::STRING_VALUE, item.as_bytes());
            });
        }
    });
}

/// The agent's `InstrumentationScope`: name and version.
pub fn scope(name: &str, version: &str) -> Vec<u8> {
    let mut buf = Vec::new();
    bytes_field(&mut buf, field::SCOPE_NAME, name.as_bytes());
    bytes_field(&mut buf, field::SCOPE_VERSION, version.as_bytes());
    buf
}

/// Appends an `ExportTraceServiceRequest` to `out`: one `ResourceSpans` per run of spans with
/// the same resource in `spans` (pairs of encoded resource and encoded span), each with one
/// `ScopeSpans` of `scope`. Lengths are summed first, so every byte is written once.
pub fn export_request<'a>(
    out: &mut Vec<u8>,
    scope: &[u8],
    spans: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
) {
    let mut rest = spans.peekable();
    while let Some(&(resource, _)) = rest.peek() {
        let same = |(r, _): &(&[u8], &[u8])| std::ptr::eq(*r, resource);
        let group = rest.clone().take_while(same);
        let scope_spans_len = bytes_field_len(scope.len())
            + group.map(|(_, s)| bytes_field_len(s.len())).sum::<usize>();
        let resource_spans_len = bytes_field_len(resource.len()) + bytes_field_len(scope_spans_len);
        length_delimited_header(out, field::RESOURCE_SPANS, resource_spans_len);
        bytes_field(out, field::RESOURCE, resource);
        length_delimited_header(out, field::SCOPE_SPANS, scope_spans_len);
        bytes_field(out, field::SCOPE, scope);
        while let Some((_, span)) = rest.next_if(same) {
            bytes_field(out, field::SPANS, span);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::{
        collector::trace::v1::ExportTraceServiceRequest,
        common::v1::{AnyValue, KeyValue, any_value::Value},
        trace::v1::Span,
    };
    use prost::Message;

    fn decoded(key: &str, value: FieldValue<'_>) -> Option<Value> {
        let mut buf = Vec::new();
        key_value(&mut buf, 9, key, value, &mut String::new());
        let span = Span::decode(buf.as_slice()).unwrap();
        let [KeyValue { key: k, value, .. }] = span.attributes.as_slice() else {
            panic!("one attribute");
        };
        assert_eq!(k, key);
        value.clone().and_then(|v: AnyValue| v.value)
    }

    fn strings(values: &[&str]) -> Value {
        Value::ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
            values: values
                .iter()
                .map(|v| AnyValue {
                    value: Some(Value::StringValue(v.to_string())),
                })
                .collect(),
        })
    }

    #[test]
    fn every_field_value_becomes_its_otlp_value() {
        use crate::call::rule::Rule;
        let text = |t: &str| Some(Value::StringValue(t.into()));
        assert_eq!(decoded("a", FieldValue::Str("x")), text("x"));
        assert_eq!(decoded("a", FieldValue::Label(&"header")), text("header"));
        let ip = "10.0.0.9".parse().unwrap();
        assert_eq!(decoded("a", FieldValue::Ip(ip)), text("10.0.0.9"));
        assert_eq!(decoded("a", FieldValue::Int(-3)), Some(Value::IntValue(-3)));
        assert_eq!(
            decoded("a", FieldValue::UInt(8080)),
            Some(Value::IntValue(8080))
        );
        assert_eq!(
            decoded("a", FieldValue::UInt(u64::MAX)),
            text("18446744073709551615")
        );
        assert_eq!(
            decoded("a", FieldValue::Bool(false)),
            Some(Value::BoolValue(false))
        );
        let list = ["r".to_string(), "w".to_string()];
        assert_eq!(
            decoded("a", FieldValue::Strs(&list)),
            Some(strings(&["r", "w"]))
        );
        let rules = [Rule::UnauthenticatedSuccess, Rule::CleartextCredentials];
        assert_eq!(
            decoded("a", FieldValue::Rules(&rules)),
            Some(strings(&["SL-AUTH-001", "SL-AUTH-002"]))
        );
        assert_eq!(decoded("a", FieldValue::Strs(&[])), Some(strings(&[])));
    }

    #[test]
    fn a_request_groups_runs_of_spans_by_resource() {
        let resource = |name: &str| {
            let mut buf = Vec::new();
            string_key_value(&mut buf, field::RESOURCE_ATTRIBUTES, "service.name", name);
            buf
        };
        let span = |name: &str| {
            let mut buf = Vec::new();
            bytes_field(&mut buf, field::NAME, name.as_bytes());
            buf
        };
        let (a, b) = (resource("a"), resource("b"));
        let long = "x".repeat(200);
        let spans = [span("1"), span("2"), span(&long)];
        let pairs = [
            (a.as_slice(), spans[0].as_slice()),
            (a.as_slice(), spans[1].as_slice()),
            (b.as_slice(), spans[2].as_slice()),
        ];
        let mut out = Vec::new();
        export_request(
            &mut out,
            &scope("sightline", "1.2.3"),
            pairs.iter().copied(),
        );
        let request = ExportTraceServiceRequest::decode(out.as_slice()).unwrap();
        let groups: Vec<(String, Vec<String>)> = request
            .resource_spans
            .iter()
            .map(|rs| {
                let attributes = &rs.resource.as_ref().unwrap().attributes;
                let service = match attributes[0].value.as_ref().unwrap().value.as_ref() {
                    Some(Value::StringValue(s)) => s.clone(),
                    other => panic!("{other:?}"),
                };
                let [scope_spans] = rs.scope_spans.as_slice() else {
                    panic!("one scope");
                };
                let scope = scope_spans.scope.as_ref().unwrap();
                assert_eq!((&*scope.name, &*scope.version), ("sightline", "1.2.3"));
                let names = scope_spans.spans.iter().map(|s| s.name.clone()).collect();
                (service, names)
            })
            .collect();
        assert_eq!(
            groups,
            vec![
                ("a".to_string(), vec!["1".to_string(), "2".to_string()]),
                ("b".to_string(), vec![long])
            ]
        );
    }
}
