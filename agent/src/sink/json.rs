//! One JSON object per line, keyed by OpenTelemetry semantic-convention names (documented in
//! the README's output schema).

use std::io::Write;

use serde_json::{Map, Value, json};

use super::{Sink, fields};
use crate::call::{ApiCall, ProcessInfo};

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
        serde_json::to_writer(&mut self.out, &to_json(call))?;
        self.out.write_all(b"\n")
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// The JSON object for a call.
pub fn to_json(call: &ApiCall) -> Value {
    let mut m = Map::new();
    let mut put = |key: &str, value: Value| {
        if !value.is_null() {
            m.insert(key.to_string(), value);
        }
    };
    let (server_address, server_port) = fields::server_address(call);
    let client = call.client().address;
    put(
        "timestamp",
        json!(
            humantime::format_rfc3339_nanos(
                std::time::UNIX_EPOCH + std::time::Duration::from_nanos(call.start_unix_ns)
            )
            .to_string()
        ),
    );
    put("start_time_unix_nano", json!(call.start_unix_ns));
    put("end_time_unix_nano", json!(call.end_unix_ns));
    put("duration_ns", json!(call.duration_ns()));
    put("span.kind", json!(call.kind.name()));
    put("http.request.method", json!(call.method));
    put("url.scheme", json!("http"));
    put("url.path", json!(call.path));
    put("url.query", json!(fields::safe_query(call)));
    put("http.response.status_code", json!(call.status));
    put("error.type", json!(call.error));
    put("server.address", json!(server_address));
    put("server.port", json!(server_port));
    put("client.address", json!(client.ip().to_string()));
    put("client.port", json!(client.port()));
    put(
        "network.local.address",
        json!(call.local.address.ip().to_string()),
    );
    put("network.local.port", json!(call.local.address.port()));
    put(
        "network.peer.address",
        json!(call.peer.address.ip().to_string()),
    );
    put("network.peer.port", json!(call.peer.address.port()));
    put("network.transport", json!("tcp"));
    put(
        "network.type",
        json!(if call.local.address.is_ipv4() {
            "ipv4"
        } else {
            "ipv6"
        }),
    );
    put("network.protocol.name", json!("http"));
    put("network.protocol.version", json!(call.protocol_version));
    put("user_agent.original", json!(call.user_agent));
    put("http.request.size", json!(call.request_size.total));
    put("http.request.body.size", json!(call.request_size.body));
    put(
        "http.response.size",
        json!(call.status.map(|_| call.response_size.total)),
    );
    put(
        "http.response.body.size",
        json!(call.status.map(|_| call.response_size.body)),
    );
    if let Some(process) = &call.local.process {
        process_fields(&mut put, "process", process);
    }
    put("thread.id", json!(call.thread_id));
    if let Some(process) = &call.peer.process {
        process_fields(&mut put, "peer.process", process);
    }
    put("sightline.cgroup.id", json!(call.cgroup_id));
    put(
        "sightline.capture.body_complete",
        json!(call.request_size.body_complete && call.response_size.body_complete),
    );
    put(
        "sightline.connection.joined_midstream",
        json!(call.joined_midstream),
    );
    Value::Object(m)
}

fn process_fields(put: &mut impl FnMut(&str, Value), prefix: &str, p: &ProcessInfo) {
    put(&format!("{prefix}.pid"), json!(p.pid));
    put(
        &format!("{prefix}.executable.name"),
        json!(p.executable_name),
    );
    put(
        &format!("{prefix}.executable.path"),
        json!(p.executable_path),
    );
}
