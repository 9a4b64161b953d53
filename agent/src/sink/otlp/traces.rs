//! One span per API call: SERVER or CLIENT by the observing end, the call's real start and end,
//! the attributes of the JSON lines (semantic-convention names) except the observing end's
//! identity, which is the span's resource (`service.name`, `k8s.*`, `container.*`,
//! `process.*`, `host.name`). A request that carries a W3C `traceparent` makes its span a child
//! of the caller's span in the caller's trace.

use std::{borrow::Cow, collections::HashMap, str::FromStr, sync::Arc};

use opentelemetry::{
    Context, KeyValue,
    trace::{SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState},
};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample,
};

use super::{
    span_encoding::{self as encoding, field},
    wire::{bytes_field, fixed32_field, fixed64_field, message_field, varint_field},
};
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

/// An encoded OTLP `Resource` message (its fields, without key and length).
pub type EncodedResource = Arc<[u8]>;

/// A span encoded as an OTLP `Span` message (its fields, without key and length), with the
/// resource it is exported under.
pub struct SpanItem {
    pub resource: EncodedResource,
    pub span: Vec<u8>,
}

pub struct SpanBuilder {
    ids: RandomIdGenerator,
    /// The SDK's sampler (`settings` builds it from the config file or `OTEL_TRACES_SAMPLER`).
    sampler: Sampler,
    /// Added to every resource (config file and `OTEL_RESOURCE_ATTRIBUTES`).
    common: Vec<KeyValue>,
    resources: HashMap<ResourceKey, (Option<Arc<Identity>>, EncodedResource)>,
    /// Formatted attribute values (addresses, labels), reused.
    scratch: String,
    /// The last span's size: the next one's buffer is allocated once.
    last_len: usize,
}

/// Writes a call's fields as span attributes and, when its resource is not cached yet,
/// resource attributes (with their keys, to fill in what the call does not give).
struct SpanFields<'a> {
    span: &'a mut Vec<u8>,
    resource: Option<(&'a mut Vec<u8>, &'a mut Vec<&'static str>)>,
    scratch: &'a mut String,
}

impl FieldVisitor for SpanFields<'_> {
    fn field(&mut self, place: Place, key: &'static str, value: FieldValue<'_>) {
        match place {
            Place::Span => {}
            Place::Resource => {
                if let Some((resource, keys)) = &mut self.resource {
                    let at = field::RESOURCE_ATTRIBUTES;
                    encoding::key_value(resource, at, key, value, self.scratch);
                    keys.push(key);
                }
            }
            Place::Attribute => {
                encoding::key_value(self.span, field::ATTRIBUTES, key, value, self.scratch);
            }
        }
    }
}

impl SpanBuilder {
    pub fn new(common: Vec<KeyValue>, sampler: Sampler) -> Self {
        Self {
            ids: RandomIdGenerator::default(),
            sampler,
            common,
            resources: HashMap::new(),
            scratch: String::new(),
            last_len: 1024,
        }
    }

    /// The call's encoded span and its resource; `None` when the sampler leaves the call out.
    pub fn span(&mut self, call: &ApiCall) -> Option<SpanItem> {
        let parent = remote_parent(call);
        let (trace_id, flags, state, parent_span_id) = match &parent {
            Some(p) => (
                p.trace_id(),
                p.trace_flags(),
                p.trace_state().header(),
                p.span_id(),
            ),
            None => (
                self.ids.new_trace_id(),
                TraceFlags::SAMPLED,
                String::new(),
                SpanId::INVALID,
            ),
        };
        let (kind, otlp_kind) = match call.kind {
            call::SpanKind::Server => (SpanKind::Server, encoding::SPAN_KIND_SERVER),
            call::SpanKind::Client => (SpanKind::Client, encoding::SPAN_KIND_CLIENT),
        };
        if !self.sampled(parent, trace_id, &kind) {
            return None;
        }
        let mut span = Vec::with_capacity(self.last_len + self.last_len / 4);
        bytes_field(&mut span, field::TRACE_ID, &trace_id.to_bytes());
        bytes_field(
            &mut span,
            field::SPAN_ID,
            &self.ids.new_span_id().to_bytes(),
        );
        if !state.is_empty() {
            bytes_field(&mut span, field::TRACE_STATE, state.as_bytes());
        }
        let remote = parent_span_id != SpanId::INVALID;
        if remote {
            bytes_field(&mut span, field::PARENT_SPAN_ID, &parent_span_id.to_bytes());
        }
        bytes_field(&mut span, field::NAME, span_name(call).as_bytes());
        varint_field(&mut span, field::KIND, otlp_kind);
        fixed64_field(&mut span, field::START_TIME, call.start_unix_ns);
        let end = call.end_unix_ns.max(call.start_unix_ns);
        fixed64_field(&mut span, field::END_TIME, end);
        let resource = self.attributes_and_resource(call, &mut span);
        message_field(&mut span, field::STATUS, |buf| {
            if let Some(message) = status(call) {
                bytes_field(buf, field::STATUS_MESSAGE, message.as_bytes());
                varint_field(buf, field::STATUS_CODE, encoding::STATUS_CODE_ERROR);
            }
        });
        // A caller that did not sample still gets a span here when the sampler keeps it.
        let mut flags = u32::from((flags | TraceFlags::SAMPLED).to_u8());
        flags |= encoding::FLAG_HAS_IS_REMOTE;
        if remote {
            flags |= encoding::FLAG_IS_REMOTE;
        }
        fixed32_field(&mut span, field::FLAGS, flags);
        self.last_len = span.len();
        Some(SpanItem { resource, span })
    }

    /// Writes the call's span attributes into `span`; returns its resource, encoded from the
    /// same walk when it is not cached yet.
    fn attributes_and_resource(&mut self, call: &ApiCall, span: &mut Vec<u8>) -> EncodedResource {
        let process = call.local.process.as_ref();
        let identity = call.local.identity.clone();
        let key = (
            process.map_or(0, |p| p.pid),
            process.map_or(0, |p| p.incarnation),
            identity.as_ref().map_or(0, |i| Arc::as_ptr(i) as usize),
        );
        let cached = self.resources.get(&key).map(|(_, r)| r.clone());
        let mut resource = Vec::new();
        let mut keys = Vec::new();
        call_fields::walk(
            call,
            &mut SpanFields {
                span,
                resource: cached.is_none().then_some((&mut resource, &mut keys)),
                scratch: &mut self.scratch,
            },
        );
        if let Some(resource) = cached {
            return resource;
        }
        self.complete_resource(&mut resource, &keys, call);
        let resource: EncodedResource = resource.into();
        if self.resources.len() >= MAX_RESOURCES {
            self.resources.clear();
        }
        self.resources.insert(key, (identity, resource.clone()));
        resource
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

    /// Adds to the call's resource attributes (`keys`) a `service.name` when the call has none
    /// (`unknown_service:<executable>`: a node-wide common name would merge every workload)
    /// and the common attributes it does not set.
    fn complete_resource(&self, resource: &mut Vec<u8>, keys: &[&str], call: &ApiCall) {
        let at = field::RESOURCE_ATTRIBUTES;
        if !keys.contains(&"service.name") {
            let executable = call
                .local
                .process
                .as_ref()
                .map_or("unknown", |p| &*p.executable_name);
            let name = format!("unknown_service:{executable}");
            encoding::string_key_value(resource, at, "service.name", &name);
        }
        for kv in &self.common {
            let key = kv.key.as_str();
            if key != "service.name" && !keys.contains(&key) {
                encoding::string_key_value(resource, at, key, &kv.value.as_str());
            }
        }
    }
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
/// a call that got no (complete) response. `None`: the status is unset.
fn status(call: &ApiCall) -> Option<String> {
    if let Some(code) = call.grpc.as_ref().and_then(|g| g.status)
        && grpc_error(code, call.kind)
    {
        return Some(format!("gRPC status {code}"));
    }
    match (call.status, call.kind) {
        (Some(code @ 500..), _) | (Some(code @ 400..), call::SpanKind::Client) => {
            Some(format!("HTTP {code}"))
        }
        (None, _) => Some(call.error.clone().unwrap_or_else(|| "no response".into())),
        _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::{
        common::v1::{KeyValue as ProtoKeyValue, any_value::Value},
        resource::v1::Resource,
        trace::v1::{Span, span::SpanKind as ProtoKind, status::StatusCode},
    };
    use prost::Message;

    fn builder() -> SpanBuilder {
        SpanBuilder::new(
            vec![KeyValue::new("k8s.cluster.name", "prod")],
            Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        )
    }

    /// The span and its resource as a collector reads them (prost's decoder).
    fn decoded(item: &SpanItem) -> (Resource, Span) {
        (
            Resource::decode(&*item.resource).unwrap(),
            Span::decode(item.span.as_slice()).unwrap(),
        )
    }

    fn span_of(call: &ApiCall) -> Span {
        decoded(&builder().span(call).unwrap()).1
    }

    fn attribute(attributes: &[ProtoKeyValue], key: &str) -> Option<Value> {
        let mut found = attributes.iter().filter(|kv| kv.key == key);
        let value = found.next()?.value.clone()?.value;
        assert!(found.next().is_none(), "{key} twice");
        value
    }

    fn text(t: &str) -> Option<Value> {
        Some(Value::StringValue(t.into()))
    }

    fn id(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn a_call_becomes_a_server_span_with_its_times_attributes_and_resource() {
        let call = crate::call::tests::sealed();
        let (resource, span) = decoded(&builder().span(&call).unwrap());
        assert_eq!(span.kind, ProtoKind::Server as i32);
        assert_eq!(span.name, "GET");
        assert_eq!(span.start_time_unix_nano, call.start_unix_ns);
        assert_eq!(span.end_time_unix_nano, call.end_unix_ns);
        assert!(span.parent_span_id.is_empty());
        assert_eq!(span.trace_id.len(), 16);
        assert_eq!(span.span_id.len(), 8);
        assert_ne!(span.trace_id, vec![0; 16]);
        // Sampled, parent not remote (the SDK's encoding of the same span).
        assert_eq!(span.flags, 0x101);
        let status = span.status.unwrap();
        assert_eq!(
            (status.code, status.message.as_str()),
            (StatusCode::Unset as i32, "")
        );
        let attrs = &span.attributes;
        assert_eq!(attribute(attrs, "http.request.method"), text("GET"));
        assert_eq!(
            attribute(attrs, "http.response.status_code"),
            Some(Value::IntValue(200))
        );
        assert_eq!(attribute(attrs, "url.path"), text("/users/42"));
        assert_eq!(attribute(attrs, "server.port"), Some(Value::IntValue(8080)));
        assert_eq!(attribute(attrs, "client.address"), text("10.0.0.9"));
        assert_eq!(
            attribute(attrs, "sightline.auth.scheme"),
            text("bearer-opaque")
        );
        assert!(attribute(attrs, "process.pid").is_none());
        assert!(attribute(attrs, "start_time_unix_nano").is_none());
        let resource_value = |key: &str| attribute(&resource.attributes, key);
        assert_eq!(resource_value("process.pid"), Some(Value::IntValue(10)));
        assert_eq!(resource_value("process.executable.name"), text("api"));
        assert_eq!(resource_value("service.name"), text("unknown_service:api"));
        assert_eq!(resource_value("k8s.cluster.name"), text("prod"));
        // Secrets were removed before: no attribute carries them.
        for kv in attrs {
            assert!(!format!("{kv:?}").contains("s3cr3t"), "{kv:?}");
        }
    }

    #[test]
    fn the_same_end_shares_one_resource() {
        let mut builder = builder();
        let a = builder.span(&crate::call::tests::sealed()).unwrap();
        let b = builder.span(&crate::call::tests::sealed()).unwrap();
        assert!(Arc::ptr_eq(&a.resource, &b.resource));
        assert_ne!(decoded(&a).1.span_id, decoded(&b).1.span_id);
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
        let (resource, span) = decoded(&builder().span(&call).unwrap());
        let resource_value = |key: &str| attribute(&resource.attributes, key);
        assert_eq!(resource_value("service.name"), text("api"));
        assert_eq!(resource_value("host.name"), text("api-host"));
        assert_eq!(resource_value("peer.service"), None);
        let attrs = &span.attributes;
        assert_eq!(attribute(attrs, "peer.service"), text("orders"));
        assert_eq!(attribute(attrs, "peer.host.name"), text("orders-host"));
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

    #[test]
    fn common_attributes_are_added_but_never_rename_a_workload() {
        let mut builder = SpanBuilder::new(
            vec![
                KeyValue::new("service.name", "everyone"),
                KeyValue::new("team", "core"),
            ],
            Sampler::AlwaysOn,
        );
        let call = crate::call::tests::sealed();
        let (resource, _) = decoded(&builder.span(&call).unwrap());
        // The call's end has no service name: it is named after its executable, as before.
        assert_eq!(
            attribute(&resource.attributes, "service.name"),
            text("unknown_service:api")
        );
        assert_eq!(attribute(&resource.attributes, "team"), text("core"));
        let mut named = crate::call::tests::sealed();
        named.local.identity = Some(Arc::new(crate::identity::model::Identity {
            service_name: Some("api".into()),
            ..crate::identity::model::Identity::new(crate::identity::model::EndKind::Process)
        }));
        let (resource, _) = decoded(&builder.span(&named).unwrap());
        assert_eq!(attribute(&resource.attributes, "service.name"), text("api"));
    }

    fn with_headers(headers: &[(&str, &str)]) -> ApiCall {
        let mut call = crate::call::tests::sealed();
        call.request_headers = crate::call::tests::headers(headers);
        call
    }

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_makes_the_span_a_child_of_the_callers() {
        let call = with_headers(&[
            ("traceparent", TRACEPARENT),
            ("tracestate", "congo=t61rcWkgMzE"),
        ]);
        let span = span_of(&call);
        assert_eq!(span.trace_id, id("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(span.parent_span_id, id("00f067aa0ba902b7"));
        assert_ne!(span.span_id, span.parent_span_id);
        // Sampled, with a remote parent.
        assert_eq!(span.flags, 0x301);
        assert_eq!(span.trace_state, "congo=t61rcWkgMzE");
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
            let span = span_of(&with_headers(&[("traceparent", value)]));
            assert!(span.parent_span_id.is_empty(), "{value}");
            assert_eq!(span.flags, 0x101, "{value}");
        }
        let twice = with_headers(&[("traceparent", TRACEPARENT), ("traceparent", TRACEPARENT)]);
        assert!(span_of(&twice).parent_span_id.is_empty());
        // A later version may add fields.
        let later = with_headers(&[(
            "traceparent",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more",
        )]);
        assert_eq!(span_of(&later).parent_span_id, id("00f067aa0ba902b7"));
    }

    #[test]
    fn a_caller_that_did_not_sample_gets_no_span_from_the_default_sampler() {
        let unsampled = with_headers(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        )]);
        assert!(builder().span(&unsampled).is_none());
        let mut always = SpanBuilder::new(Vec::new(), Sampler::AlwaysOn);
        let (_, span) = decoded(&always.span(&unsampled).unwrap());
        assert_eq!(span.flags, 0x301);
        assert_eq!(span.trace_id, id("4bf92f3577b34da6a3ce929d0e0e4736"));
    }

    #[test]
    fn errors_follow_the_http_conventions() {
        let mut call = crate::call::tests::sealed();
        call.status = Some(404);
        assert_eq!(status(&call), None);
        call.kind = call::SpanKind::Client;
        assert_eq!(status(&call).as_deref(), Some("HTTP 404"));
        let span = span_of(&call);
        assert_eq!(span.kind, ProtoKind::Client as i32);
        let status_message = span.status.unwrap();
        assert_eq!(
            (status_message.code, status_message.message.as_str()),
            (StatusCode::Error as i32, "HTTP 404")
        );
        call.status = None;
        call.error = Some("connection closed".into());
        assert_eq!(status(&call).as_deref(), Some("connection closed"));
        call.method = "FOO".into();
        assert_eq!(span_name(&call), "HTTP");
    }
}
