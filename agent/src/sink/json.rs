//! One JSON object per line, keyed by OpenTelemetry semantic-convention names (documented in
//! the README's output schema).

use std::io::Write;

use serde::{Serialize, Serializer, ser::SerializeMap};

use super::{
    Sink,
    call_fields::{self, FieldValue, FieldVisitor, Place},
};
use crate::{call::ApiCall, findings::model::Finding, inventory::changes::Change};

pub struct JsonLines<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> JsonLines<W> {
    pub fn new(out: W) -> Self {
        Self { out }
    }
}

impl<W: Write + Send> Sink for JsonLines<W> {
    fn write(&mut self, call: &ApiCall) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, &CallObject(call))?;
        self.out.write_all(b"\n")
    }

    fn write_finding(&mut self, finding: &Finding) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, &finding.to_json())?;
        self.out.write_all(b"\n")
    }

    fn write_change(&mut self, change: &Change) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, &change.to_json())?;
        self.out.write_all(b"\n")
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// The JSON object for a call: its fields (`call_fields`) written straight out as they are
/// walked, no intermediate map. Unknown values are left out.
pub(crate) struct CallObject<'a>(pub &'a ApiCall);

impl Serialize for CallObject<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut entries = Entries {
            map: serializer.serialize_map(None)?,
            error: None,
        };
        call_fields::walk(self.0, &mut entries);
        match entries.error {
            Some(error) => Err(error),
            None => entries.map.end(),
        }
    }
}

/// Writes each field as a map entry; the first error stops the writing.
struct Entries<M: SerializeMap> {
    map: M,
    error: Option<M::Error>,
}

impl<M: SerializeMap> FieldVisitor for Entries<M> {
    fn field(&mut self, _place: Place, key: &'static str, value: FieldValue<'_>) {
        if self.error.is_none()
            && let Err(error) = self.map.serialize_entry(key, &Json(value))
        {
            self.error = Some(error);
        }
    }
}

/// A field value as JSON.
struct Json<'a>(FieldValue<'a>);

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            FieldValue::Str(text) => serializer.serialize_str(text),
            // Formatted whole, then escaped once (`collect_str` escapes each piece).
            FieldValue::Label(label) => serializer.serialize_str(&label.to_string()),
            FieldValue::Ip(ip) => ip.serialize(serializer),
            FieldValue::Int(n) => serializer.serialize_i64(n),
            FieldValue::UInt(n) => serializer.serialize_u64(n),
            FieldValue::Bool(b) => serializer.serialize_bool(b),
            FieldValue::Strs(list) => serializer.collect_seq(list),
            FieldValue::Rules(rules) => serializer.collect_seq(rules.iter().map(|r| r.id())),
        }
    }
}

/// The JSON object for a call, as a value (tests and tools).
pub fn to_json(call: &ApiCall) -> serde_json::Value {
    serde_json::to_value(CallObject(call)).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::tests::sealed as call;

    #[test]
    fn writes_semantic_convention_keys_and_no_secrets() {
        let mut out = Vec::new();
        let mut sink = JsonLines::new(&mut out);
        sink.write(&call()).unwrap();
        sink.flush().unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with('\n') && text.lines().count() == 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["timestamp"], "2026-11-28T13:56:11.707540109Z");
        assert_eq!(v["duration_ns"], 3_770_565);
        assert_eq!(v["span.kind"], "server");
        assert_eq!(v["http.request.method"], "GET");
        assert_eq!(v["url.path"], "/users/42");
        assert_eq!(v["url.query"], "api_key=REDACTED&page=2");
        assert_eq!(v["http.response.status_code"], 200);
        assert_eq!(v["server.address"], "api.local");
        assert_eq!(v["server.port"], 8080);
        assert_eq!(v["client.address"], "10.0.0.9");
        assert_eq!(v["client.port"], 41060);
        assert_eq!(v["network.type"], "ipv4");
        assert_eq!(v["http.response.body.size"], 17);
        assert_eq!(v["process.executable.name"], "api");
        assert!(v.get("peer.process.pid").is_none());
        assert!(v.get("error.type").is_none());
        assert!(!text.contains("s3cr3t"), "{text}");
        assert_eq!(v["sightline.auth.scheme"], "bearer-opaque");
        assert_eq!(v["sightline.auth.location"], "header:authorization");
        assert_eq!(
            v["sightline.auth.fingerprint"].as_str().map(str::len),
            Some(16)
        );
        assert_eq!(v["process.command_line"], "/usr/bin/api --port 8080");
        assert_eq!(v["process.owner"], "www-data");
        assert!(v.get("service.name").is_none(), "no identity, no service");
    }

    #[test]
    fn identities_use_resource_names_and_peer_names() {
        use crate::identity::{
            container::Runtime,
            model::{
                ContainerInfo, EndKind, Identity, NameSource, PodMeta, Workload, WorkloadKind,
            },
        };
        use std::sync::Arc;
        let mut call = call();
        call.local.identity = Some(Arc::new(Identity {
            service_name: Some("api".into()),
            service_namespace: Some("shop".into()),
            name_source: Some(NameSource::Workload),
            host_name: Some("node-1".into()),
            cgroup_path: Some("/kubepods/pod1/abc".into()),
            container: Some(ContainerInfo {
                id: "abc".into(),
                runtime: Runtime::Containerd,
                name: Some("app".into()),
                image: None,
            }),
            pod: Some(Arc::new(PodMeta {
                namespace: "shop".into(),
                name: "api-7d-x".into(),
                uid: "u-1".into(),
                workload: Some(Workload {
                    kind: WorkloadKind::Deployment,
                    name: "api".into(),
                }),
                ..PodMeta::default()
            })),
            k8s_container: Some("app".into()),
            node_name: Some("node-1".into()),
            ..Identity::new(EndKind::Process)
        }));
        call.peer.identity = Some(Arc::new(Identity {
            service_name: Some("orders".into()),
            service_namespace: Some("shop".into()),
            name_source: Some(NameSource::KubernetesService),
            ..Identity::new(EndKind::Service)
        }));
        let v = to_json(&call);
        for (key, value) in [
            ("service.name", "api"),
            ("service.namespace", "shop"),
            ("sightline.service.name_source", "k8s.workload"),
            ("host.name", "node-1"),
            ("process.linux.cgroup", "/kubepods/pod1/abc"),
            ("container.id", "abc"),
            ("container.runtime", "containerd"),
            ("container.name", "app"),
            ("k8s.namespace.name", "shop"),
            ("k8s.pod.name", "api-7d-x"),
            ("k8s.pod.uid", "u-1"),
            ("k8s.deployment.name", "api"),
            ("k8s.container.name", "app"),
            ("k8s.node.name", "node-1"),
            ("peer.service", "orders"),
            ("peer.service.namespace", "shop"),
            ("sightline.peer.kind", "service"),
            ("peer.k8s.namespace.name", "shop"),
            ("sightline.peer.k8s.service.name", "orders"),
        ] {
            assert_eq!(v[key], value, "{key} in {v:#}");
        }
        assert!(v.get("peer.k8s.pod.name").is_none());
    }

    /// The whole line of a gRPC call with a finding: every field in its place and order (the
    /// JSON schema is a contract).
    #[test]
    fn a_call_is_written_whole_in_a_fixed_order() {
        let mut call = call();
        call.grpc = Some(crate::protocol::http2::GrpcExchange {
            service: Some("s".into()),
            method: Some("m".into()),
            status: Some(0),
            message: None,
            request_messages: 1,
            response_messages: 2,
            messages_exact: true,
        });
        call.findings = vec![crate::call::rule::Rule::CleartextCredentials];
        let line = serde_json::to_string(&CallObject(&call)).unwrap();
        let expected = concat!(
            "{\"timestamp\":\"2026-11-28T13:56:11.707540109Z\",",
            "\"start_time_unix_nano\":1795874171707540109,",
            "\"end_time_unix_nano\":1795874171711310674,\"duration_ns\":3770565,",
            "\"span.kind\":\"server\",\"http.request.method\":\"GET\",\"url.scheme\":\"http\",",
            "\"tls\":false,\"url.path\":\"/users/42\",\"url.query\":\"api_key=REDACTED&page=2\",",
            "\"http.response.status_code\":200,\"server.address\":\"api.local\",\"server.port\":8080,",
            "\"client.address\":\"10.0.0.9\",\"client.port\":41060,",
            "\"network.local.address\":\"127.0.0.1\",\"network.local.port\":8080,",
            "\"network.peer.address\":\"10.0.0.9\",\"network.peer.port\":41060,",
            "\"network.transport\":\"tcp\",\"network.type\":\"ipv4\",\"network.protocol.name\":\"http\",",
            "\"network.protocol.version\":\"1.1\",\"user_agent.original\":\"curl/7.88.1\",",
            "\"http.request.size\":79,\"http.request.body.size\":0,\"http.response.size\":120,",
            "\"http.response.body.size\":17,\"process.pid\":10,\"process.executable.name\":\"api\",",
            "\"process.executable.path\":\"/usr/bin/api\",",
            "\"process.command_line\":\"/usr/bin/api --port 8080\",\"process.owner\":\"www-data\",",
            "\"thread.id\":11,\"sightline.cgroup.id\":1,\"sightline.capture.body_complete\":true,",
            "\"sightline.connection.joined_midstream\":false,",
            "\"sightline.auth.scheme\":\"bearer-opaque\",",
            "\"sightline.auth.location\":\"header:authorization\",",
            "\"sightline.auth.fingerprint\":\"5f49f0a0232b063a\",",
            "\"sightline.findings\":[\"SL-AUTH-002\"],\"rpc.system\":\"grpc\",\"rpc.service\":\"s\",",
            "\"rpc.method\":\"m\",\"rpc.grpc.status_code\":0,\"sightline.rpc.request.messages\":1,",
            "\"sightline.rpc.response.messages\":2,\"sightline.rpc.messages_exact\":true}",
        );
        assert_eq!(line, expected);
    }
}
