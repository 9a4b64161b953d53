//! `sightline openapi --service NAME`: an OpenAPI 3.1 document reconstructed from traffic —
//! the service's templated paths and their parameters, methods, query parameters seen, status
//! codes, content types, JSON Schemas inferred from sampled bodies (types only, never values)
//! and the security schemes its clients used.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::endpoint::{EndpointKey, EndpointStats};

/// The document for the endpoints of one API (already selected).
pub fn document(api: &str, endpoints: &[(EndpointKey, EndpointStats)]) -> Value {
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    let mut schemes: BTreeMap<String, Value> = BTreeMap::new();
    for (key, stats) in endpoints {
        let method = key.method.to_ascii_lowercase();
        if !matches!(
            method.as_str(),
            "get" | "put" | "post" | "delete" | "options" | "head" | "patch" | "trace"
        ) {
            continue; // `_OTHER` has no place in OpenAPI
        }
        let operation = operation(key, stats, &mut schemes);
        paths
            .entry(&key.route)
            .or_default()
            .insert(method, operation);
    }
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": format!("{api} (reconstructed from traffic by Sightline)"),
            "version": "observed",
        },
        "paths": paths,
    });
    if !schemes.is_empty() {
        doc["components"] = json!({"securitySchemes": schemes});
    }
    doc
}

fn operation(
    key: &EndpointKey,
    stats: &EndpointStats,
    schemes: &mut BTreeMap<String, Value>,
) -> Value {
    let mut parameters: Vec<Value> = key
        .route
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
        })
        .collect();
    parameters.extend(stats.query_params.iter().map(|name| {
        json!({"name": name, "in": "query", "required": false, "schema": {"type": "string"}})
    }));
    let response_content = content(
        &stats.response_content_types,
        stats.response_schema.as_ref(),
    );
    let mut responses = Map::new();
    for status in &stats.status_codes {
        let mut response = json!({"description": format!("Observed {status}")});
        if let Some(content) = &response_content
            && !matches!(status, 204 | 304)
        {
            response["content"] = content.clone();
        }
        responses.insert(status.to_string(), response);
    }
    if responses.is_empty() {
        responses.insert(
            "default".to_string(),
            json!({"description": "No response observed"}),
        );
    }
    let mut op = json!({
        "operationId": operation_id(key),
        "responses": responses,
        "x-sightline": {"calls": stats.calls, "class": stats.class.map(|c| c.name())},
    });
    if !parameters.is_empty() {
        op["parameters"] = Value::Array(parameters);
    }
    if let Some(content) = content(&stats.request_content_types, stats.request_schema.as_ref()) {
        op["requestBody"] = json!({"content": content});
    }
    let mut security = Vec::new();
    for scheme in &stats.auth_schemes {
        match security_scheme(scheme) {
            Some((name, definition)) => {
                schemes.insert(name.clone(), definition);
                security.push(json!({ name: [] }));
            }
            None if scheme == "none" => security.push(json!({})),
            None => {}
        }
    }
    if !security.is_empty() {
        op["security"] = Value::Array(security);
    }
    op
}

/// `content` of a request or response: each media type seen, JSON ones with the schema.
fn content(types: &std::collections::BTreeSet<String>, schema: Option<&Value>) -> Option<Value> {
    let content: Map<String, Value> = types
        .iter()
        .filter(|t| t.contains('/'))
        .map(|t| {
            let is_json = t == "application/json" || t.ends_with("+json");
            let media = match schema.filter(|_| is_json) {
                Some(schema) => json!({"schema": schema}),
                None => json!({}),
            };
            (t.clone(), media)
        })
        .collect();
    (!content.is_empty()).then_some(Value::Object(content))
}

/// A scheme name the inventory recorded -> (component name, security scheme).
fn security_scheme(scheme: &str) -> Option<(String, Value)> {
    let (kind, name) = scheme.split_once(':').unwrap_or((scheme, ""));
    Some(match kind {
        // `bearer`: databases written before the JWT/opaque split.
        "bearer" | "bearer-opaque" => (
            "bearerAuth".into(),
            json!({"type": "http", "scheme": "bearer"}),
        ),
        "bearer-jwt" => (
            "bearerJwtAuth".into(),
            json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}),
        ),
        "session-cookie" => (
            format!("sessionCookie_{name}"),
            json!({"type": "apiKey", "in": "cookie", "name": name}),
        ),
        "basic" => (
            "basicAuth".into(),
            json!({"type": "http", "scheme": "basic"}),
        ),
        "digest" => (
            "digestAuth".into(),
            json!({"type": "http", "scheme": "digest"}),
        ),
        "negotiate" => (
            "negotiateAuth".into(),
            json!({"type": "http", "scheme": "negotiate"}),
        ),
        "api-key-header" => (
            format!("apiKeyHeader_{name}"),
            json!({"type": "apiKey", "in": "header", "name": name}),
        ),
        "api-key-query" => (
            format!("apiKeyQuery_{name}"),
            json!({"type": "apiKey", "in": "query", "name": name}),
        ),
        _ => return None,
    })
}

/// `GET /users/{id}` -> `get_users_id`.
fn operation_id(key: &EndpointKey) -> String {
    let mut id = key.method.to_ascii_lowercase();
    for part in key.route.split('/').filter(|s| !s.is_empty()) {
        id.push('_');
        id.extend(
            part.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_'),
        );
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::endpoint::Direction;

    #[test]
    fn builds_paths_parameters_responses_and_security() {
        let key = EndpointKey {
            api: "shop".into(),
            namespace: String::new(),
            direction: Direction::Served,
            method: "GET".into(),
            route: "/users/{id}".into(),
        };
        let mut stats = EndpointStats {
            calls: 3,
            ..EndpointStats::default()
        };
        stats.status_codes.extend([200, 404]);
        stats.query_params.insert("page".into());
        stats
            .response_content_types
            .insert("application/json".into());
        stats.response_schema =
            Some(json!({"type": "object", "properties": {"id": {"type": "integer"}}}));
        stats
            .auth_schemes
            .extend(["bearer-opaque".to_string(), "none".to_string()]);
        let doc = document("shop", &[(key, stats)]);
        let op = &doc["paths"]["/users/{id}"]["get"];
        assert_eq!(op["operationId"], "get_users_id");
        assert_eq!(op["parameters"][0]["in"], "path");
        assert_eq!(op["parameters"][1]["name"], "page");
        assert_eq!(
            op["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["id"]["type"],
            "integer"
        );
        assert_eq!(op["security"], json!([{"bearerAuth": []}, {}]));
        assert_eq!(
            doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
            "bearer"
        );
        assert_eq!(doc["openapi"], "3.1.0");
    }
}
