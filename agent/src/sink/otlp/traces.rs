//! One span per API call: SERVER or CLIENT by the observing end, the call's real start and end,
//! the attributes of the JSON lines (semantic-convention names) except the observing end's
//! identity, which is the span's resource (`service.name`, `k8s.*`, `container.*`,
//! `process.*`, `host.name`). A request that carries a W3C `traceparent` makes its span a child
//! of the caller's span in the caller's trace.

use std::{borrow::Cow, collections::HashMap, str::FromStr, sync::Arc, time::Duration};

use opentelemetry::{
    Array, Context, InstrumentationScope, KeyValue, StringValue, Value,
    trace::{
        SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    },
};
use opentelemetry_sdk::{
    Resource,
    trace::{
        IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample, SpanData,
        SpanEvents, SpanExporter, SpanLinks,
    },
};

use super::queue::BatchExporter;
use crate::{
    call::{self, ApiCall},
    identity::Identity,
    sink::call_fields::{self, FieldValue, FieldVisitor, Place},
};

/// Distinct resources kept; past it the cache starts over.
const MAX_RESOURCES: usize = 4096;

/// Which resource a call's span belongs to: its local process incarnation and identity (the
/// identity is kept alive by the cache entry, so its address is not reused while cached).
type ResourceKey = (u32, u64, usize);

/// A span with the resource it is exported under.
pub type SpanItem = (Arc<Resource>, SpanData);

pub struct SpanBuilder {
    ids: RandomIdGenerator,
    /// The SDK's sampler (`settings` builds it from the config file or `OTEL_TRACES_SAMPLER`).
    sampler: Sampler,
    scope: InstrumentationScope,
    /// Added to every resource (config file and `OTEL_RESOURCE_ATTRIBUTES`).
    common: Vec<KeyValue>,
    resources: HashMap<ResourceKey, (Option<Arc<Identity>>, Arc<Resource>)>,
}

/// Sorts a call's fields into span attributes and, when its resource is not cached yet,
/// resource attributes.
struct SpanFields<'a> {
    attributes: &'a mut Vec<KeyValue>,
    resource: Option<&'a mut Vec<KeyValue>>,
}

impl FieldVisitor for SpanFields<'_> {
    fn field(&mut self, place: Place, key: &'static str, value: FieldValue<'_>) {
        match place {
            Place::Span => {}
            Place::Resource => {
                if let Some(resource) = &mut self.resource {
                    resource.push(KeyValue::new(key, otlp_value(value)));
                }
            }
            Place::Attribute => self.attributes.push(KeyValue::new(key, otlp_value(value))),
        }
    }
}

/// A field value as an OTLP attribute value.
fn otlp_value(value: FieldValue<'_>) -> Value {
    // Shared strings: a span is cloned for each export attempt, its strings are not.
    let shared = |text: &str| StringValue::from(Arc::<str>::from(text));
    match value {
        FieldValue::Str(text) => Value::String(shared(text)),
        FieldValue::Label(label) => Value::String(label.to_string().into()),
        FieldValue::Ip(ip) => Value::String(ip.to_string().into()),
        FieldValue::Int(n) => Value::I64(n),
        // OTLP integers are signed: a larger value (none of ours) keeps its digits as text.
        FieldValue::UInt(n) => match i64::try_from(n) {
            Ok(n) => Value::I64(n),
            Err(_) => Value::String(n.to_string().into()),
        },
        FieldValue::Bool(b) => Value::Bool(b),
        FieldValue::Strs(list) => Value::Array(Array::String(
            list.iter().map(|text| shared(text)).collect(),
        )),
        FieldValue::Rules(rules) => Value::Array(Array::String(
            rules.iter().map(|r| StringValue::from(r.id())).collect(),
        )),
    }
}

impl SpanBuilder {
    pub fn new(scope: InstrumentationScope, common: Vec<KeyValue>, sampler: Sampler) -> Self {
        Self {
            ids: RandomIdGenerator::default(),
            sampler,
            scope,
            common,
            resources: HashMap::new(),
        }
    }

    /// The call's span and its resource; `None` when the sampler leaves the call out.
    pub fn span(&mut self, call: &ApiCall) -> Option<SpanItem> {
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
        let span_kind = match call.kind {
            call::SpanKind::Server => SpanKind::Server,
            call::SpanKind::Client => SpanKind::Client,
        };
        if !self.sampled(parent, trace_id, &span_kind) {
            return None;
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
        call_fields::walk(
            call,
            &mut SpanFields {
                attributes: &mut span_attributes,
                resource: cached.is_none().then_some(&mut resource_attributes),
            },
        );
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
            span_kind,
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
        Some((resource, span))
    }

    /// The sampler's decision, taken before the span is built so that an unsampled call costs
    /// nothing more.
    fn sampled(&self, parent: Option<SpanContext>, trace_id: TraceId, kind: &SpanKind) -> bool {
        let parent = parent.map(|p| Context::new().with_remote_span_context(p));
        let result = self
            .sampler
            .should_sample(parent.as_ref(), trace_id, "", kind, &[], &[]);
        result.decision == SamplingDecision::RecordAndSample
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
///
/// Not the SDK's `TraceContextPropagator`: it accepts trace and span ids of the wrong length
/// (it parses them as numbers: a 31-digit trace id passes), which W3C Trace Context refuses, and
/// it sees only one of repeated headers.
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

    fn text(value: &Value) -> String {
        value.as_str().into_owned()
    }

    fn builder() -> SpanBuilder {
        SpanBuilder::new(
            InstrumentationScope::builder("sightline").build(),
            vec![KeyValue::new("k8s.cluster.name", "prod")],
            Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
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
        let (resource, span) = builder().span(&call).unwrap();
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
        let (a, _) = builder.span(&crate::call::tests::sealed()).unwrap();
        let (b, _) = builder.span(&crate::call::tests::sealed()).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn the_observing_end_is_the_resource_and_the_other_end_a_span_attribute() {
        use crate::identity::model::{EndKind, Identity};
        let mut call = crate::call::tests::sealed();
        let end = |name: &str| {
            Some(Arc::new(Identity {
                service_name: Some(name.into()),
                host_name: Some(format!("{name}-host").into()),
                ..Identity::new(EndKind::Process)
            }))
        };
        call.local.identity = end("api");
        call.peer.identity = end("orders");
        let (resource, span) = builder().span(&call).unwrap();
        let resource_value = |key: &'static str| resource.get(&opentelemetry::Key::from(key));
        assert_eq!(resource_value("service.name"), Some(Value::from("api")));
        assert_eq!(resource_value("host.name"), Some(Value::from("api-host")));
        assert_eq!(resource_value("peer.service"), None);
        let attrs = &span.attributes;
        assert_eq!(
            attribute(attrs, "peer.service"),
            Some(&Value::from("orders"))
        );
        assert_eq!(
            attribute(attrs, "peer.host.name"),
            Some(&Value::from("orders-host"))
        );
        for local in [
            "service.name",
            "host.name",
            "process.pid",
            "sightline.end.kind",
        ] {
            assert!(attribute(attrs, local).is_none(), "{local} on the span");
        }
        // Call fields that look like the end's stay on the span.
        assert!(attribute(attrs, "sightline.cgroup.id").is_some());
        assert!(attribute(attrs, "thread.id").is_some());
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
        let (_, span) = builder().span(&call).unwrap();
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
            builder().span(&twice).unwrap().1.parent_span_id,
            SpanId::INVALID
        );
        // A later version may add fields.
        let later = with_headers(&[(
            "traceparent",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more",
        )]);
        let (_, span) = builder().span(&later).unwrap();
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
        assert!(builder().span(&unsampled).is_none());
        let mut always = SpanBuilder::new(
            InstrumentationScope::builder("sightline").build(),
            Vec::new(),
            Sampler::AlwaysOn,
        );
        let (_, span) = always.span(&unsampled).unwrap();
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
