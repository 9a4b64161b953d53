//! JSON Schemas inferred from sampled JSON bodies: types and property names only, never a
//! value. Objects whose keys look like values (ids, tokens, e-mails) are maps
//! (`additionalProperties`), so no identifier or secret used as a key is kept. Depth and
//! property counts are bounded; schemas of many bodies are merged.

use serde_json::{Map, Value, json};

use super::segment::{SegmentKind, classify};

const MAX_DEPTH: usize = 8;
const MAX_PROPERTIES: usize = 64;

/// The schema of a body, when it is complete JSON.
pub fn of_body(body: &[u8]) -> Option<Value> {
    let value: Value = serde_json::from_slice(body).ok()?;
    Some(infer(&value, 0))
}

fn infer(value: &Value, depth: usize) -> Value {
    if depth >= MAX_DEPTH {
        return json!({});
    }
    match value {
        Value::Null => json!({"type": "null"}),
        Value::Bool(_) => json!({"type": "boolean"}),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({"type": "integer"}),
        Value::Number(_) => json!({"type": "number"}),
        Value::String(_) => json!({"type": "string"}),
        Value::Array(items) => {
            let merged = items
                .iter()
                .take(MAX_PROPERTIES)
                .map(|item| infer(item, depth + 1))
                .reduce(merge);
            match merged {
                Some(items) => json!({"type": "array", "items": items}),
                None => json!({"type": "array"}),
            }
        }
        Value::Object(map) => {
            if map.keys().any(|k| classify(k) != SegmentKind::Literal) {
                let values = map
                    .values()
                    .take(MAX_PROPERTIES)
                    .map(|v| infer(v, depth + 1))
                    .reduce(merge)
                    .unwrap_or_else(|| json!({}));
                return json!({"type": "object", "additionalProperties": values});
            }
            let properties: Map<String, Value> = map
                .iter()
                .take(MAX_PROPERTIES)
                .map(|(k, v)| (k.clone(), infer(v, depth + 1)))
                .collect();
            json!({"type": "object", "properties": properties})
        }
    }
}

/// Field paths a change is reported on, at most.
const MAX_FIELD_PATHS: usize = 128;
/// Nesting followed for field paths (`order.items[].sku` is depth 3).
const MAX_FIELD_DEPTH: usize = 4;

/// The named fields of a body's schema as paths: `id`, `owner.email`, `items[].sku` (the
/// body itself when it is an array: `[].id`). Maps (objects keyed by values) add no path.
pub fn field_paths(schema: &Value) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    walk_fields(schema, "", 0, &mut out);
    out
}

fn walk_fields(
    schema: &Value,
    prefix: &str,
    depth: usize,
    out: &mut std::collections::BTreeSet<String>,
) {
    if depth >= MAX_FIELD_DEPTH {
        return;
    }
    if let Some(items) = schema.get("items") {
        walk_fields(items, &format!("{prefix}[]"), depth, out);
    }
    let Some(Value::Object(properties)) = schema.get("properties") else {
        return;
    };
    for (name, value) in properties {
        if out.len() >= MAX_FIELD_PATHS {
            return;
        }
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        walk_fields(value, &path, depth + 1, out);
        out.insert(path);
    }
}

/// One schema that both bodies fit.
pub fn merge(a: Value, b: Value) -> Value {
    if a == b {
        return a;
    }
    let (ta, tb) = (type_of(&a), type_of(&b));
    match (ta.as_deref(), tb.as_deref()) {
        (Some("object"), Some("object")) => {
            let mut out = a.clone();
            let (pa, pb) = (a.get("properties"), b.get("properties"));
            match (pa, pb) {
                (Some(Value::Object(pa)), Some(Value::Object(pb))) => {
                    let mut merged = pa.clone();
                    for (k, v) in pb {
                        if merged.len() >= MAX_PROPERTIES && !merged.contains_key(k) {
                            continue;
                        }
                        let combined = match merged.remove(k) {
                            Some(existing) => merge(existing, v.clone()),
                            None => v.clone(),
                        };
                        merged.insert(k.clone(), combined);
                    }
                    out["properties"] = Value::Object(merged);
                    out
                }
                _ => json!({"type": "object"}),
            }
        }
        (Some("array"), Some("array")) => match (a.get("items"), b.get("items")) {
            (Some(ia), Some(ib)) => {
                json!({"type": "array", "items": merge(ia.clone(), ib.clone())})
            }
            (Some(i), None) | (None, Some(i)) => json!({"type": "array", "items": i}),
            (None, None) => json!({"type": "array"}),
        },
        (Some("integer"), Some("number")) | (Some("number"), Some("integer")) => {
            json!({"type": "number"})
        }
        _ => {
            // Different kinds: a list of the primitive types, or anything.
            let mut types: Vec<String> = [types(&a), types(&b)].concat();
            types.sort();
            types.dedup();
            if types
                .iter()
                .all(|t| !matches!(t.as_str(), "object" | "array"))
                && !types.is_empty()
            {
                json!({"type": types})
            } else {
                json!({})
            }
        }
    }
}

fn type_of(schema: &Value) -> Option<String> {
    schema
        .get("type")
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn types(schema: &Value) -> Vec<String> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect(),
        _ => vec!["object".to_string()], // {} means anything: not a primitive list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_name_nested_and_array_fields_but_not_map_keys() {
        let schema = of_body(
            br#"{"id":1,"owner":{"email":"a@b.c"},"items":[{"sku":"x"}],
                 "by_id":{"7f3c2a9e-1b2d-4c5e-8f90-123456789abc":{"n":1}}}"#,
        )
        .unwrap();
        let paths: Vec<String> = field_paths(&schema).into_iter().collect();
        assert_eq!(
            paths,
            [
                "by_id",
                "id",
                "items",
                "items[].sku",
                "owner",
                "owner.email"
            ]
        );
        let list = of_body(br#"[{"id":1},{"id":2,"name":"x"}]"#).unwrap();
        let paths: Vec<String> = field_paths(&list).into_iter().collect();
        assert_eq!(paths, ["[].id", "[].name"]);
    }

    #[test]
    fn types_and_names_only() {
        let schema = of_body(
            br#"{"id": 7, "name": "alice", "score": 1.5, "tags": ["a", "b"],
            "active": true, "manager": null, "address": {"city": "Lyon"}}"#,
        )
        .unwrap();
        assert_eq!(
            schema,
            json!({"type": "object", "properties": {
                "id": {"type": "integer"}, "name": {"type": "string"},
                "score": {"type": "number"}, "tags": {"type": "array", "items": {"type": "string"}},
                "active": {"type": "boolean"}, "manager": {"type": "null"},
                "address": {"type": "object", "properties": {"city": {"type": "string"}}}}})
        );
        assert!(!schema.to_string().contains("alice"));
        assert_eq!(of_body(b"{\"cut"), None);
    }

    #[test]
    fn value_like_keys_make_a_map() {
        let schema =
            of_body(br#"{"sk_live_4eC39HqLyjWDarjtT1zdp7dc": {"n": 1}, "42": {"n": 2}}"#).unwrap();
        assert_eq!(
            schema,
            json!({"type": "object", "additionalProperties":
                {"type": "object", "properties": {"n": {"type": "integer"}}}})
        );
        assert!(!schema.to_string().contains("sk_live"));
    }

    #[test]
    fn merges_bodies() {
        let a = of_body(br#"{"id": 1, "tags": []}"#).unwrap();
        let b = of_body(br#"{"id": 2.5, "name": "x", "tags": ["t"]}"#).unwrap();
        assert_eq!(
            merge(a, b),
            json!({"type": "object", "properties": {"id": {"type": "number"},
                "tags": {"type": "array", "items": {"type": "string"}}, "name": {"type": "string"}}})
        );
        assert_eq!(
            merge(json!({"type": "string"}), json!({"type": "null"})),
            json!({"type": ["null", "string"]})
        );
        assert_eq!(
            merge(json!({"type": "string"}), json!({"type": "object"})),
            json!({})
        );
    }
}
