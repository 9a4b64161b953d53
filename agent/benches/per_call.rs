//! Per-call cost of each userspace stage, measured by criterion: HTTP/1 parsing, HTTP/2 with
//! HPACK, route templating, the inventory update, the credentials and the rules, JSON lines and
//! the OTLP span (encoded to
//! protobuf bytes from the call, then put in an export request as the trace client does). `cargo bench -p sightline --bench per_call`.
//! The end-to-end cost with real traffic is `cargo xtask bench`'s business.
#![allow(clippy::unwrap_used)] // Fixed inputs: a failure is a broken benchmark.

use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::Sampler;
use sightline::{
    call::ApiCall,
    capture::{
        clock::Clock,
        event::{CaptureEvent, ConnKind, DataChunk, Direction, SocketId, SocketPair, Task},
    },
    conn::{Tracker, TrackerLimits},
    credentials::{fingerprint::Fingerprinter, stage::CredentialsStage},
    findings::{config::FindingsSection, stage::FindingsStage},
    inventory::{
        Inventory, InventoryLimits,
        classify::Specs,
        template::{RouteTree, TemplateLimits},
    },
    protocol::{
        http1::Limits,
        http2::{Http2Connection, Start, frame, hpack::HeaderDecoder},
    },
    sink::{
        Sink,
        json::JsonLines,
        otlp::{span_encoding, traces::SpanBuilder},
    },
    stats::Stats,
};

const REQUEST: &[u8] = b"GET /api/v1/users/12345/orders?page=2 HTTP/1.1\r\nHost: api.local:8080\r\n\
    User-Agent: curl/7.88.1\r\nAccept: application/json\r\nAuthorization: Bearer abc.def.ghi\r\n\r\n";
const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n\
    {\"id\":12345,\"orders\":[1,2]}";

fn sockets() -> SocketPair {
    SocketPair {
        local: "127.0.0.1:8080".parse().unwrap(),
        remote: "127.0.0.1:40000".parse().unwrap(),
    }
}

fn data(ts: u64, direction: Direction, bytes: &[u8]) -> CaptureEvent {
    CaptureEvent::Data(DataChunk {
        task: Task {
            tgid: 100,
            pid: 100,
            comm: "api".into(),
            cgroup_id: 1,
            ts_ns: ts,
        },
        fd: 5,
        socket: SocketId(5),
        sockets: sockets(),
        direction,
        op: "bench",
        total_len: bytes.len() as u32,
        payload: bytes.to_vec(),
        after_loss: false,
        tls: None,
    })
}

/// A tracker with one accepted keep-alive connection.
fn tracker() -> Tracker {
    let mut tracker = Tracker::new(
        TrackerLimits::default(),
        Clock::with_offset(0),
        Arc::new(Stats::default()),
        "/nonexistent",
    );
    let mut out = Vec::new();
    tracker.handle(
        CaptureEvent::Conn {
            task: Task {
                tgid: 100,
                pid: 100,
                comm: "api".into(),
                cgroup_id: 1,
                ts_ns: 1,
            },
            fd: 5,
            socket: SocketId(5),
            sockets: sockets(),
            kind: ConnKind::Accept,
        },
        &mut out,
    );
    tracker
}

/// One server-side HTTP/1 call, as the parser produces it.
fn sample_call() -> ApiCall {
    let mut tracker = tracker();
    let mut out = Vec::new();
    tracker.handle(data(2, Direction::Ingress, REQUEST), &mut out);
    tracker.handle(data(3, Direction::Egress, RESPONSE), &mut out);
    out.pop().expect("a call")
}

fn http1(c: &mut Criterion) {
    let mut tracker = tracker();
    let mut out = Vec::with_capacity(1);
    let mut ts = 10;
    c.bench_function("http1: request + response -> call", |b| {
        b.iter_batched(
            || {
                ts += 2;
                (
                    data(ts, Direction::Ingress, REQUEST),
                    data(ts + 1, Direction::Egress, RESPONSE),
                )
            },
            |(request, response)| {
                tracker.handle(request, &mut out);
                tracker.handle(response, &mut out);
                out.clear();
            },
            BatchSize::SmallInput,
        )
    });
}

fn http2(c: &mut Criterion) {
    let mut client = loona_hpack::Encoder::new();
    let fields: [(&[u8], &[u8]); 7] = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", b"/demo.Echo/Say"),
        (b":authority", b"api.local:50051"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
        (b"user-agent", b"grpc-go/1.70.0"),
    ];
    // The first block fills the table; later ones are what a connection mostly carries.
    let first = client.encode(fields);
    let block = client.encode(fields);
    let mut decoder = HeaderDecoder::new();
    decoder.decode(&first).unwrap();
    c.bench_function("hpack: decode a request's header block", |b| {
        b.iter(|| decoder.decode(&block).unwrap())
    });

    // A gRPC stream on a connection seen from its preface: request headers and message,
    // response headers, message and trailers.
    let mut server = loona_hpack::Encoder::new();
    let stats = Stats::default();
    let mut conn = Http2Connection::new(Some(false), Start::Beginning, Limits::default());
    let mut out = Vec::new();
    conn.on_bytes(false, frame::PREFACE, 0, 0, &stats, &mut out);
    let mut id = 1u32;
    let frame = |kind: u8, flags: u8, stream: u32, payload: &[u8]| {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    };
    let message = [0, 0, 0, 0, 7, 10, 5, b'h', b'e', b'l', b'l', b'o'];
    c.bench_function("http2: gRPC stream -> call", |b| {
        b.iter_batched(
            || {
                let mut up = frame(
                    frame::HEADERS,
                    frame::END_HEADERS,
                    id,
                    &client.encode(fields),
                );
                up.extend(frame(frame::DATA, frame::END_STREAM, id, &message));
                let mut down = frame(
                    frame::HEADERS,
                    frame::END_HEADERS,
                    id,
                    &server.encode([
                        (&b":status"[..], &b"200"[..]),
                        (b"content-type", b"application/grpc"),
                    ]),
                );
                down.extend(frame(frame::DATA, 0, id, &message));
                down.extend(frame(
                    frame::HEADERS,
                    frame::END_HEADERS | frame::END_STREAM,
                    id,
                    &server.encode([(&b"grpc-status"[..], &b"0"[..])]),
                ));
                id += 2;
                (up, down)
            },
            |(up, down)| {
                conn.on_bytes(false, &up, 0, 1, &stats, &mut out);
                conn.on_bytes(true, &down, 0, 2, &stats, &mut out);
                out.clear();
            },
            BatchSize::SmallInput,
        )
    });
}

fn inventory(c: &mut Criterion) {
    let mut tree = RouteTree::new(TemplateLimits::default());
    for id in 0..50 {
        tree.template(&format!("/api/v1/users/{id}/orders"));
    }
    c.bench_function("templating: a path with an id", |b| {
        b.iter(|| tree.template("/api/v1/users/12345/orders"))
    });
    let mut inventory = Inventory::new(
        InventoryLimits::default(),
        Specs::new(Vec::new()),
        Arc::new(Stats::default()),
    );
    let call = sample_call();
    c.bench_function("inventory: count a call in its endpoint", |b| {
        b.iter_batched(
            || call.clone(),
            |mut call| {
                inventory.observe(&mut call);
                call
            },
            BatchSize::SmallInput,
        )
    });
}

/// An authenticated call through the credentials stage, the inventory and every rule (the
/// call's response carries ids: the object rules learn them).
fn findings(c: &mut Criterion) {
    let section = FindingsSection::default();
    let mut credentials =
        CredentialsStage::new(section.credential_names(), Fingerprinter::with_key([7; 32]));
    let mut rules = FindingsStage::new(&section, Arc::new(Stats::default())).unwrap();
    let mut inventory = Inventory::new(
        InventoryLimits::default(),
        Specs::new(Vec::new()),
        Arc::new(Stats::default()),
    );
    let call = sample_call();
    c.bench_function(
        "findings: credentials, inventory and rules on a call",
        |b| {
            b.iter_batched(
                || call.clone(),
                |mut call| {
                    credentials.prepare(&mut call);
                    inventory.observe(&mut call);
                    rules.evaluate(&mut call);
                    credentials.seal(&mut call);
                    call
                },
                BatchSize::SmallInput,
            )
        },
    );
}

fn outputs(c: &mut Criterion) {
    let call = sample_call();
    let mut json = JsonLines::new(Vec::with_capacity(4096));
    c.bench_function("json: write a call's line", |b| {
        b.iter(|| {
            json.write(&call).unwrap();
            json.flush().unwrap();
        })
    });
    let mut builder = SpanBuilder::new(
        vec![KeyValue::new("k8s.cluster.name", "bench")],
        Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
    );
    c.bench_function("otlp: encode a call's span", |b| {
        b.iter(|| builder.span(&call).unwrap())
    });
    let spans: Vec<_> = (0..512).map(|_| builder.span(&call).unwrap()).collect();
    let scope = span_encoding::scope("sightline", "bench");
    let mut request = Vec::new();
    c.bench_function("otlp: export request of 512 spans", |b| {
        b.iter(|| {
            request.clear();
            let pairs = spans.iter().map(|s| (&*s.resource, s.span.as_slice()));
            span_encoding::export_request(&mut request, &scope, pairs);
        })
    });
}

criterion_group!(benches, http1, http2, inventory, findings, outputs);
criterion_main!(benches);
