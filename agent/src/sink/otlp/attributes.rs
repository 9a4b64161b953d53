//! OTLP attributes from the same views the JSON lines are written from, so every output uses
//! one list of names: a serde `Serializer` that turns a flat object (a struct or map, nested
//! ones flattened by serde) into (name, value) pairs, and a converter for JSON values
//! (findings' evidence).

use opentelemetry::{Array, StringValue, Value, logs::AnyValue};
use serde::ser::{self, Impossible, Serialize};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AttributeError(String);

impl ser::Error for AttributeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// Calls `f` with each field of `object` that has a value (`None` fields are left out).
pub fn for_each<T: Serialize>(
    object: &T,
    f: impl FnMut(&str, Value),
) -> Result<(), AttributeError> {
    object.serialize(Fields {
        f,
        key: String::with_capacity(64),
    })
}

/// A JSON value as a log attribute value (`null` as `None`).
pub fn any_value(value: &serde_json::Value) -> Option<AnyValue> {
    use serde_json::Value as Json;
    Some(match value {
        Json::Null => return None,
        Json::Bool(b) => AnyValue::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => AnyValue::Int(i),
            None => AnyValue::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => AnyValue::String(s.clone().into()),
        Json::Array(items) => {
            AnyValue::ListAny(Box::new(items.iter().filter_map(any_value).collect()))
        }
        Json::Object(map) => AnyValue::Map(Box::new(
            map.iter()
                .filter_map(|(k, v)| Some((k.clone().into(), any_value(v)?)))
                .collect(),
        )),
    })
}

/// The top level: only a struct or a map.
struct Fields<F> {
    f: F,
    /// The key of the map entry being written.
    key: String,
}

fn unsupported<T>(what: &str) -> Result<T, AttributeError> {
    Err(AttributeError(format!(
        "{what} cannot be an attribute object"
    )))
}

impl<F: FnMut(&str, Value)> ser::Serializer for Fields<F> {
    type Ok = ();
    type Error = AttributeError;
    type SerializeSeq = Impossible<(), AttributeError>;
    type SerializeTuple = Impossible<(), AttributeError>;
    type SerializeTupleStruct = Impossible<(), AttributeError>;
    type SerializeTupleVariant = Impossible<(), AttributeError>;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), AttributeError>;

    fn serialize_map(self, _len: Option<usize>) -> Result<Self, AttributeError> {
        Ok(self)
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self, AttributeError> {
        Ok(self)
    }
    fn serialize_bool(self, _: bool) -> Result<(), AttributeError> {
        unsupported("a boolean")
    }
    fn serialize_i64(self, _: i64) -> Result<(), AttributeError> {
        unsupported("a number")
    }
    fn serialize_u64(self, _: u64) -> Result<(), AttributeError> {
        unsupported("a number")
    }
    fn serialize_f64(self, _: f64) -> Result<(), AttributeError> {
        unsupported("a number")
    }
    fn serialize_str(self, _: &str) -> Result<(), AttributeError> {
        unsupported("a string")
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), AttributeError> {
        unsupported("bytes")
    }
    fn serialize_none(self) -> Result<(), AttributeError> {
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), AttributeError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), AttributeError> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), AttributeError> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), AttributeError> {
        unsupported("an enum")
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), AttributeError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), AttributeError> {
        unsupported("an enum")
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, AttributeError> {
        unsupported("a list")
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, AttributeError> {
        unsupported("a tuple")
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, AttributeError> {
        unsupported("a tuple")
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, AttributeError> {
        unsupported("an enum")
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, AttributeError> {
        unsupported("an enum")
    }
    // Integers narrower than 64 bits go through the 64-bit methods.
    fn serialize_i8(self, v: i8) -> Result<(), AttributeError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), AttributeError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), AttributeError> {
        self.serialize_i64(v.into())
    }
    fn serialize_u8(self, v: u8) -> Result<(), AttributeError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), AttributeError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), AttributeError> {
        self.serialize_u64(v.into())
    }
    fn serialize_f32(self, v: f32) -> Result<(), AttributeError> {
        self.serialize_f64(v.into())
    }
    fn serialize_char(self, _: char) -> Result<(), AttributeError> {
        unsupported("a character")
    }
}

impl<F: FnMut(&str, Value)> ser::SerializeMap for Fields<F> {
    type Ok = ();
    type Error = AttributeError;

    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), AttributeError> {
        // Into a buffer reused for every key: no allocation per attribute.
        self.key.clear();
        key.serialize(KeyWriter(&mut self.key))
    }

    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), AttributeError> {
        if let Some(value) = value.serialize(Scalar)? {
            (self.f)(&self.key, value);
        }
        Ok(())
    }

    fn end(self) -> Result<(), AttributeError> {
        Ok(())
    }
}

impl<F: FnMut(&str, Value)> ser::SerializeStruct for Fields<F> {
    type Ok = ();
    type Error = AttributeError;

    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), AttributeError> {
        if let Some(value) = value.serialize(Scalar)? {
            (self.f)(key, value);
        }
        Ok(())
    }

    fn end(self) -> Result<(), AttributeError> {
        Ok(())
    }
}

/// A map key: only a string, written into the buffer it holds.
struct KeyWriter<'a>(&'a mut String);

impl ser::Serializer for KeyWriter<'_> {
    type Ok = ();
    type Error = AttributeError;
    type SerializeSeq = Impossible<(), AttributeError>;
    type SerializeTuple = Impossible<(), AttributeError>;
    type SerializeTupleStruct = Impossible<(), AttributeError>;
    type SerializeTupleVariant = Impossible<(), AttributeError>;
    type SerializeMap = Impossible<(), AttributeError>;
    type SerializeStruct = Impossible<(), AttributeError>;
    type SerializeStructVariant = Impossible<(), AttributeError>;

    fn serialize_str(self, v: &str) -> Result<(), AttributeError> {
        self.0.push_str(v);
        Ok(())
    }
    fn serialize_bool(self, _: bool) -> Result<(), AttributeError> {
        unsupported("a key that is not a string")
    }
    fn serialize_i8(self, _: i8) -> Result<(), AttributeError> {
        unsupported("a key that is not a string")
    }
    fn serialize_i16(self, _: i16) -> Result<(), AttributeError> {
        unsupported("a key that is not a string")
    }
    fn serialize_i32(self, _: i32) -> Result<(), AttributeError> {
        unsupported("a key that is not a string")
    }
    fn serialize_u8(self, _: u8) -> Result<(), AttributeError> {
        unsupported("a key that is not a string")
    }
    fn serialize_u16(self, _: u16) -> Result<(), AttributeError> {
        unsupported("a key that is not a string")
    }
    fn serialize_u32(self, _: u32) -> Result<(), AttributeError> {
        unsupported("a key that is not a string")
    }
    fn serialize_f32(self, _: f32) -> Result<(), AttributeError> {
        unsupported("a key that is not a string")
    }
    fn serialize_i64(self, _: i64) -> Result<(), AttributeError> {
        unsupported("a key that is not a string")
    }
    fn serialize_u64(self, _: u64) -> Result<(), AttributeError> {
        unsupported("a key that is not a string")
    }
    fn serialize_f64(self, _: f64) -> Result<(), AttributeError> {
        unsupported("a key that is not a string")
    }
    fn serialize_char(self, v: char) -> Result<(), AttributeError> {
        self.0.push(v);
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), AttributeError> {
        unsupported("a key that is not a string")
    }
    fn serialize_none(self) -> Result<(), AttributeError> {
        unsupported("a key that is not a string")
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), AttributeError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), AttributeError> {
        unsupported("a key that is not a string")
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), AttributeError> {
        unsupported("a key that is not a string")
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), AttributeError> {
        self.0.push_str(variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), AttributeError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), AttributeError> {
        unsupported("a key that is not a string")
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, AttributeError> {
        unsupported("a key that is not a string")
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, AttributeError> {
        unsupported("a key that is not a string")
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, AttributeError> {
        unsupported("a key that is not a string")
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, AttributeError> {
        unsupported("a key that is not a string")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, AttributeError> {
        unsupported("a key that is not a string")
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, AttributeError> {
        unsupported("a key that is not a string")
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, AttributeError> {
        unsupported("a key that is not a string")
    }
}

/// One attribute value: a scalar, or a list of scalars of one type.
struct Scalar;

impl ser::Serializer for Scalar {
    type Ok = Option<Value>;
    type Error = AttributeError;
    type SerializeSeq = List;
    type SerializeTuple = List;
    type SerializeTupleStruct = Impossible<Option<Value>, AttributeError>;
    type SerializeTupleVariant = Impossible<Option<Value>, AttributeError>;
    type SerializeMap = Impossible<Option<Value>, AttributeError>;
    type SerializeStruct = Impossible<Option<Value>, AttributeError>;
    type SerializeStructVariant = Impossible<Option<Value>, AttributeError>;

    fn serialize_bool(self, v: bool) -> Result<Option<Value>, AttributeError> {
        Ok(Some(Value::Bool(v)))
    }
    fn serialize_i64(self, v: i64) -> Result<Option<Value>, AttributeError> {
        Ok(Some(Value::I64(v)))
    }
    fn serialize_u64(self, v: u64) -> Result<Option<Value>, AttributeError> {
        // OTLP integers are signed: a larger value (none of ours) keeps its digits as text.
        Ok(Some(match i64::try_from(v) {
            Ok(i) => Value::I64(i),
            Err(_) => Value::String(v.to_string().into()),
        }))
    }
    fn serialize_f64(self, v: f64) -> Result<Option<Value>, AttributeError> {
        Ok(Some(Value::F64(v)))
    }
    fn serialize_str(self, v: &str) -> Result<Option<Value>, AttributeError> {
        // Shared: a span is cloned for each export attempt, its strings are not.
        Ok(Some(Value::String(std::sync::Arc::<str>::from(v).into())))
    }
    fn serialize_char(self, v: char) -> Result<Option<Value>, AttributeError> {
        Ok(Some(Value::String(v.to_string().into())))
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<Option<Value>, AttributeError> {
        unsupported("bytes")
    }
    fn serialize_none(self) -> Result<Option<Value>, AttributeError> {
        Ok(None)
    }
    fn serialize_some<T: ?Sized + Serialize>(
        self,
        value: &T,
    ) -> Result<Option<Value>, AttributeError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Option<Value>, AttributeError> {
        Ok(None)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Option<Value>, AttributeError> {
        Ok(None)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Option<Value>, AttributeError> {
        Ok(Some(Value::String(StringValue::from(variant))))
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Option<Value>, AttributeError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Option<Value>, AttributeError> {
        unsupported("an enum with data")
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<List, AttributeError> {
        Ok(List(Vec::with_capacity(len.unwrap_or(0))))
    }
    fn serialize_tuple(self, len: usize) -> Result<List, AttributeError> {
        Ok(List(Vec::with_capacity(len)))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, AttributeError> {
        unsupported("a tuple struct")
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, AttributeError> {
        unsupported("an enum with data")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, AttributeError> {
        unsupported("a nested object")
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, AttributeError> {
        unsupported("a nested object")
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, AttributeError> {
        unsupported("an enum with data")
    }
    fn serialize_i8(self, v: i8) -> Result<Option<Value>, AttributeError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<Option<Value>, AttributeError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<Option<Value>, AttributeError> {
        self.serialize_i64(v.into())
    }
    fn serialize_u8(self, v: u8) -> Result<Option<Value>, AttributeError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<Option<Value>, AttributeError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<Option<Value>, AttributeError> {
        self.serialize_u64(v.into())
    }
    fn serialize_f32(self, v: f32) -> Result<Option<Value>, AttributeError> {
        self.serialize_f64(v.into())
    }
}

/// A list attribute: every element must have the first one's type.
struct List(Vec<Value>);

impl List {
    fn push<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), AttributeError> {
        if let Some(value) = value.serialize(Scalar)? {
            self.0.push(value);
        }
        Ok(())
    }

    fn finish(self) -> Result<Option<Value>, AttributeError> {
        fn all<T>(values: &[Value], f: impl Fn(&Value) -> Option<T>) -> Option<Vec<T>> {
            values.iter().map(f).collect()
        }
        let values = self.0;
        let array = if let Some(v) = all(&values, |v| match v {
            Value::String(s) => Some(s.clone()),
            _ => None,
        }) {
            Array::String(v)
        } else if let Some(v) = all(&values, |v| match v {
            Value::I64(i) => Some(*i),
            _ => None,
        }) {
            Array::I64(v)
        } else if let Some(v) = all(&values, |v| match v {
            Value::F64(f) => Some(*f),
            _ => None,
        }) {
            Array::F64(v)
        } else if let Some(v) = all(&values, |v| match v {
            Value::Bool(b) => Some(*b),
            _ => None,
        }) {
            Array::Bool(v)
        } else {
            return unsupported("a list of mixed types");
        };
        Ok(Some(Value::Array(array)))
    }
}

impl ser::SerializeSeq for List {
    type Ok = Option<Value>;
    type Error = AttributeError;
    fn serialize_element<T: ?Sized + Serialize>(
        &mut self,
        value: &T,
    ) -> Result<(), AttributeError> {
        self.push(value)
    }
    fn end(self) -> Result<Option<Value>, AttributeError> {
        self.finish()
    }
}

impl ser::SerializeTuple for List {
    type Ok = Option<Value>;
    type Error = AttributeError;
    fn serialize_element<T: ?Sized + Serialize>(
        &mut self,
        value: &T,
    ) -> Result<(), AttributeError> {
        self.push(value)
    }
    fn end(self) -> Result<Option<Value>, AttributeError> {
        self.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Inner {
        #[serde(rename = "b.flag")]
        flag: bool,
    }

    #[derive(serde::Serialize)]
    struct Outer<'a> {
        #[serde(rename = "a.name")]
        name: &'a str,
        #[serde(rename = "a.port")]
        port: u16,
        #[serde(rename = "a.absent")]
        absent: Option<u32>,
        #[serde(rename = "a.list")]
        list: Vec<&'a str>,
        #[serde(flatten)]
        inner: Inner,
        #[serde(rename = "a.address")]
        address: std::net::IpAddr,
    }

    #[test]
    fn flattens_fields_into_typed_attributes() {
        let outer = Outer {
            name: "api",
            port: 8080,
            absent: None,
            list: vec!["x", "y"],
            inner: Inner { flag: true },
            address: "10.0.0.1".parse().unwrap(),
        };
        let mut out = Vec::new();
        for_each(&outer, |k, v| out.push((k.to_string(), v))).unwrap();
        assert_eq!(
            out,
            vec![
                ("a.name".to_string(), Value::from("api")),
                ("a.port".to_string(), Value::I64(8080)),
                (
                    "a.list".to_string(),
                    Value::Array(Array::String(vec!["x".into(), "y".into()]))
                ),
                ("b.flag".to_string(), Value::Bool(true)),
                ("a.address".to_string(), Value::from("10.0.0.1")),
            ]
        );
    }

    #[test]
    fn nested_objects_are_an_error_not_a_silent_loss() {
        #[derive(serde::Serialize)]
        struct Nested {
            inner: Inner,
        }
        let error = for_each(
            &Nested {
                inner: Inner { flag: false },
            },
            |_, _| {},
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "a nested object cannot be an attribute object"
        );
    }

    #[test]
    fn json_values_become_log_values() {
        let value = serde_json::json!({"n": 3, "list": ["a"], "none": null, "f": 1.5});
        let AnyValue::Map(map) = any_value(&value).unwrap() else {
            panic!("not a map");
        };
        assert_eq!(map.len(), 3);
        assert_eq!(map["n"], AnyValue::Int(3));
        assert_eq!(map["f"], AnyValue::Double(1.5));
    }
}
