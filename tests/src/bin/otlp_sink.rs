//! `otlp_sink`: the benchmark's OTLP receiver (`cargo xtask bench`). Serves OTLP/gRPC and
//! OTLP/HTTP protobuf on loopback, decodes every export request (so what it counts is what a
//! collector would accept), counts spans, log records, metric exports and the bytes that came
//! over the wire, and keeps nothing: it keeps up with any agent without growing. On SIGINT or
//! SIGTERM it prints its totals as one JSON object and exits.
//!
//! Usage: `otlp_sink GRPC_PORT HTTP_PORT`

use std::{
    io::Read as _,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use anyhow::Context as _;
use http_body_util::BodyExt as _;
use opentelemetry_proto::tonic::collector::{
    logs::v1::{
        ExportLogsServiceRequest, ExportLogsServiceResponse,
        logs_service_server::{LogsService, LogsServiceServer},
    },
    metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
        metrics_service_server::{MetricsService, MetricsServiceServer},
    },
    trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::codec::CompressionEncoding;

/// What came in, over both protocols.
#[derive(Default)]
struct Totals {
    spans: AtomicU64,
    log_records: AtomicU64,
    metric_exports: AtomicU64,
    export_requests: AtomicU64,
    /// Bytes read from the agent's connections: HTTP/2 or HTTP/1.1 framing, headers, bodies
    /// as sent (compressed if the agent compresses).
    wire_bytes: AtomicU64,
    /// Requests that did not decode (a broken exporter, not a slow one).
    undecodable: AtomicU64,
}

impl Totals {
    fn traces(&self, request: &ExportTraceServiceRequest) {
        let spans: usize = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.spans.fetch_add(spans as u64, Ordering::Relaxed);
        self.export_requests.fetch_add(1, Ordering::Relaxed);
    }

    fn logs(&self, request: &ExportLogsServiceRequest) {
        let records: usize = request
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum();
        self.log_records
            .fetch_add(records as u64, Ordering::Relaxed);
        self.export_requests.fetch_add(1, Ordering::Relaxed);
    }

    fn metrics(&self) {
        self.metric_exports.fetch_add(1, Ordering::Relaxed);
        self.export_requests.fetch_add(1, Ordering::Relaxed);
    }

    fn json(&self) -> serde_json::Value {
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        serde_json::json!({
            "spans": get(&self.spans),
            "log_records": get(&self.log_records),
            "metric_exports": get(&self.metric_exports),
            "export_requests": get(&self.export_requests),
            "wire_bytes": get(&self.wire_bytes),
            "undecodable": get(&self.undecodable),
        })
    }
}

/// A connection whose received bytes are counted.
struct Counted {
    stream: tokio::net::TcpStream,
    totals: Arc<Totals>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.totals
            .wire_bytes
            .fetch_add(read as u64, Ordering::Relaxed);
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Counted {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

#[derive(Clone)]
struct Grpc(Arc<Totals>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.traces(request.get_ref());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.0.logs(request.get_ref());
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        _request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.metrics();
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// Accepted connections, counted.
fn counted(
    listener: tokio::net::TcpListener,
    totals: Arc<Totals>,
) -> impl tokio_stream::Stream<Item = std::io::Result<Counted>> {
    let accepted = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio_stream::StreamExt::map(accepted, move |stream| {
        stream.map(|stream| Counted {
            stream,
            totals: totals.clone(),
        })
    })
}

async fn serve_http(listener: tokio::net::TcpListener, totals: Arc<Totals>) {
    while let Ok((stream, _)) = listener.accept().await {
        let totals = totals.clone();
        tokio::spawn(async move {
            let io = Counted {
                stream,
                totals: totals.clone(),
            };
            let service = hyper::service::service_fn(move |request| {
                let totals = totals.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(request, &totals).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(io), service)
                .await;
        });
    }
}

/// One OTLP/HTTP export: decoded (gunzipped when it says so) and counted.
async fn handle(
    request: hyper::Request<hyper::body::Incoming>,
    totals: &Totals,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let path = request.uri().path().to_string();
    let gzip = request
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v == "gzip");
    let Ok(body) = request.into_body().collect().await else {
        return reply(400);
    };
    let mut body = body.to_bytes().to_vec();
    if gzip {
        let mut plain = Vec::new();
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut plain)
            .is_err()
        {
            totals.undecodable.fetch_add(1, Ordering::Relaxed);
            return reply(400);
        }
        body = plain;
    }
    let decoded = match path.as_str() {
        "/v1/traces" => ExportTraceServiceRequest::decode(&body[..]).map(|r| totals.traces(&r)),
        "/v1/logs" => ExportLogsServiceRequest::decode(&body[..]).map(|r| totals.logs(&r)),
        "/v1/metrics" => ExportMetricsServiceRequest::decode(&body[..]).map(|_| totals.metrics()),
        _ => return reply(404),
    };
    if decoded.is_err() {
        totals.undecodable.fetch_add(1, Ordering::Relaxed);
        return reply(400);
    }
    reply(200)
}

fn reply(status: u16) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let mut response = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    response.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/x-protobuf"),
    );
    response
}

/// One line to the benchmark, which reads stdout (line-buffered: written at once).
fn say(line: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    writeln!(std::io::stdout().lock(), "{line}")
}

fn port(arg: Option<String>, which: &str) -> anyhow::Result<u16> {
    arg.with_context(|| format!("usage: otlp_sink GRPC_PORT HTTP_PORT (no {which} port)"))?
        .parse()
        .with_context(|| format!("the {which} port is not a number"))
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let grpc_port = port(args.next(), "gRPC")?;
    let http_port = port(args.next(), "HTTP")?;
    // One thread: the receiver's CPU should compete with the agent's as little as a collector
    // on another node would.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let totals = Arc::new(Totals::default());
        let bind =
            |port: u16| tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)));
        let grpc = bind(grpc_port)
            .await
            .with_context(|| format!("binding 127.0.0.1:{grpc_port}"))?;
        let http = bind(http_port)
            .await
            .with_context(|| format!("binding 127.0.0.1:{http_port}"))?;
        let service = Grpc(totals.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(
                    TraceServiceServer::new(service.clone())
                        .accept_compressed(CompressionEncoding::Gzip)
                        .max_decoding_message_size(64 << 20),
                )
                .add_service(
                    MetricsServiceServer::new(service.clone())
                        .accept_compressed(CompressionEncoding::Gzip)
                        .max_decoding_message_size(64 << 20),
                )
                .add_service(
                    LogsServiceServer::new(service)
                        .accept_compressed(CompressionEncoding::Gzip)
                        .max_decoding_message_size(64 << 20),
                )
                .serve_with_incoming(counted(grpc, totals.clone())),
        );
        tokio::spawn(serve_http(http, totals.clone()));
        say("listening")?;
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        say(&totals.json().to_string())?;
        anyhow::Ok(())
    })
}
