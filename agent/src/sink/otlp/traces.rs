//! One span per API call: SERVER or CLIENT by the observing end, the call's real start and end,
//! the attributes of the JSON lines (semantic-convention names) except the observing end's
//! identity, which is the span's resource (`service.name`, `k8s.*`, `container.*`,
//! `process.*`, `host.name`). A request that carries a W3C `traceparent` makes its span a child
//! of the caller's span in the caller's trace.

use std::{borrow::Cow, collections::HashMap, str::FromStr, sync::Arc, time::Duration};

use opentelemetry::{
    InstrumentationScope, Key, KeyValue,
    trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState},
};
use opentelemetry_sdk::{
    Resource,
    trace::{IdGenerator, RandomIdGenerator, SpanData, SpanEvents, SpanExporter, SpanLinks},
};

use super::{
    attributes::{self, AttributeError},
    queue::BatchExporter,
    sampler::Sampler,
};
use crate::{
    call::{self, ApiCall},
    identity::Identity,
    sink::json,
};

/// Keys of the JSON view that are span fields, not attributes.
const SPAN_FIELDS: &[&str] = &[
    "timestamp",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "duration_ns",
    "span.kind",
];

/// Prefixes of the observing end's identity (see `sink::attributes`): resource attributes.
/// The other end's all start with `peer.` or `sightline.peer.`.
const RESOURCE_PREFIXES: &[&str] = &[
    "service.",
    "host.",
    "container.",
    "k8s.",
    "process.",
    "sightline.k8s.",
    "sightline.systemd.",
    "sightline.service.",
    "sightline.end.",
];

pub fn is_resource_key(key: &str) -> bool {
    RESOURCE_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// Distinct resources kept; past it the cache starts over.
const MAX_RESOURCES: usize = 4096;

/// Which resource a call's span belongs to: its local process incarnation and identity (the
/// identity is kept alive by the cache entry, so its address is not reused while cached).
type ResourceKey = (u32, u64, usize);

/// A span with the resource it is exported under.
pub type SpanItem = (Arc<Resource>, SpanData);

pub struct SpanBuilder {
    ids: RandomIdGenerator,
    sampler: Sampler,
    scope: InstrumentationScope,
    /// Added to every resource (config file and `OTEL_RESOURCE_ATTRIBUTES`).
    common: Vec<KeyValue>,
    resources: HashMap<ResourceKey, (Option<Arc<Identity>>, Arc<Resource>)>,
    /// Attribute names, shared by every span (the view has a fixed set of them).
    keys: HashMap<Box<str>, Key>,
}

/// Names kept by the key cache; past it (never, with a fixed view) keys are not shared.
const MAX_KEYS: usize = 1024;

fn shared_key(keys: &mut HashMap<Box<str>, Key>, name: &str) -> Key {
    if let Some(key) = keys.get(name) {
        return key.clone();
    }
    let key = Key::from(Arc::<str>::from(name));
    if keys.len() < MAX_KEYS {
        keys.insert(name.into(), key.clone());
    }
    key
}

impl SpanBuilder {
    pub fn new(scope: InstrumentationScope, common: Vec<KeyValue>, sampler: Sampler) -> Self {
        Self {
            ids: RandomIdGenerator::default(),
            sampler,
            scope,
            common,
            resources: HashMap::new(),
            keys: HashMap::new(),
        }
    }

    /// The call's span and its resource; `None` when the sampler leaves the call out.
    pub fn span(&mut self, call: &ApiCall) -> Result<Option<SpanItem>, AttributeError> {
        let parent = remote_parent(call);
        let (trace_id, flags, state, parent_span_id) = match &parent {
            Some(p) => (
                p.trace_id(),
                p.trace_flags(),
                p.trace_state().clone(),
                p.span_id(),
            ),
            None => (
                self.ids.new_trace_id(),
                TraceFlags::SAMPLED,
                TraceState::default(),
                SpanId::INVALID,
            ),
        };
        if !self.sampler.sample(parent.as_ref(), trace_id) {
            return Ok(None);
        }
        let process = call.local.process.as_ref();
        let identity = call.local.identity.clone();
        let key = (
            process.map_or(0, |p| p.pid),
            process.map_or(0, |p| p.incarnation),
            identity.as_ref().map_or(0, |i| Arc::as_ptr(i) as usize),
        );
        let cached = self.resources.get(&key).map(|(_, r)| r.clone());
        let mut resource_attributes = Vec::new();
        let mut span_attributes = Vec::with_capacity(48);
        let keys = &mut self.keys;
        attributes::for_each(&json::view(call), |name, value| {
            if SPAN_FIELDS.contains(&name) {
            } else if is_resource_key(name) {
                if cached.is_none() {
                    resource_attributes.push(KeyValue::new(name.to_string(), value));
                }
            } else {
                span_attributes.push(KeyValue::new(shared_key(keys, name), value));
            }
        })?;
        let resource = match cached {
            Some(resource) => resource,
            None => {
                let resource = Arc::new(self.resource(resource_attributes, call));
                if self.resources.len() >= MAX_RESOURCES {
                    self.resources.clear();
                }
                self.resources.insert(key, (identity, resource.clone()));
                resource
            }
        };
        let span = SpanData {
            // A caller that did not sample still gets a span here when the sampler keeps it.
            span_context: SpanContext::new(
                trace_id,
                self.ids.new_span_id(),
                flags | TraceFlags::SAMPLED,
                false,
                state,
            ),
            parent_span_id,
            parent_span_is_remote: parent_span_id != SpanId::INVALID,
            span_kind: match call.kind {
                call::SpanKind::Server => SpanKind::Server,
                call::SpanKind::Client => SpanKind::Client,
            },
            name: span_name(call),
            start_time: unix(call.start_unix_ns),
            end_time: unix(call.end_unix_ns.max(call.start_unix_ns)),
            attributes: span_attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: status(call),
            instrumentation_scope: self.scope.clone(),
        };
        Ok(Some((resource, span)))
    }

    fn resource(&self, mut attributes: Vec<KeyValue>, call: &ApiCall) -> Resource {
        if !attributes
            .iter()
            .any(|kv| kv.key.as_str() == "service.name")
        {
            let executable = call
                .local
                .process
                .as_ref()
                .map_or("unknown", |p| &*p.executable_name);
            attributes.push(KeyValue::new(
                "service.name",
                format!("unknown_service:{executable}"),
            ));
        }
        Resource::builder_empty()
            .with_attributes(self.common.iter().cloned())
            .with_attributes(attributes)
            .build()
    }
}

fn unix(ns: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_nanos(ns)
}

/// `{method} {route}` as the HTTP conventions name spans (`HTTP` for a method outside the
/// standard ones, whose values are unbounded).
fn span_name(call: &ApiCall) -> Cow<'static, str> {
    // RPC conventions: `{rpc.service}/{rpc.method}`.
    if let Some(grpc) = &call.grpc
        && let (Some(service), Some(method)) = (&grpc.service, &grpc.method)
    {
        return Cow::Owned(format!("{service}/{method}"));
    }
    const METHODS: &[&str] = &[
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
    ];
    let method = METHODS
        .iter()
        .find(|m| **m == call.method)
        .copied()
        .unwrap_or("HTTP");
    match call.route() {
        Some(route) => Cow::Owned(format!("{method} {route}")),
        None => Cow::Borrowed(method),
    }
}

/// Errors as the HTTP conventions define them: 5xx for a server, 4xx and 5xx for a client, and
/// a call that got no (complete) response.
fn status(call: &ApiCall) -> Status {
    if let Some(code) = call.grpc.as_ref().and_then(|g| g.status)
        && grpc_error(code, call.kind)
    {
        return Status::error(format!("gRPC status {code}"));
    }
    match (call.status, call.kind) {
        (Some(code @ 500..), _) | (Some(code @ 400..), call::SpanKind::Client) => {
            Status::error(format!("HTTP {code}"))
        }
        (None, _) => Status::error(call.error.clone().unwrap_or_else(|| "no response".into())),
        _ => Status::Unset,
    }
}

/// gRPC conventions: any non-OK status fails a client span; a server span fails only for
/// UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE and DATA_LOSS (the others
/// are the caller's doing).
pub fn grpc_error(code: u32, kind: call::SpanKind) -> bool {
    match kind {
        call::SpanKind::Client => code != 0,
        call::SpanKind::Server => matches!(code, 2 | 4 | 12 | 13 | 14 | 15),
    }
}

/// The caller's span from the request's `traceparent` (W3C Trace Context level 1), with its
/// `tracestate`. A missing, repeated or malformed `traceparent` is ignored.
fn remote_parent(call: &ApiCall) -> Option<SpanContext> {
    let mut values = call
        .request_headers
        .iter()
        .filter(|h| h.name == "traceparent");
    let header = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let text = std::str::from_utf8(&header.value).ok()?.trim();
    let parts: Vec<&str> = text.split('-').collect();
    let [version, trace, span, flags, rest @ ..] = parts.as_slice() else {
        return None;
    };
    let lower_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    // Version 00 has exactly four fields; a later version may append more.
    if !lower_hex(version, 2) || *version == "ff" || (*version == "00" && !rest.is_empty()) {
        return None;
    }
    if !lower_hex(trace, 32) || !lower_hex(span, 16) || !lower_hex(flags, 2) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let state: Vec<&str> = call
        .request_headers
        .iter()
        .filter(|h| h.name == "tracestate")
        .filter_map(|h| std::str::from_utf8(&h.value).ok())
        .collect();
    let state = TraceState::from_str(&state.join(",")).unwrap_or_default();
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
        true,
        state,
    ))
}

/// Sends spans, one request per resource in the batch.
pub struct SpanBatches<E> {
    pub exporter: E,
}

impl<E: SpanExporter + 'static> BatchExporter for SpanBatches<E> {
    type Item = SpanItem;

    async fn export(&mut self, batch: &mut Vec<Self::Item>) -> Result<(), String> {
        batch.sort_by_key(|(resource, _)| Arc::as_ptr(resource) as usize);
        while let Some((resource, _)) = batch.first() {
            let resource = resource.clone();
            let n = batch
                .iter()
                .take_while(|(r, _)| Arc::ptr_eq(r, &resource))
                .count();
            self.exporter.set_resource(&resource);
            let spans: Vec<SpanData> = batch[..n].iter().map(|(_, s)| s.clone()).collect();
            self.exporter
                .export(spans)
                .await
                .map_err(|e| e.to_string())?;
            batch.drain(..n);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::attributes as identity_attributes;
    use opentelemetry::Value;

    fn text(value: &Value) -> String {
        value.as_str().into_owned()
    }

    fn builder() -> SpanBuilder {
        SpanBuilder::new(
            InstrumentationScope::builder("sightline").build(),
            vec![KeyValue::new("k8s.cluster.name", "prod")],
            Sampler::default(),
        )
    }

    fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
        attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    #[test]
    fn a_call_becomes_a_server_span_with_its_times_attributes_and_resource() {
        let call = crate::call::tests::sealed();
        let (resource, span) = builder().span(&call).unwrap().unwrap();
        assert_eq!(span.span_kind, SpanKind::Server);
        assert_eq!(span.name, "GET");
        assert_eq!(span.start_time, unix(call.start_unix_ns));
        assert_eq!(span.end_time, unix(call.end_unix_ns));
        assert_eq!(span.parent_span_id, SpanId::INVALID);
        assert_ne!(span.span_context.trace_id(), TraceId::INVALID);
        assert_eq!(span.status, Status::Unset);
        let attrs = &span.attributes;
        assert_eq!(
            attribute(attrs, "http.request.method"),
            Some(&Value::from("GET"))
        );
        assert_eq!(
            attribute(attrs, "http.response.status_code"),
            Some(&Value::I64(200))
        );
        assert_eq!(
            attribute(attrs, "url.path"),
            Some(&Value::from("/users/42"))
        );
        assert_eq!(attribute(attrs, "server.port"), Some(&Value::I64(8080)));
        assert_eq!(
            attribute(attrs, "client.address"),
            Some(&Value::from("10.0.0.9"))
        );
        assert_eq!(
            attribute(attrs, "sightline.auth.scheme"),
            Some(&Value::from("bearer-opaque"))
        );
        assert!(attribute(attrs, "process.pid").is_none());
        assert!(attribute(attrs, "start_time_unix_nano").is_none());
        let resource_value = |key: &str| resource.get(&opentelemetry::Key::from(key.to_string()));
        assert_eq!(resource_value("process.pid"), Some(Value::I64(10)));
        assert_eq!(
            resource_value("process.executable.name"),
            Some(Value::from("api"))
        );
        assert_eq!(
            resource_value("service.name"),
            Some(Value::from("unknown_service:api"))
        );
        assert_eq!(
            resource_value("k8s.cluster.name"),
            Some(Value::from("prod"))
        );
        // Secrets were removed before: no attribute carries them.
        for kv in attrs {
            assert!(!text(&kv.value).contains("s3cr3t"), "{kv:?}");
        }
    }

    #[test]
    fn the_same_end_shares_one_resource() {
        let mut builder = builder();
        let (a, _) = builder
            .span(&crate::call::tests::sealed())
            .unwrap()
            .unwrap();
        let (b, _) = builder
            .span(&crate::call::tests::sealed())
            .unwrap()
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn identity_attributes_of_the_local_end_are_resource_keys_and_the_peers_are_not() {
        for attr in [
            identity_attributes::SERVICE_NAME,
            identity_attributes::SERVICE_NAMESPACE,
            identity_attributes::NAME_SOURCE,
            identity_attributes::KIND,
            identity_attributes::HOST_NAME,
            identity_attributes::CGROUP,
            identity_attributes::CONTAINER_ID,
            identity_attributes::CONTAINER_RUNTIME,
            identity_attributes::CONTAINER_NAME,
            identity_attributes::SYSTEMD_UNIT,
            identity_attributes::K8S_NAMESPACE,
            identity_attributes::K8S_POD_NAME,
            identity_attributes::K8S_POD_UID,
            identity_attributes::K8S_CONTAINER,
            identity_attributes::K8S_NODE,
            identity_attributes::K8S_SERVICE_ACCOUNT,
            identity_attributes::K8S_SERVICE,
        ] {
            assert!(is_resource_key(attr.local), "{}", attr.local);
            assert!(!is_resource_key(attr.peer), "{}", attr.peer);
        }
        // Call attributes that look alike stay on the span.
        for key in [
            "server.address",
            "sightline.cgroup.id",
            "sightline.auth.scheme",
        ] {
            assert!(!is_resource_key(key), "{key}");
        }
    }

    fn with_headers(headers: &[(&str, &str)]) -> ApiCall {
        let mut call = crate::call::tests::sealed();
        call.request_headers = crate::call::tests::headers(headers);
        call
    }

    #[test]
    fn a_traceparent_makes_the_span_a_child_of_the_callers() {
        let call = with_headers(&[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", "congo=t61rcWkgMzE"),
        ]);
        let (_, span) = builder().span(&call).unwrap().unwrap();
        assert_eq!(
            span.span_context.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert_eq!(
            span.parent_span_id,
            SpanId::from_hex("00f067aa0ba902b7").unwrap()
        );
        assert!(span.parent_span_is_remote);
        assert_ne!(span.span_context.span_id(), span.parent_span_id);
        assert!(span.span_context.is_sampled());
        assert_eq!(
            span.span_context.trace_state().get("congo"),
            Some("t61rcWkgMzE")
        );
    }

    #[test]
    fn malformed_or_repeated_traceparents_are_ignored() {
        for value in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "garbage",
        ] {
            let (_, span) = builder()
                .span(&with_headers(&[("traceparent", value)]))
                .unwrap()
                .unwrap();
            assert_eq!(span.parent_span_id, SpanId::INVALID, "{value}");
        }
        let twice = with_headers(&[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        ]);
        assert_eq!(
            builder().span(&twice).unwrap().unwrap().1.parent_span_id,
            SpanId::INVALID
        );
        // A later version may add fields.
        let later = with_headers(&[(
            "traceparent",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more",
        )]);
        let (_, span) = builder().span(&later).unwrap().unwrap();
        assert_eq!(
            span.parent_span_id,
            SpanId::from_hex("00f067aa0ba902b7").unwrap()
        );
    }

    #[test]
    fn a_caller_that_did_not_sample_gets_no_span_from_the_default_sampler() {
        let unsampled = with_headers(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        )]);
        assert!(builder().span(&unsampled).unwrap().is_none());
        let mut always = SpanBuilder::new(
            InstrumentationScope::builder("sightline").build(),
            Vec::new(),
            Sampler::parse("always_on", None).unwrap(),
        );
        let (_, span) = always.span(&unsampled).unwrap().unwrap();
        assert!(span.span_context.is_sampled());
        assert_eq!(
            span.span_context.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
    }

    #[test]
    fn errors_follow_the_http_conventions() {
        let mut call = crate::call::tests::sealed();
        call.status = Some(404);
        assert_eq!(status(&call), Status::Unset);
        call.kind = call::SpanKind::Client;
        assert_eq!(status(&call), Status::error("HTTP 404"));
        call.status = None;
        call.error = Some("connection closed".into());
        assert_eq!(status(&call), Status::error("connection closed"));
        call.method = "FOO".into();
        assert_eq!(span_name(&call), "HTTP");
    }
}
